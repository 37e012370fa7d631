"""Submit (contract §2, with the §1 body rules and the §4 error body) for every JSON request type."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from chalice.test import Client

from tests.functional.payloads import (
    BAD_FIELDS,
    CHAT,
    DEFAULT_TTL_S,
    JSON_HEADERS,
    KINDS,
    OCR,
    REQUIRED_FIELDS,
    RERANK,
    SPEECH,
    STREAM_FLAG_KINDS,
    TTL_HEADER,
    BadField,
    Kind,
    assert_gateway_error,
    assert_nothing_stored,
    epoch_ms,
    is_uuid4,
    kind_id,
    submit,
    submit_job,
)
from tests.support.aws import AwsStack

by_kind = pytest.mark.parametrize("kind", KINDS, ids=kind_id)

# ── accepted ─────────────────────────────────────────────────────────────────────────────


@by_kind
def test_submit_answers_202_with_pending_job_and_nothing_else(client: Client, kind: Kind) -> None:
    before_ms = int(time.time() * 1000)
    response = submit(client, kind)
    after_ms = int(time.time() * 1000)

    assert response.status_code == 202
    body = response.json_body
    assert set(body) == {"id", "status", "created_at"}
    assert is_uuid4(body["id"])
    assert body["status"] == "pending"
    assert before_ms - 1 <= epoch_ms(body["created_at"]) <= after_ms + 1


@by_kind
def test_submit_sets_location_to_typed_poll_path_and_retry_after(client: Client, kind: Kind) -> None:
    response = submit(client, kind)

    job_id = response.json_body["id"]
    assert response.headers["Location"] == f"/v1/async/{kind.path}/{job_id}"
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1


@by_kind
def test_submit_stores_one_job_and_queues_one_message(client: Client, aws_stack: AwsStack, kind: Kind) -> None:
    job_id = submit_job(client, kind)

    assert aws_stack.item_count() == 1
    assert aws_stack.queued_messages() == 1
    item = aws_stack.item(job_id)
    assert item is not None and item["request_type"]["S"] == kind.request_type


def test_each_submit_gets_a_new_random_id(client: Client, aws_stack: AwsStack) -> None:
    ids = [submit_job(client, CHAT) for _ in range(3)]

    assert len(set(ids)) == 3
    assert all(is_uuid4(job_id) for job_id in ids)
    assert aws_stack.item_count() == 3
    assert aws_stack.queued_messages() == 3


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON"], ids=["charset", "upper-case"]
)
def test_json_content_type_with_parameters_or_other_case_is_accepted(client: Client, content_type: str) -> None:
    assert submit(client, CHAT, headers={"Content-Type": content_type}).status_code == 202


# ── result TTL header ─────────────────────────────────────────────────────────────────


def _completed_ttl_s(client: Client, aws_stack: AwsStack, headers: dict[str, str]) -> int:
    """Submit a chat job with ``headers``, run it, and return ``expires_at - completed_at`` in seconds."""
    job_id = submit(client, CHAT, headers={**JSON_HEADERS, **headers}).json_body["id"]
    assert aws_stack.run_worker() == 1
    body = client.http.get(CHAT.job_path(job_id)).json_body
    assert body["status"] == "completed"
    kept_ms = epoch_ms(body["expires_at"]) - epoch_ms(body["completed_at"])
    assert kept_ms % 1000 == 0
    return kept_ms // 1000


@pytest.mark.parametrize("ttl", ["1", "120", "86400"])
def test_positive_integer_ttl_header_is_used_as_given(client: Client, aws_stack: AwsStack, ttl: str) -> None:
    assert _completed_ttl_s(client, aws_stack, {TTL_HEADER: ttl}) == int(ttl)


def test_ttl_header_name_is_case_insensitive(client: Client, aws_stack: AwsStack) -> None:
    assert _completed_ttl_s(client, aws_stack, {"X-BF-Async-Job-Result-TTL": "90"}) == 90


@pytest.mark.parametrize(
    "headers",
    [{}, {TTL_HEADER: ""}, {TTL_HEADER: "soon"}, {TTL_HEADER: "1.5"}, {TTL_HEADER: "0"}, {TTL_HEADER: "-5"}],
    ids=["missing", "empty", "word", "fraction", "zero", "negative"],
)
def test_missing_or_invalid_ttl_header_means_the_default(
    client: Client, aws_stack: AwsStack, headers: dict[str, str]
) -> None:
    assert _completed_ttl_s(client, aws_stack, headers) == DEFAULT_TTL_S


# ── streaming ────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("kind", STREAM_FLAG_KINDS, ids=kind_id)
def test_stream_true_is_refused_before_any_job_exists(client: Client, aws_stack: AwsStack, kind: Kind) -> None:
    response = submit(client, kind, kind.with_fields(stream=True))

    error = assert_gateway_error(response, 400, "stream_not_supported")
    assert error["message"] == f"stream is not supported for async {kind.stream_label}"
    assert error["param"] == "stream"
    assert_nothing_stored(aws_stack)


def test_speech_with_sse_stream_format_is_refused(client: Client, aws_stack: AwsStack) -> None:
    response = submit(client, SPEECH, SPEECH.with_fields(stream_format="sse"))

    error = assert_gateway_error(response, 400, "stream_not_supported")
    assert error["message"] == "stream is not supported for async speech"
    assert_nothing_stored(aws_stack)


@pytest.mark.parametrize("kind", STREAM_FLAG_KINDS, ids=kind_id)
def test_stream_false_is_accepted(client: Client, aws_stack: AwsStack, kind: Kind) -> None:
    assert submit(client, kind, kind.with_fields(stream=False)).status_code == 202
    assert aws_stack.item_count() == 1


def test_speech_with_audio_stream_format_is_accepted(client: Client) -> None:
    assert submit(client, SPEECH, SPEECH.with_fields(stream_format="audio")).status_code == 202


@pytest.mark.parametrize("kind", STREAM_FLAG_KINDS, ids=kind_id)
def test_body_errors_are_reported_before_the_stream_refusal(client: Client, aws_stack: AwsStack, kind: Kind) -> None:
    field = REQUIRED_FIELDS[kind.request_type][1]
    body = {k: v for k, v in kind.with_fields(stream=True).items() if k != field}

    error = assert_gateway_error(submit(client, kind, body), 400, "missing_required_field")
    assert error["param"] == field
    assert_nothing_stored(aws_stack)


# ── required fields (§1) ─────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("kind", "field"),
    [(kind, field) for kind in KINDS for field in REQUIRED_FIELDS[kind.request_type]],
    ids=lambda value: value if isinstance(value, str) else kind_id(value),
)
def test_missing_required_field_is_400_naming_it(client: Client, aws_stack: AwsStack, kind: Kind, field: str) -> None:
    error = assert_gateway_error(submit(client, kind, kind.without(field)), 400, "missing_required_field")

    assert error["param"] == field
    assert_nothing_stored(aws_stack)


@pytest.mark.parametrize("case", BAD_FIELDS, ids=lambda case: case.id)
def test_required_field_of_wrong_type_or_empty_is_400_naming_it(
    client: Client, aws_stack: AwsStack, case: BadField
) -> None:
    response = submit(client, case.kind, case.kind.with_fields(**{case.field: case.value}))

    error = assert_gateway_error(response, 400, case.code)
    assert error["param"] == case.param
    assert_nothing_stored(aws_stack)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (RERANK, RERANK.with_fields(documents=[{"text": "an apple"}, "the sky"], top_n=1)),
        (OCR, OCR.with_fields(document={"type": "image_url", "image_url": "https://example.com/a.png"})),
        (OCR, OCR.with_fields(document={"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})),
    ],
    ids=["rerank-object-documents", "ocr-image-url", "ocr-image-url-object"],
)
def test_optional_shapes_allowed_by_the_contract_are_accepted(client: Client, kind: Kind, body: dict[str, Any]) -> None:
    assert submit(client, kind, body).status_code == 202


# ── body and content type ───────────────────────────────────────────────────────────


_MALFORMED = [
    pytest.param('{"model": "mock/echo",', id="truncated"),
    pytest.param('{"model": "mock/echo"} trailing', id="trailing-garbage"),
    pytest.param("", id="empty"),
    pytest.param("{'model': 'mock/echo'}", id="single-quotes"),
]


@by_kind
@pytest.mark.parametrize("raw", _MALFORMED)
def test_malformed_json_is_400(client: Client, aws_stack: AwsStack, kind: Kind, raw: str) -> None:
    assert_gateway_error(submit(client, kind, raw=raw), 400, "invalid_json")
    assert_nothing_stored(aws_stack)


@by_kind
@pytest.mark.parametrize("raw", ["[]", '"hello"', "42", "null"], ids=["array", "string", "number", "null"])
def test_json_that_is_not_an_object_is_400(client: Client, aws_stack: AwsStack, kind: Kind, raw: str) -> None:
    assert_gateway_error(submit(client, kind, raw=raw), 400, "invalid_json")
    assert_nothing_stored(aws_stack)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            json.dumps(CHAT.with_fields(user="\ud800")),
            id="lone-surrogate-escape",
        ),
        pytest.param(
            json.dumps(CHAT.body)[:-1] + ', "metadata": ' + "[" * 5000 + "]" * 5000 + "}",
            id="deeply-nested-field",
        ),
        pytest.param(
            "[" * 100_000 + "]" * 100_000,
            id="deeply-nested-array",
        ),
    ],
)
def test_json_the_gateway_cannot_store_is_a_400_not_a_500(client: Client, aws_stack: AwsStack, raw: str) -> None:
    assert_gateway_error(submit(client, CHAT, raw=raw), 400, "invalid_json")
    assert_nothing_stored(aws_stack)


@by_kind
@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}],
    ids=["missing", "text-plain", "form"],
)
def test_non_json_content_type_is_400(client: Client, aws_stack: AwsStack, kind: Kind, headers: dict[str, str]) -> None:
    assert_gateway_error(submit(client, kind, headers=headers), 400, "invalid_content_type")
    assert_nothing_stored(aws_stack)


# ── model and provider ──────────────────────────────────────────────────────────────


@by_kind
@pytest.mark.parametrize("model", ["echo", "mock/", "/echo", ""], ids=["no-slash", "no-model", "no-provider", "empty"])
def test_model_not_in_provider_model_form_is_400(client: Client, aws_stack: AwsStack, kind: Kind, model: str) -> None:
    error = assert_gateway_error(submit(client, kind, kind.with_fields(model=model)), 400, "invalid_model")

    assert error["param"] == "model"
    assert_nothing_stored(aws_stack)


@by_kind
def test_unknown_provider_is_400(client: Client, aws_stack: AwsStack, kind: Kind) -> None:
    response = submit(client, kind, kind.with_fields(model="nosuchprovider/some-model"))

    error = assert_gateway_error(response, 400, "unsupported_provider")
    assert error["param"] == "model"
    assert_nothing_stored(aws_stack)


@pytest.mark.parametrize("kind", [RERANK, OCR], ids=kind_id)
def test_provider_that_does_not_serve_the_type_is_400(client: Client, aws_stack: AwsStack, kind: Kind) -> None:
    response = submit(client, kind, kind.with_fields(model="openai/x"))

    error = assert_gateway_error(response, 400, "unsupported_request_type")
    assert error["param"] == "model"
    assert_nothing_stored(aws_stack)


@by_kind
def test_rejected_submit_names_the_request_type(client: Client, kind: Kind) -> None:
    body = submit(client, kind, kind.without("model")).json_body

    assert body["extra_fields"]["request_type"] == kind.request_type
