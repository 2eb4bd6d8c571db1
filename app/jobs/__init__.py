"""Job services: the job manager (every change of state), and the services for jobs, schedules
and queues that the HTTP API and the worker call."""
