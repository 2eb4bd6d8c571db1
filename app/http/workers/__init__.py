"""/api/v1/workers and /api/v1/tasks: the worker registry's controller and its schemas."""
