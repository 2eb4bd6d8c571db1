"""Generated requests to every operation of the OpenAPI document, against a real server.

Each operation gets DL_FUZZ_EXAMPLES examples (valid and deliberately invalid requests);
every answer must be no 5xx and match the document: a documented status code, its
content type and its body schema; a request the document calls invalid must get a 4xx.
Raising DL_FUZZ_EXAMPLES far past the default may need `--timeout` (pytest-timeout, 120 s).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case
from schemathesis.specs.openapi import checks as openapi_checks
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.support.api_servers import ApiServer

EXAMPLES = int(os.environ.get("DL_FUZZ_EXAMPLES", "300"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ApiServer) -> OpenApiSchema:
    """The document the server publishes, aimed at that server."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/schema/openapi.json")
    schema.config.update(base_url=fuzz_server.base_url)
    return schema


# About 9,000 requests (30 operations and more): a minute on an idle 2-core machine, several
# under load. The suite's 120 s would interrupt hypothesis in the middle of an example, which
# then reports a meaningless error for whatever operation it was on ("pop from empty list").
@pytest.mark.timeout(900)
def test_every_operation_answers_as_documented(
    api_schema: OpenApiSchema, fuzz_server: ApiServer
) -> None:
    """No 5xx, and status, content type and body as the document says, for every operation.

    One test walks the operations itself (schemathesis' pytest plugin does not run on
    pytest 9) and reports every failing operation at the end, not just the first.
    """
    failures: list[str] = []
    operations = 0
    requests = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
        )
        def call(case: Case) -> None:
            nonlocal requests
            requests += 1
            case.call_and_validate(checks=CHECKS, timeout=10)

        try:
            call()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}:\n{exc}")
        assert fuzz_server.process.poll() is None, f"API died:\n{fuzz_server.log_tail()}"
    print(f"{requests} requests to {operations} operations")
    assert operations >= 20, "the document lost operations"
    assert not failures, "\n\n".join(failures)
