"""Errors a pipeline raises to tell the worker how its attempt ended."""

from __future__ import annotations


class PermanentError(Exception):
    """The job cannot succeed by being retried (a 4xx answer, bad args): it fails at once.

    Any other exception a pipeline raises is retried with backoff until max_attempts.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class InvalidArgsError(PermanentError):
    """The job's args do not match what its pipeline accepts."""


class DestinationRefusedError(PermanentError):
    """The job's destination is not one the settings allow it to reach; nothing was sent."""
