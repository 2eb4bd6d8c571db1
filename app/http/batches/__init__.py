"""/api/v1/batches: the state of a bulk trigger's batch."""
