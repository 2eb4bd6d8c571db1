"""Pipelines: the registry of task names, and the built-in pipelines."""
