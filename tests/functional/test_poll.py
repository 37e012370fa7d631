"""Poll (contract §3, with the §4 error body) for every JSON request type, through the real worker."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from chalice.test import Client, HTTPResponse

from tests.functional.payloads import (
    CHAT,
    DEFAULT_TTL_S,
    EMBEDDINGS,
    KINDS,
    TTL_HEADER,
    Kind,
    assert_error_body,
    assert_gateway_error,
    epoch_ms,
    is_int,
    kind_id,
    mark_processing,
    set_item_numbers,
    submit,
    submit_job,
)
from tests.support.aws import AwsStack

by_kind = pytest.mark.parametrize("kind", KINDS, ids=kind_id)
OPEN_FIELDS = {"id", "status", "created_at"}


def _poll(client: Client, kind: Kind, job_id: str) -> HTTPResponse:
    return client.http.get(kind.job_path(job_id))


def _run_to_end(client: Client, aws_stack: AwsStack, kind: Kind, body: Any = None, ttl: str | None = None) -> str:
    job_id = submit_job(client, kind, body, ttl)
    assert aws_stack.run_worker() == 1
    return job_id


def _now_ms() -> int:
    return int(time.time() * 1000)


# ── open jobs ──────────────────────────────────────────────────────────────────────────


def _assert_open(response: HTTPResponse, job_id: str, status: str) -> None:
    assert response.status_code == 202
    body = response.json_body
    assert set(body) == OPEN_FIELDS
    assert body["id"] == job_id
    assert body["status"] == status
    epoch_ms(body["created_at"])
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1


@by_kind
def test_pending_job_polls_as_202_with_retry_after_and_no_outcome(client: Client, kind: Kind) -> None:
    submitted = submit(client, kind)
    job_id = submitted.json_body["id"]

    response = _poll(client, kind, job_id)

    _assert_open(response, job_id, "pending")
    assert response.json_body["created_at"] == submitted.json_body["created_at"]


@by_kind
def test_processing_job_polls_as_202_with_retry_after_and_no_outcome(
    client: Client, aws_stack: AwsStack, kind: Kind
) -> None:
    job_id = submit_job(client, kind)
    mark_processing(aws_stack, job_id, lease_until_ms=_now_ms() + 300_000)

    _assert_open(_poll(client, kind, job_id), job_id, "processing")


# ── completed jobs: the synchronous endpoint's shape ─────────────────────────────────────


def _usage_is_integral(usage: Any) -> None:
    assert isinstance(usage, dict) and usage
    for name, value in usage.items():
        if name.endswith("tokens") or name.endswith("processed"):
            assert is_int(value), f"{name}={value!r} must be an int"


def _completion(result: dict[str, Any]) -> None:
    assert result["object"] == "text_completion"
    assert isinstance(result["id"], str) and is_int(result["created"]) and isinstance(result["model"], str)
    choice = result["choices"][0]
    assert isinstance(choice["text"], str) and choice["index"] == 0 and "finish_reason" in choice
    assert set(result["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


def _chat(result: dict[str, Any]) -> None:
    assert result["object"] == "chat.completion"
    assert isinstance(result["id"], str) and is_int(result["created"]) and isinstance(result["model"], str)
    choice = result["choices"][0]
    assert choice["index"] == 0 and "finish_reason" in choice
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == "hello"
    assert set(result["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


def _responses(result: dict[str, Any]) -> None:
    assert result["object"] == "response" and result["status"] == "completed"
    assert isinstance(result["id"], str) and is_int(result["created_at"]) and isinstance(result["model"], str)
    message = result["output"][0]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["type"] == "output_text" and isinstance(message["content"][0]["text"], str)
    assert set(result["usage"]) >= {"input_tokens", "output_tokens", "total_tokens"}


def _embedding(result: dict[str, Any]) -> None:
    assert result["object"] == "list" and isinstance(result["model"], str)
    [item] = result["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert item["embedding"] and all(isinstance(v, float) for v in item["embedding"])
    assert set(result["usage"]) >= {"prompt_tokens", "total_tokens"}


def _speech(result: dict[str, Any]) -> None:
    assert base64.b64decode(result["audio"], validate=True)


def _image(result: dict[str, Any]) -> None:
    assert is_int(result["created"])
    [item] = result["data"]
    assert isinstance(item.get("b64_json") or item.get("url"), str)


def _rerank(result: dict[str, Any]) -> None:
    results = result["results"]
    assert sorted(r["index"] for r in results) == [0, 1]
    for entry in results:
        assert is_int(entry["index"]) and isinstance(entry["relevance_score"], int | float)
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def _ocr(result: dict[str, Any]) -> None:
    page = result["pages"][0]
    assert is_int(page["index"]) and isinstance(page["markdown"], str) and isinstance(page["images"], list)
    assert isinstance(result["model"], str)
    assert "pages_processed" in result["usage_info"]


RESULT_SHAPES: dict[str, Callable[[dict[str, Any]], None]] = {
    "text_completion": _completion,
    "chat_completion": _chat,
    "responses": _responses,
    "embedding": _embedding,
    "speech": _speech,
    "image_generation": _image,
    "rerank": _rerank,
    "ocr": _ocr,
}


@by_kind
def test_completed_job_polls_as_200_with_times_status_code_and_result(
    client: Client, aws_stack: AwsStack, kind: Kind
) -> None:
    job_id = _run_to_end(client, aws_stack, kind)

    response = _poll(client, kind, job_id)

    assert response.status_code == 200
    assert "Retry-After" not in response.headers
    body = response.json_body
    assert set(body) == OPEN_FIELDS | {"completed_at", "expires_at", "status_code", "result"}
    assert body["id"] == job_id and body["status"] == "completed"
    assert is_int(body["status_code"]) and body["status_code"] == 200
    completed_ms = epoch_ms(body["completed_at"])
    assert epoch_ms(body["created_at"]) <= completed_ms
    assert epoch_ms(body["expires_at"]) - completed_ms == DEFAULT_TTL_S * 1000


@by_kind
def test_completed_result_has_the_synchronous_shape_of_its_type(
    client: Client, aws_stack: AwsStack, kind: Kind
) -> None:
    job_id = _run_to_end(client, aws_stack, kind)

    result = _poll(client, kind, job_id).json_body["result"]

    RESULT_SHAPES[kind.request_type](result)
    for usage_name in ("usage", "usage_info"):
        if usage_name in result:
            _usage_is_integral(result[usage_name])


@by_kind
def test_completed_result_carries_extra_fields(client: Client, aws_stack: AwsStack, kind: Kind) -> None:
    job_id = _run_to_end(client, aws_stack, kind)

    extra = _poll(client, kind, job_id).json_body["result"]["extra_fields"]

    assert {k: v for k, v in extra.items() if k != "latency_ms"} == {
        "provider": "mock",
        "model_requested": "echo",
        "request_type": kind.request_type,
    }
    assert is_int(extra["latency_ms"]) and extra["latency_ms"] >= 0


def test_ttl_header_on_poll_changes_nothing(client: Client, aws_stack: AwsStack) -> None:
    job_id = _run_to_end(client, aws_stack, CHAT, ttl="120")

    first = _poll(client, CHAT, job_id).json_body
    second = client.http.get(CHAT.job_path(job_id), headers={TTL_HEADER: "5"}).json_body

    assert second["expires_at"] == first["expires_at"]
    assert epoch_ms(first["expires_at"]) - epoch_ms(first["completed_at"]) == 120_000


# ── failed jobs ───────────────────────────────────────────────────────────────────────


@by_kind
def test_failed_job_polls_as_200_with_provider_status_and_error(
    client: Client, aws_stack: AwsStack, kind: Kind
) -> None:
    job_id = _run_to_end(client, aws_stack, kind, kind.with_fields(model="mock/fail-400"))

    response = _poll(client, kind, job_id)

    assert response.status_code == 200
    body = response.json_body
    assert set(body) == OPEN_FIELDS | {"completed_at", "expires_at", "status_code", "error"}
    assert body["status"] == "failed"
    assert is_int(body["status_code"]) and body["status_code"] == 400
    assert epoch_ms(body["expires_at"]) - epoch_ms(body["completed_at"]) == DEFAULT_TTL_S * 1000
    error = assert_error_body(body["error"], 400, bifrost=False)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_value"), "the provider's own error"
    assert body["error"]["extra_fields"] == {
        "provider": "mock",
        "model_requested": "fail-400",
        "request_type": kind.request_type,
    }


# ── not found ─────────────────────────────────────────────────────────────────────────


def _assert_not_found(response: HTTPResponse) -> dict[str, Any]:
    error = assert_gateway_error(response, 404)
    assert error["message"] == "job not found or expired"
    body: dict[str, Any] = response.json_body
    return body


@by_kind
@pytest.mark.parametrize(
    "job_id",
    [str(uuid.uuid4()), "not-a-uuid", "12345", str(uuid.uuid4()).upper()],
    ids=["unknown-uuid", "word", "number", "upper-case-uuid"],
)
def test_unknown_or_malformed_id_is_404(client: Client, kind: Kind, job_id: str) -> None:
    _assert_not_found(_poll(client, kind, job_id))


@pytest.mark.parametrize("kind", [k for k in KINDS if k != CHAT], ids=kind_id)
def test_job_polled_on_another_types_path_is_404(client: Client, aws_stack: AwsStack, kind: Kind) -> None:
    pending = submit_job(client, CHAT)
    _assert_not_found(_poll(client, kind, pending))

    assert aws_stack.run_worker() == 1
    _assert_not_found(_poll(client, kind, pending))
    assert _poll(client, CHAT, pending).status_code == 200


def _expire(aws_stack: AwsStack, job_id: str) -> None:
    """Move the finished job's times into the past (the service reads the real clock)."""
    completed_ms = _now_ms() - 10_000
    set_item_numbers(aws_stack, job_id, completed_at=completed_ms, expires_at=completed_ms + 1_000)


