"""The outbound guard: which destinations a job's args may make the worker reach."""
