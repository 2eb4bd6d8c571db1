"""Fairness between the tenants of a queue: what an operator sets (docs/flow-control.md).

A fair queue starts its due jobs round-robin over their `partition_key`s (jobs without one
are one more tenant): 100,000 queued jobs of tenant A and 100 of tenant B start A, B, A, B, ...
until B's are gone, instead of B waiting behind all of A. `priority` still comes first: a
job of a lower priority number starts before any job of a higher one, fair or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

# What a queue can be fair by; the only choice today.
FairBy = Literal["partition_key"]


class QueueFairness(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`by`: start the queue's jobs round-robin over this field; null: in priority order."""

    by: FairBy | None = None


@dataclass(frozen=True)
class Rebase:
    """A fair queue whose base moved to `base`, and how many queued dispatches were
    rewritten to match (app.db.fairness)."""

    queue: str
    base: int
    rewritten: int
