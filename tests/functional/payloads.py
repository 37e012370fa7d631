"""Minimal valid bodies for every JSON request type, and the helpers the functional tests share.

The paths, request types and stream labels are written out here from the contract (§1–2)
rather than imported from ``chalicelib.contract``, so a wrong table in the code fails a test.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalice.test import Client, HTTPResponse

from chalicelib import aws
from tests.support.aws import AwsStack

JSON_HEADERS = {"Content-Type": "application/json"}
TTL_HEADER = "x-bf-async-job-result-ttl"
DEFAULT_TTL_S = 3600
JOB_NOT_FOUND = "job not found or expired"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@dataclass(frozen=True)
class Kind:
    """One JSON request type: its path below ``/v1/async``, ``request_type`` and a minimal body."""

    path: str
    request_type: str
    body: dict[str, Any]
    stream_label: str | None = None

    @property
    def submit_path(self) -> str:
        return f"/v1/async/{self.path}"

    def job_path(self, job_id: str) -> str:
        return f"/v1/async/{self.path}/{job_id}"

    def with_fields(self, **fields: Any) -> dict[str, Any]:
        return {**self.body, **fields}

    def without(self, field: str) -> dict[str, Any]:
        return {k: v for k, v in self.body.items() if k != field}


COMPLETIONS = Kind("completions", "text_completion", {"model": "mock/echo", "prompt": "hello"}, "text completions")
CHAT = Kind(
    "chat/completions",
    "chat_completion",
    {"model": "mock/echo", "messages": [{"role": "user", "content": "hello"}]},
    "chat completions",
)
RESPONSES = Kind("responses", "responses", {"model": "mock/echo", "input": "hello"}, "responses")
EMBEDDINGS = Kind("embeddings", "embedding", {"model": "mock/echo", "input": "hello"})
SPEECH = Kind("audio/speech", "speech", {"model": "mock/echo", "input": "hello", "voice": "alloy"}, "speech")
IMAGES = Kind(
    "images/generations", "image_generation", {"model": "mock/echo", "prompt": "a red square"}, "image generations"
)
RERANK = Kind(
    "rerank", "rerank", {"model": "mock/echo", "query": "red fruit", "documents": ["an apple is red", "the sky"]}
)
OCR = Kind(
    "ocr",
    "ocr",
    {"model": "mock/echo", "document": {"type": "document_url", "document_url": "https://example.com/a.pdf"}},
)

KINDS: tuple[Kind, ...] = (COMPLETIONS, CHAT, RESPONSES, EMBEDDINGS, SPEECH, IMAGES, RERANK, OCR)
STREAM_FLAG_KINDS: tuple[Kind, ...] = (COMPLETIONS, CHAT, RESPONSES, IMAGES)


def kind_id(kind: Kind) -> str:
    return kind.request_type


REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "text_completion": ("model", "prompt"),
    "chat_completion": ("model", "messages"),
    "responses": ("model", "input"),
    "embedding": ("model", "input"),
    "speech": ("model", "input", "voice"),
    "image_generation": ("model", "prompt"),
    "rerank": ("model", "query", "documents"),
    "ocr": ("model", "document"),
}


@dataclass(frozen=True)
class BadField:
    """``field`` set to ``value`` makes ``kind``'s body invalid: 400 with ``param`` and ``code``."""

    kind: Kind
    field: str
    value: Any
    param: str
    code: str = "invalid_field_type"

    @property
    def id(self) -> str:
        return f"{self.kind.request_type}-{self.param}-{json.dumps(self.value)[:24]}"


MISSING = "missing_required_field"
BAD_FIELDS: tuple[BadField, ...] = (
    *(BadField(kind, "model", 42, "model") for kind in KINDS),
    BadField(COMPLETIONS, "prompt", 42, "prompt"),
    BadField(COMPLETIONS, "prompt", {"text": "hi"}, "prompt"),
    BadField(CHAT, "messages", "hello", "messages"),
    BadField(CHAT, "messages", [], "messages"),
    BadField(CHAT, "messages", ["hello"], "messages[0]"),
    BadField(CHAT, "messages", [{"content": "hello"}], "messages[0].role", MISSING),
    BadField(CHAT, "messages", [{"role": 5, "content": "hello"}], "messages[0].role"),
    BadField(RESPONSES, "input", 42, "input"),
    BadField(EMBEDDINGS, "input", 42, "input"),
    BadField(EMBEDDINGS, "input", {"text": "hi"}, "input"),
    BadField(SPEECH, "input", 42, "input"),
    BadField(SPEECH, "voice", 42, "voice"),
    BadField(IMAGES, "prompt", 42, "prompt"),
    BadField(RERANK, "query", 42, "query"),
    BadField(RERANK, "query", "   ", "query"),
    BadField(RERANK, "documents", "an apple", "documents"),
    BadField(RERANK, "documents", [], "documents"),
    BadField(RERANK, "documents", ["ok", "  "], "documents[1]"),
    BadField(RERANK, "documents", [{"text": ""}], "documents[0]"),
    BadField(RERANK, "documents", [42], "documents[0]"),
    BadField(RERANK, "top_n", 0, "top_n"),
    BadField(RERANK, "top_n", "2", "top_n"),
    BadField(OCR, "document", "https://example.com/a.pdf", "document"),
    BadField(OCR, "document", {"type": "text", "text": "x"}, "document.type"),
    BadField(OCR, "document", {"type": "image_url"}, "document.image_url", MISSING),
    BadField(
        OCR, "document", {"type": "document_url", "image_url": "https://a/b.png"}, "document.document_url", MISSING
    ),
)


