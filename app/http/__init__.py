"""HTTP layer: controllers, request/response schemas, error mapping."""
