"""The job domain's errors; app.http maps each to one HTTP status in one place."""

from __future__ import annotations

import uuid


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


class BatchNotFoundError(JobError):
    """No batch has this id."""


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


class DependencyNotMetError(JobStatusConflictError):
    """A dependent cannot run again while a job it needs to succeed has not."""

    def __init__(self, status: str, parent: uuid.UUID, parent_status: str) -> None:
        super().__init__(
            f"job depends on job {parent}, which ended {parent_status}; retry that job first "
            "(its dependents then wait for it again)",
            status,
        )
        self.parent = parent


class WorkflowNotFoundError(JobNotFoundError):
    """No workflow has this id."""


class IdempotencyConflictError(JobError):
    """The idempotency_key is already used by a job created from a different request."""

    def __init__(
        self,
        key: str,
        job_id: uuid.UUID,
        *,
        item: str | None = None,
        first_item: str | None = None,
    ) -> None:
        # In a bulk call, `item` names the refused item (`jobs[3]`) and `first_item` the
        # item of the same call that took the key first, if one did.
        where = f"{item}: " if item else ""
        owner = f"{first_item} (job {job_id})" if first_item else f"job {job_id}"
        super().__init__(
            f"{where}idempotency_key {key!r} is already used by {owner}, created from a "
            "different request; send the same request to get that job, or use another key"
        )
        self.key = key
        self.job_id = job_id


class WorkflowKeyConflictError(JobError):
    """The idempotency_key is already used by a workflow created from a different request."""

    def __init__(self, key: str, workflow_id: uuid.UUID) -> None:
        super().__init__(
            f"idempotency_key {key!r} is already used by workflow {workflow_id}, created from "
            "a different request; send the same request to get that workflow, or use another "
            "key (field `idempotency_key`)"
        )
        self.key = key
        self.workflow_id = workflow_id


class InvalidScheduleError(InvalidJobError):
    """The schedule is invalid."""


class ScheduleNotFoundError(JobError):
    """No schedule has this name."""


class ScheduleExistsError(JobError):
    """A schedule with this name already exists."""