@pytest.mark.parametrize("model", ["mock/echo", "mock/fail-400"], ids=["completed", "failed"])
def test_finished_job_is_404_once_expires_at_has_passed(client: Client, aws_stack: AwsStack, model: str) -> None:
    job_id = _run_to_end(client, aws_stack, CHAT, CHAT.with_fields(model=model), ttl="1")
    item = aws_stack.item(job_id)
    assert item is not None
    assert int(item["expires_at"]["N"]) - int(item["completed_at"]["N"]) == 1_000
    set_item_numbers(aws_stack, job_id, expires_at=_now_ms() + 60_000)
    assert _poll(client, CHAT, job_id).status_code == 200

    _expire(aws_stack, job_id)

    _assert_not_found(_poll(client, CHAT, job_id))
    assert aws_stack.item(job_id) is not None, "expiry is enforced on read, whatever storage still holds"


def test_every_404_is_the_same_apart_from_event_id(client: Client, aws_stack: AwsStack) -> None:
    expired_job = _run_to_end(client, aws_stack, EMBEDDINGS, ttl="1")
    _expire(aws_stack, expired_job)
    chat_job = submit_job(client, CHAT)

    bodies = [
        _assert_not_found(_poll(client, EMBEDDINGS, job_id))
        for job_id in (str(uuid.uuid4()), "not-a-uuid", chat_job, expired_job)
    ]

    event_ids = {body["event_id"] for body in bodies}
    assert len(event_ids) == len(bodies)
    for body in bodies:
        del body["event_id"]
        del body["error"]["event_id"]
    assert all(body == bodies[0] for body in bodies)
