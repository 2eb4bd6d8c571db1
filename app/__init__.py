"""Dataloader: a PostgreSQL job service built on pgqueuer."""

__version__ = "0.1.0"
