"""Dependencies between jobs: what a dependent waits for, and the bounds on what it may name.

A job with `depends_on` is created `waiting` and gets no dispatch. The database releases it
(app.db.dependency_functions): queued with a dispatch once every parent succeeded (with
run_after `any`: once every parent ended, whatever the outcome), or canceled, naming the
parent, once a parent it needs ended failed, canceled or lost.
"""

from __future__ import annotations

from enum import StrEnum


class RunAfter(StrEnum):
    """When a dependent may run."""

    # Every parent succeeded; a parent that failed, was canceled or was lost cancels it.
    SUCCEEDED = "succeeded"
    # Every parent ended, whatever its outcome (a clean-up step, say).
    ANY = "any"


# The most parents one job may name; a workflow's fan-in of 1,000 steps fits.
MAX_DEPENDS_ON = 10_000