def submit(
    client: Client,
    kind: Kind,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: str | bytes | None = None,
) -> HTTPResponse:
    """POST to ``kind``'s submit path: ``raw`` as is, else ``body`` (default: the minimal body) as JSON."""
    text = raw if raw is not None else json.dumps(kind.body if body is None else body)
    return client.http.post(kind.submit_path, headers=JSON_HEADERS if headers is None else headers, body=text)


def submit_job(client: Client, kind: Kind, body: Any = None, ttl: str | None = None) -> str:
    """Submit and return the new job's id; fails the test unless the submit was accepted."""
    headers = dict(JSON_HEADERS) if ttl is None else {**JSON_HEADERS, TTL_HEADER: ttl}
    response = submit(client, kind, body, headers)
    assert response.status_code == 202, response.body
    job_id: str = response.json_body["id"]
    return job_id


def epoch_ms(timestamp: Any) -> int:
    """An RFC 3339 UTC timestamp with ``Z`` and milliseconds, as epoch milliseconds."""
    assert isinstance(timestamp, str) and TIMESTAMP.match(timestamp), timestamp
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def is_uuid4(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return parsed.version == 4 and str(parsed) == value


def is_int(value: Any) -> bool:
    return type(value) is int


def assert_error_body(body: Any, status: int, *, bifrost: bool) -> dict[str, Any]:
    """The contract §4 error shape; returns the inner ``error``."""
    assert isinstance(body, dict), body
    assert is_int(body["status_code"]) and body["status_code"] == status
    assert body["is_bifrost_error"] is bifrost
    event_id = body["event_id"]
    assert isinstance(event_id, str) and event_id
    error = body["error"]
    assert isinstance(error, dict)
    for field in ("type", "code", "message"):
        assert isinstance(error.get(field), str) and error[field], f"error.{field} missing in {body}"
    assert body["type"] == error["type"]
    assert error["event_id"] == event_id
    assert all(value not in (None, "") for value in error.values()), "empty optional fields must be omitted"
    return error


def assert_gateway_error(response: HTTPResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """An error the gateway raised: HTTP status = ``status_code``, ``is_bifrost_error`` true, no internals."""
    assert response.status_code == status, response.body
    text = response.body.decode()
    for secret in ("Traceback", "asyncgate-jobs", "asyncgate-payloads", "arn:aws"):
        assert secret not in text
    error = assert_error_body(response.json_body, status, bifrost=True)
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_nothing_stored(aws_stack: AwsStack) -> None:
    assert aws_stack.item_count() == 0
    assert aws_stack.queued_messages() == 0


def set_item_numbers(aws_stack: AwsStack, job_id: str, **numbers: int) -> None:
    """Overwrite numeric attributes of a stored job directly in DynamoDB (moto)."""
    names = {f"#a{i}": name for i, name in enumerate(numbers)}
    values = {f":v{i}": {"N": str(value)} for i, value in enumerate(numbers.values())}
    assignments = ", ".join(f"#a{i} = :v{i}" for i in range(len(numbers)))
    aws.client("dynamodb").update_item(
        TableName=aws_stack.settings.jobs_table,
        Key={"id": {"S": job_id}},
        UpdateExpression=f"SET {assignments}",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def mark_processing(aws_stack: AwsStack, job_id: str, lease_until_ms: int) -> None:
    """Put a pending job in the state a worker's claim leaves it in."""
    aws.client("dynamodb").update_item(
        TableName=aws_stack.settings.jobs_table,
        Key={"id": {"S": job_id}},
        UpdateExpression="SET #s = :processing, lease_owner = :owner, lease_until = :until ADD attempts :one",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":processing": {"S": "processing"},
            ":owner": {"S": "test-worker"},
            ":until": {"N": str(lease_until_ms)},
            ":one": {"N": "1"},
        },
    )
