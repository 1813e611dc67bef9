"""The OpenAPI document, and schemathesis fuzzing of the HTTP API it describes.

Rules: the document must be valid for schemathesis to load; fuzzing is bounded (a fixed number
of examples per operation, no deadline flakiness) and runs against the test gateway on
127.0.0.1 only. Every answer must be a non-5xx JSON response conforming to the document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from pistond.gateway.openapi import openapi_document

if TYPE_CHECKING:
    from .conftest import GatewayStack

schema = schemathesis.openapi.from_dict(openapi_document())


def test_openapi_document_lists_every_http_route() -> None:
    """The document names every HTTP operation of the gateway."""
    document = openapi_document()
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("/", "get"),
        ("/api/v2/runtimes", "get"),
        ("/api/v2/execute", "post"),
        ("/api/v2/packages", "get"),
        ("/api/v2/packages", "post"),
        ("/api/v2/packages", "delete"),
        ("/api/v2/health", "get"),
        ("/api/v2/health/ready", "get"),
        ("/api/v2/health/live", "get"),
        ("/api/v2/info", "get"),
    }


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_openapi_fuzz_never_fails_the_server(case: Any, gateway: GatewayStack) -> None:
    """Generated requests never get a 5xx and always conform to the document.

    Schema-valid requests may still get 400: the document cannot say which runtimes exist.
    """
    response = case.call_and_validate(
        base_url=gateway.url, timeout=10, excluded_checks=[positive_data_acceptance]
    )
    assert response.status_code < 500, response.text
    assert isinstance(response.json(), dict | list)
