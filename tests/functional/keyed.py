"""Helpers for the virtual-key tests: keys made in the moto keys table, carriers, DynamoDB call records.

Keys are created through ``KeyAdmin`` over the real ``DynamoKeyStore``, the way the admin
routes and CLI create them. The carriers are written out from contract §5 here rather than
taken from ``chalicelib.keys``, so a carrier the code forgot fails a test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chalice.test import Client, HTTPResponse

from chalicelib import aws
from chalicelib.clock import SystemClock
from chalicelib.key_admin import CreatedKey, KeyAdmin
from chalicelib.key_store import DynamoKeyStore
from tests.functional.payloads import CHAT, JSON_HEADERS, Kind
from tests.support.aws import AwsStack

LIST_PATH = "/v1/async/jobs"

CARRIERS: dict[str, Callable[[str], dict[str, str]]] = {
    "x-bf-vk": lambda value: {"x-bf-vk": value},
    "authorization": lambda value: {"Authorization": f"Bearer {value}"},
    "x-api-key": lambda value: {"x-api-key": value},
    "x-goog-api-key": lambda value: {"x-goog-api-key": value},
}


def carry(carrier: str, value: str | None) -> dict[str, str]:
    """Headers presenting ``value`` in ``carrier`` (none at all for no key)."""
    return {} if value is None else CARRIERS[carrier](value)


def key_admin(aws_stack: AwsStack) -> KeyAdmin:
    return KeyAdmin(DynamoKeyStore(aws.client("dynamodb"), aws_stack.settings.keys_table), SystemClock())


def create_key(aws_stack: AwsStack, name: str, rate_limit_per_minute: int | None = None) -> CreatedKey:
    return key_admin(aws_stack).create(name, rate_limit_per_minute)


def submit_with(client: Client, headers: dict[str, str], kind: Kind = CHAT) -> HTTPResponse:
    return client.http.post(kind.submit_path, headers={**JSON_HEADERS, **headers}, body=json.dumps(kind.body))


def submit_keyed(client: Client, headers: dict[str, str], kind: Kind = CHAT) -> str:
    response = submit_with(client, headers, kind)
    assert response.status_code == 202, response.body
    job_id: str = response.json_body["id"]
    return job_id


def poll_with(client: Client, job_id: str, headers: dict[str, str], kind: Kind = CHAT) -> HTTPResponse:
    return client.http.get(kind.job_path(job_id), headers=headers)


def cancel_with(client: Client, job_id: str, headers: dict[str, str], kind: Kind = CHAT) -> HTTPResponse:
    return client.http.delete(kind.job_path(job_id), headers=headers)


def list_with(client: Client, headers: dict[str, str], query: str = "") -> HTTPResponse:
    return client.http.get(LIST_PATH + (f"?{query}" if query else ""), headers=headers)


def listed_ids(response: HTTPResponse) -> set[str]:
    assert response.status_code == 200, response.body
    return {job["id"] for job in response.json_body["data"]}


def stored_caller(aws_stack: AwsStack, job_id: str) -> str:
    item = aws_stack.item(job_id)
    assert item is not None
    caller: str = item["caller"]["S"]
    return caller


def without_event_id(body: dict[str, Any]) -> dict[str, Any]:
    error = {k: v for k, v in body["error"].items() if k != "event_id"}
    return {**{k: v for k, v in body.items() if k != "event_id"}, "error": error}


@contextmanager
def dynamodb_calls() -> Iterator[list[str]]:
    """Every DynamoDB operation the shared client makes inside the block, in order (a botocore hook)."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(str(model.name))

    events = aws.client("dynamodb").meta.events
    events.register("before-call.dynamodb", record)
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", record)


def key_items(aws_stack: AwsStack, prefix: str) -> list[dict[str, Any]]:
    """Every item of the keys table whose partition key starts with ``prefix`` (``key#``, ``rate#``)."""
    items: list[dict[str, Any]] = aws.client("dynamodb").scan(TableName=aws_stack.settings.keys_table)["Items"]
    return [item for item in items if item["pk"]["S"].startswith(prefix)]


@dataclass(frozen=True)
class Request:
    """One job-route request, so a test can run a mix of operations."""

    operation: str
    job_id: str = ""

    def send(self, client: Client, headers: dict[str, str]) -> HTTPResponse:
        if self.operation == "submit":
            return submit_with(client, headers)
        if self.operation == "poll":
            return poll_with(client, self.job_id, headers)
        if self.operation == "cancel":
            return cancel_with(client, self.job_id, headers)
        return list_with(client, headers)
