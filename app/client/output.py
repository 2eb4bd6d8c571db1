"""How the command line prints: rich consoles, times, statuses and key/value panels."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.segment import Segment, Segments
from rich.table import Table
from rich.text import Text

# Without a terminal rich assumes 80 columns, which would squeeze full job ids out of tables.
PIPE_WIDTH = 200

STATUS_STYLES = {
    "waiting": "bright_black",
    "queued": "blue",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "lost": "magenta",
    "canceled": "yellow",
}
SPARK_BLOCKS = " ▁▂▃▄▅▆▇█"


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout or stderr, wide when output goes to a pipe or file."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


out = make_console()
err = make_console(stderr=True)


def show(renderable: RenderableType, console: Console | None = None) -> None:
    """Print a table or panel without the blanks rich pads every line's last cell with."""
    console = console or out
    for line in console.render_lines(renderable, pad=False):
        while line and not line[-1].control and not line[-1].text.strip():
            line.pop()
        if line and not line[-1].control:
            line[-1] = Segment(line[-1].text.rstrip(), line[-1].style)
        console.print(Segments([*line, Segment.line()]))


def print_json(body: bytes) -> None:
    """The API's JSON exactly as it came, one document per line."""
    sys.stdout.write(body.decode() + "\n")
    sys.stdout.flush()


def print_error(message: str) -> None:
    """`error: <message>` on stderr, on one line however narrow the terminal."""
    err.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def status_text(status: str) -> Text:
    """A status word in its color."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def count(n: int, noun: str) -> str:
    """'1 job', '3 jobs'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def duration(seconds: float) -> str:
    """3.2 s, 4 min 12 s, 2 h 5 min, 3 d 4 h."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def relative(moment: datetime, now: datetime | None = None) -> str:
    """'12 s ago', 'in 5 min', 'just now'."""
    delta = ((now or datetime.now(UTC)) - moment).total_seconds()
    if abs(delta) < 1:
        return "just now"
    return f"{duration(delta)} ago" if delta > 0 else f"in {duration(delta)}"


def local_time(moment: datetime | None) -> str:
    """The moment in the local time zone, to the second."""
    return "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def when(moment: datetime | None) -> str:
    """Local time and how long ago (or until): '2026-11-24 16:01:05 (3 min ago)'."""
    if moment is None:
        return "-"
    return f"{local_time(moment)} ({relative(moment)})"


def compact_json(value: Any, limit: int = 80) -> str:
    """One-line JSON, cut at `limit` characters."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_text(progress: dict[str, Any] | None) -> str:
    """'3/10 (30%)' for {"processed": 3, "total": 10}; other shapes as compact JSON."""
    if not progress:
        return ""
    processed, total = progress.get("processed"), progress.get("total")
    if isinstance(processed, int | float) and isinstance(total, int | float) and total > 0:
        return f"{processed:g}/{total:g} ({processed / total:.0%})"
    if isinstance(processed, int | float) and len(progress) == 1:
        return f"{processed:g}"
    return compact_json(progress, 40)


def sparkline(values: Iterable[int]) -> str:
    """A bar per value, scaled to the largest (all blanks when every value is 0)."""
    numbers = list(values)
    top = max(numbers, default=0)
    if top <= 0:
        return SPARK_BLOCKS[0] * len(numbers)
    last = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[0 if n <= 0 else max(1, round(n / top * last))] for n in numbers)


def fields_table(rows: Iterable[tuple[str, str | Text | None]]) -> Table:
    """A two-column 'field  value' panel; rows whose value is None are left out."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        if value is not None:
            table.add_row(name, value)
    return table


def list_table(*headers: str) -> Table:
    """A compact table with bold headers and no box lines between rows."""
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for header in headers:
        table.add_column(header, overflow="fold")
    return table
