"""The job domain shared by the API and the worker: states, errors, service, enqueue."""
