"""Schemathesis against the local stack (issue 5, item 4): every documented operation, over HTTP.

Requests are generated from ``openapi.yaml`` in both modes (valid and deliberately invalid
bodies, headers, path ids and query strings) and sent to a running local stack whose embedded
AWS the test can read. Whatever is sent: never a 5xx, never a stack trace, every answer is
the documented status, content type and body shape, and a refused request adds no job and
no key. Admin routes get the admin token on some calls, so their bodies are checked too.
Generation is deterministic (same requests on every run).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.local_stack import LocalStackProcess

pytestmark = pytest.mark.e2e

PROJECT_DIR = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "adm-schemathesis-token-5f0c2b9e"
EXAMPLES_PER_OPERATION = 60
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_path(str(PROJECT_DIR / "openapi.yaml"))
schema.config.generation.update(modes=list(GenerationMode), deterministic=True, max_examples=EXAMPLES_PER_OPERATION)


@dataclass(frozen=True)
class Stack:
    base_url: str
    dynamodb: Any

    def counts(self) -> dict[str, int]:
        """Items per table: a refused request must leave every count as it was."""
        tables = self.dynamodb.list_tables()["TableNames"]
        return {name: self.dynamodb.scan(TableName=name, Select="COUNT")["Count"] for name in tables}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with LocalStackProcess({"ASYNCGATE_ADMIN_TOKEN": ADMIN_TOKEN, "ASYNCGATE_LOCAL_POLLERS": "1"}) as process:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        yield Stack(process.base_url, session.client("dynamodb", endpoint_url=process.aws_endpoint))
        output = process.output()
    assert "Traceback" not in output, output[-3000:]


def _admin_headers(case: schemathesis.Case[Any]) -> dict[str, str]:
    """The admin token on half of the admin calls (by the case's own data), so bodies reach validation."""
    if not case.path.startswith("/api/"):
        return {}
    digest = sum(json.dumps(case.body, default=str, sort_keys=True).encode()) if case.body is not None else 0
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"} if digest % 2 == 0 else {}


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_every_operation_answers_as_documented_and_a_refusal_stores_nothing(
    case: schemathesis.Case[Any], stack: Stack
) -> None:
    before = stack.counts()

    response = case.call(base_url=stack.base_url, headers=_admin_headers(case), timeout=30)

    case.validate_response(response, checks=CHECKS)
    assert "Traceback" not in response.text
    if 400 <= response.status_code < 500:
        assert stack.counts() == before, response.text[:300]
