"""The job domain's errors; app.http maps each to one HTTP status in one place."""

from __future__ import annotations


class JobError(Exception):
    """A request about a job could not be carried out."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)

    @property
    def message(self) -> str:
        """The text shown to the client."""
        return str(self.args[0])


class InvalidJobError(JobError):
    """The job request is invalid."""


class UnknownTaskError(InvalidJobError):
    """No pipeline is registered under this task name."""


class InvalidQueueError(InvalidJobError):
    """The queue name is invalid."""


class JobNotFoundError(JobError):
    """No job has this id."""


class JobStatusConflictError(JobError):
    """The job's status does not allow this operation."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class JobFinishedError(JobStatusConflictError):
    """The job has already finished and can no longer be canceled."""

    def __init__(self, status: str) -> None:
        super().__init__(f"job already finished with status {status!r}", status)


class JobNotRetryableError(JobStatusConflictError):
    """Only a failed, lost or canceled job can be retried."""

    def __init__(self, status: str) -> None:
        super().__init__(
            f"job has status {status!r}; only failed, lost or canceled jobs can be retried",
            status,
        )


class InvalidScheduleError(InvalidJobError):
    """The schedule is invalid."""


class ScheduleNotFoundError(JobError):
    """No schedule has this name."""


class ScheduleExistsError(JobError):
    """A schedule with this name already exists."""
