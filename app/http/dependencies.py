"""Objects the controllers receive, built once at start and kept on app.state."""

from __future__ import annotations

from litestar.datastructures import State

from app.jobs.queue_service import QueueService
from app.jobs.schedule_service import ScheduleService
from app.jobs.service import JobService


def provide_job_service(state: State) -> JobService:
    """The JobService made at start-up."""
    service: JobService = state.job_service
    return service


def provide_schedule_service(state: State) -> ScheduleService:
    """The ScheduleService made at start-up."""
    service: ScheduleService = state.schedule_service
    return service


def provide_queue_service(state: State) -> QueueService:
    """The QueueService made at start-up."""
    service: QueueService = state.queue_service
    return service
