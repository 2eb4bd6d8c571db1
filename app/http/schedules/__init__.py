"""/api/v1/schedules: the schedules controller and its schemas."""
