"""/api/v1/queues: the queues controller and its schemas."""
