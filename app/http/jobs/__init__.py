"""/api/v1/jobs: the jobs controller, the stream controller, their schemas and OpenAPI text."""
