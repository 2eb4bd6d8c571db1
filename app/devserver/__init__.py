"""Developer runtime: embedded PostgreSQL and the `make run` process supervisor."""
