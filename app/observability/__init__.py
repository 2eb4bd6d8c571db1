"""Logs and metrics shared by the API and the worker: structlog set-up, masking, Prometheus."""
