"""Plugin: the pipelines the test process knows, the same whichever tests are selected.

The built-ins, the unit and integration tests' `test.*` pipelines and the ones the e2e and
faults workers run (the test process checks task names when it enqueues).
"""

from __future__ import annotations

from app.pipelines.registry import load_pipelines
from tests.support.workers import E2E_PIPELINE_MODULES

load_pipelines(["tests.support.pipelines", E2E_PIPELINE_MODULES])
