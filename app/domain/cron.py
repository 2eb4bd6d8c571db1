"""Cron expressions in a time zone: parsed once, then asked for their next fire times.

Five fields (minute hour day month weekday), or six with seconds first
(`*/10 * * * * *` fires every ten seconds); croniter's `@hourly`-style aliases work too.
Fire times are computed in the schedule's zone, so `0 2 * * *` stays at 02:00 local time
across daylight-saving changes, and are returned in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from app.domain.errors import InvalidScheduleError

MAX_EXPRESSION_LENGTH = 200


@dataclass(frozen=True)
class CronRule:
    """A valid cron expression and the zone it is read in."""

    expression: str
    zone: ZoneInfo

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment`, in UTC."""
        iterator = croniter(self.expression, moment.astimezone(self.zone), second_at_beginning=True)
        fire: datetime = iterator.get_next(datetime)
        return fire.astimezone(UTC)

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """The next `count` fire times after `moment`, in UTC."""
        iterator = croniter(self.expression, moment.astimezone(self.zone), second_at_beginning=True)
        return [iterator.get_next(datetime).astimezone(UTC) for _ in range(count)]


def parse_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; InvalidScheduleError when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidScheduleError(
            f"unknown time zone {name[:64]!r} (use an IANA name such as 'UTC' or"
            " 'Europe/Berlin') (field `timezone`)"
        ) from None


def parse_cron(expression: str, timezone: str) -> CronRule:
    """A CronRule, or InvalidScheduleError saying what is wrong with the expression or zone."""
    zone = parse_zone(timezone)
    text = " ".join(expression.split())
    if not text or len(text) > MAX_EXPRESSION_LENGTH:
        raise InvalidScheduleError(
            f"cron must be 1 to {MAX_EXPRESSION_LENGTH} characters (field `cron`)"
        )
    fields = text.split(" ")
    if not text.startswith("@") and len(fields) not in (5, 6):
        raise InvalidScheduleError(
            f"cron {text!r} has {len(fields)} fields; expected 5 (minute hour day month"
            " weekday) or 6 (second first) (field `cron`)"
        )
    rule = CronRule(expression=text, zone=zone)
    try:
        rule.next_after(datetime.now(UTC))
    except CroniterBadDateError:
        raise InvalidScheduleError(f"cron {text!r} never fires (field `cron`)") from None
    except CroniterError as exc:
        raise InvalidScheduleError(f"cron {text!r} is invalid: {exc} (field `cron`)") from None
    except (ValueError, KeyError, IndexError, OverflowError) as exc:
        # croniter raises plain errors for some malformed fields.
        raise InvalidScheduleError(f"cron {text!r} is invalid: {exc} (field `cron`)") from None
    return rule
