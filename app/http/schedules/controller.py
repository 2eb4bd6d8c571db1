"""/api/v1/schedules: create, list, get, change, delete, enable/disable and run now."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from app.domain.schedules import SCHEDULE_NAME_MAX
from app.domain.spec import NAME_PATTERN
from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.errors import error_response
from app.http.json_body import NOT_JSON, require_json
from app.http.schedules.schemas import (
    Schedule,
    ScheduleCreate,
    SchedulePage,
    ScheduleRun,
    ScheduleUpdate,
)
from app.jobs.schedule_service import ScheduleService

# Names are letters, digits and . _ : - (ScheduleName), so they travel in the path as they are.
# The route takes any text, and the parameter checks it after the guard: a 400 naming `name`
# (`{name:str}` with a pattern in the route itself would be a bare 404 before the guard).
NAME_PATH = "/{name:str}"
ScheduleNamePath = Annotated[
    str,
    PathParameter(
        description="The schedule's name: 1 to 150 letters, digits and . _ : -",
        min_length=1,
        max_length=SCHEDULE_NAME_MAX,
        pattern=NAME_PATTERN,
    ),
]
LIST_LIMIT_MAX = 500

SCHEDULE_NOT_FOUND = error_response(
    404, "No schedule has this name", "schedule 'nightly' not found"
)
NAMED = {404: SCHEDULE_NOT_FOUND}
NAME_TAKEN = error_response(409, "A schedule has this name", "schedule 'nightly' already exists")


class SchedulesController(Controller):
    """Cron schedules that create jobs from a template."""

    path = "/api/v1/schedules"
    tags = ["schedules"]
    dependencies = from_state("schedule_service")

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create a schedule",
        description="A bad cron expression, time zone or job template is a 400 saying why; "
        "a taken name is a 409.",
        responses={409: NAME_TAKEN, 415: NOT_JSON},
        opt=requires("write"),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ScheduleCreate],
        schedule_service: NamedDependency[ScheduleService],
    ) -> Schedule:
        """Store the schedule; it first fires at the next matching time after now."""
        require_json(request)
        return await schedule_service.create(data)

    @get("/", summary="List schedules by name", opt=requires("read"))
    async def list_schedules(
        self,
        schedule_service: NamedDependency[ScheduleService],
        after: Annotated[
            str | None,
            Parameter(description="Return schedules named after this one", max_length=200),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=LIST_LIMIT_MAX)] = 100,
    ) -> SchedulePage:
        """Schedules in name order, `limit` at a time."""
        page = await schedule_service.list(after=after, limit=limit)
        next_after = page[-1].name if len(page) == limit else None
        return SchedulePage(schedules=page, next_after=next_after)

    @get(
        NAME_PATH,
        summary="A schedule and its next fire times",
        responses=NAMED,
        opt=requires("read"),
    )
    async def get_schedule(
        self, name: ScheduleNamePath, schedule_service: NamedDependency[ScheduleService]
    ) -> Schedule:
        """`upcoming` lists the next five fire times (UTC) of an enabled schedule."""
        return await schedule_service.get(name)

    @patch(
        NAME_PATH,
        summary="Change a schedule",
        responses={**NAMED, 415: NOT_JSON},
        opt=requires("write"),
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        name: ScheduleNamePath,
        data: JSONBody[ScheduleUpdate],
        schedule_service: NamedDependency[ScheduleService],
    ) -> Schedule:
        """Fields left out keep their value; a new cron or zone fires from the next match."""
        require_json(request)
        return await schedule_service.update(name, data)

    @delete(
        NAME_PATH,
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a schedule",
        responses=NAMED,
        opt=requires("admin"),
    )
    async def delete_schedule(
        self, name: ScheduleNamePath, schedule_service: NamedDependency[ScheduleService]
    ) -> None:
        """The schedule goes; jobs it already created stay."""
        await schedule_service.delete(name)

    @post(
        NAME_PATH + "/enable",
        status_code=HTTP_200_OK,
        summary="Enable a schedule",
        responses=NAMED,
        opt=requires("write"),
    )
    async def enable(
        self, name: ScheduleNamePath, schedule_service: NamedDependency[ScheduleService]
    ) -> Schedule:
        """It fires next at the first matching time after now (missed times are not caught up)."""
        return await schedule_service.set_enabled(name, True)

    @post(
        NAME_PATH + "/disable",
        status_code=HTTP_200_OK,
        summary="Disable a schedule",
        responses=NAMED,
        opt=requires("write"),
    )
    async def disable(
        self, name: ScheduleNamePath, schedule_service: NamedDependency[ScheduleService]
    ) -> Schedule:
        """It stops firing; jobs it already created are not touched."""
        return await schedule_service.set_enabled(name, False)

    @post(
        NAME_PATH + "/run",
        status_code=HTTP_200_OK,
        summary="Run a schedule's job now",
        responses=NAMED,
        opt=requires("write"),
    )
    async def run_now(
        self, name: ScheduleNamePath, schedule_service: NamedDependency[ScheduleService]
    ) -> ScheduleRun:
        """Create its job at once, enabled or not; its fire times do not change."""
        return await schedule_service.run_now(name)
