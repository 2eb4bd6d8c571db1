"""/api/v1/workflows: the workflows controller and its schemas."""
