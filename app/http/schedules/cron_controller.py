"""/api/v1/cron/preview: the next fire times of a cron expression, as the scheduler computes them.

Not under /api/v1/schedules/: `preview` is a valid schedule name, and a fixed route there
would hide the schedule of that name. The dashboard's schedule form shows these times, so
what it previews is what the server will fire (same parser, same zone rules).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from app.domain.cron import MAX_EXPRESSION_LENGTH, parse_cron
from app.http.auth import requires
from app.http.errors import error_response

PREVIEW_COUNT_MAX = 20

BAD_CRON = error_response(
    400,
    "The cron expression, zone or count is invalid",
    "cron '61 * * * *' is invalid: [61 * * * *] is not acceptable, out of range (field `cron`)",
)


class CronPreview(msgspec.Struct, kw_only=True):
    """The normalised expression, its zone, and its next fire times in UTC."""

    cron: str
    timezone: str
    next: list[datetime]


class CronController(Controller):
    """Cron expressions, read as a schedule would read them."""

    path = "/api/v1/cron"
    tags = ["schedules"]

    @get(
        "/preview",
        summary="The next fire times of a cron expression in a time zone",
        responses={400: BAD_CRON},
        opt=requires("read"),
    )
    async def preview(
        self,
        cron: Annotated[
            str,
            Parameter(
                description="5 fields (minute hour day month weekday), 6 with seconds first,"
                " or an alias such as @hourly",
                max_length=MAX_EXPRESSION_LENGTH,
            ),
        ],
        timezone: Annotated[
            str, Parameter(description="IANA zone the expression is read in", max_length=64)
        ] = "UTC",
        count: Annotated[
            int, Parameter(description="How many fire times", ge=1, le=PREVIEW_COUNT_MAX)
        ] = 5,
    ) -> CronPreview:
        """The next `count` fire times after now; a bad expression or zone is a 400 saying why."""
        rule = parse_cron(cron, timezone)
        return CronPreview(
            cron=rule.expression,
            timezone=timezone,
            next=rule.upcoming(datetime.now(UTC), count),
        )
