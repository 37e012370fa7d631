"""Routes (contract §1): the health check, and 405 with the §4 body for every method a path does not serve."""

from __future__ import annotations

import json
import uuid

import pytest
from chalice.test import Client

from tests.functional.payloads import JSON_HEADERS, KINDS, Kind, assert_gateway_error, assert_nothing_stored, kind_id
from tests.support.aws import AwsStack

by_kind = pytest.mark.parametrize("kind", KINDS, ids=kind_id)


def test_health_answers_200_ok(client: Client) -> None:
    response = client.http.get("/health")

    assert response.status_code == 200
    assert response.json_body == {"status": "ok"}


def _assert_method_not_allowed(client: Client, method: str, path: str, allowed: str, body: str = "") -> None:
    response = client.http.request(method, path, headers=JSON_HEADERS, body=body.encode())

    assert response.status_code == 405, f"{method} {path} answered {response.status_code}"
    assert_gateway_error(response, 405, "method_not_allowed")
    assert allowed in [m.strip() for m in response.headers["Allow"].split(",")]
    assert method not in response.headers["Allow"]


@by_kind
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET"])
def test_unserved_method_on_submit_path_is_405_and_creates_nothing(
    client: Client, aws_stack: AwsStack, kind: Kind, method: str
) -> None:
    _assert_method_not_allowed(client, method, kind.submit_path, "POST", json.dumps(kind.body))

    assert_nothing_stored(aws_stack)


@by_kind
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_unserved_method_on_poll_path_is_405(client: Client, aws_stack: AwsStack, kind: Kind, method: str) -> None:
    _assert_method_not_allowed(client, method, kind.job_path(str(uuid.uuid4())), "GET", json.dumps(kind.body))

    assert_nothing_stored(aws_stack)


@by_kind
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_unserved_method_on_an_existing_job_leaves_it_alone(
    client: Client, aws_stack: AwsStack, kind: Kind, method: str
) -> None:
    job_id = client.http.post(kind.submit_path, headers=JSON_HEADERS, body=json.dumps(kind.body)).json_body["id"]

    _assert_method_not_allowed(client, method, kind.job_path(job_id), "GET", json.dumps(kind.body))

    polled = client.http.get(kind.job_path(job_id))
    assert polled.status_code == 202 and polled.json_body["status"] == "pending"
    assert aws_stack.item_count() == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_unserved_method_on_health_is_405(client: Client, method: str) -> None:
    _assert_method_not_allowed(client, method, "/health", "GET")
