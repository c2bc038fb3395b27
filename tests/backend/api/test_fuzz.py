"""Property-based fuzzing of every operation in /openapi.json (schemathesis, against the ASGI app over the tiny
artifacts): no input produces a 5xx, and every answer has a documented status, content type and schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from backend.api.loader import load_service
from backend.api.main import create_app
from backend.api.settings import Settings

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def api_schema(artifacts_dir):
    settings = Settings(artifacts=artifacts_dir, device="cpu", upload_cache_size=16, result_cache_size=16)
    service = load_service(settings)
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, service=service))
    service.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_no_input_gives_a_server_error(case):
    response = case.call()
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    assert b"Traceback" not in response.content
