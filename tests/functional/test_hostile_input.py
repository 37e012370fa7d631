"""Hostile input on the job routes (issue 5, item 4), as property tests through the Chalice test client.

Whatever a client sends to a submit, poll, cancel or list route: never a 5xx, never a stack
trace or an internal resource name, always a JSON body (§4 error shape for a 4xx, a job or a
page for a 2xx), and a refused request leaves the tables, the queues and the bucket exactly as
they were. Bodies over the size limit are 413 whatever they hold.

Generation is derandomized (same examples on every run). Inputs that once broke a rule have
pinned examples in ``test_hostile_input_regressions.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from chalice.test import Client, HTTPResponse
from hypothesis import assume, currently_in_test_context, given, note
from hypothesis import strategies as st

from chalicelib import wiring
from tests.functional.hostile import (
    FORM_SUBMIT_PATHS,
    JSON_SUBMIT_PATHS,
    SUBMIT_PATHS,
    FormRequest,
    StackState,
    any_content_types,
    checked_error,
    checked_json,
    checked_submitted,
    digits,
    encoded_json,
    hostile_settings,
    hostile_text,
    job_ids,
    list_queries,
    mostly_json_content_types,
    multipart_requests,
    snapshot,
)
from tests.functional.payloads import CHAT, JSON_HEADERS, TTL_HEADER, submit_job
from tests.support.aws import AwsStack

JOB_NOT_FOUND = "job not found or expired"
SIZE_LIMIT = 2048
DEFAULT_TTL_S = 3600
KEY_CARRIERS = ("x-bf-vk", "Authorization", "x-api-key", "x-goog-api-key")


def send(
    client: Client, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> HTTPResponse:
    """The request, noted so that a failing example shows what was sent (shortened)."""
    if currently_in_test_context():
        note(
            f"{method} {path[:300]!r} headers={ {k: v[:200] for k, v in (headers or {}).items()} } body={body[:300]!r}"
        )
    return client.http.request(method, path, headers=headers or {}, body=body)


def _headers(content_type: str | None) -> dict[str, str]:
    return {} if content_type is None else {"Content-Type": content_type}


def _sent(*parts: str | bytes | None) -> str:
    return "\n".join(p.decode("latin-1") if isinstance(p, bytes) else p for p in parts if p is not None)


def assert_submit_outcome(
    aws_stack: AwsStack, before: StackState, response: HTTPResponse, path: str, sent: str
) -> None:
    """A refusal changed nothing; an acceptance is a well-formed job that was stored and queued once."""
    if response.status_code == 202:
        job_id = checked_submitted(response, path, sent)
        after = snapshot(aws_stack)
        assert aws_stack.item(job_id) is not None
        assert (after.jobs, after.queued) == (before.jobs + 1, before.queued + 1)
        assert (after.keys, after.dead_letters) == (before.keys, before.dead_letters)
        return
    checked_error(response, sent)
    assert snapshot(aws_stack) == before


# submit: bodies and content types ----------------------------------------------------------
@hostile_settings(250)
@given(path=st.sampled_from(SUBMIT_PATHS), body=encoded_json(), content_type=mostly_json_content_types)
def test_any_json_body_with_any_content_type_is_answered_without_5xx_and_a_refusal_stores_nothing(
    client: Client, aws_stack: AwsStack, path: str, body: bytes, content_type: str | None
) -> None:
    before = snapshot(aws_stack)

    response = send(client, "POST", path, _headers(content_type), body)

    assert_submit_outcome(aws_stack, before, response, path, _sent(body, content_type))


@hostile_settings(200)
@given(
    path=st.sampled_from(SUBMIT_PATHS),
    body=st.binary(max_size=1024),
    content_type=mostly_json_content_types | any_content_types,
)
def test_any_bytes_with_any_content_type_are_answered_without_5xx_and_a_refusal_stores_nothing(
    client: Client, aws_stack: AwsStack, path: str, body: bytes, content_type: str | None
) -> None:
    before = snapshot(aws_stack)

    response = send(client, "POST", path, _headers(content_type), body)

    assert_submit_outcome(aws_stack, before, response, path, _sent(body, content_type))


@hostile_settings(200)
@given(path=st.sampled_from(FORM_SUBMIT_PATHS + JSON_SUBMIT_PATHS[:1]), form=multipart_requests())
def test_odd_or_damaged_multipart_forms_are_answered_without_5xx_and_a_refusal_uploads_nothing(
    client: Client, aws_stack: AwsStack, path: str, form: FormRequest
) -> None:
    body, content_type = form.body, form.content_type
    before = snapshot(aws_stack)

    response = send(client, "POST", path, {"Content-Type": content_type}, body)

    assert_submit_outcome(aws_stack, before, response, path, _sent(body, content_type))
    if response.status_code == 202:
        assert snapshot(aws_stack).objects > before.objects, "the uploaded file parts are kept in the bucket"


# submit: header values -----------------------------------------------------------------------
optional_header = st.none() | hostile_text


@hostile_settings(200)
@given(
    ttl=st.none() | digits | hostile_text | st.integers(-(2**70), 2**70).map(str),
    idempotency_key=optional_header,
    carriers=st.fixed_dictionaries({}, optional=dict.fromkeys(KEY_CARRIERS, hostile_text)),
)
def test_hostile_header_values_on_a_valid_submit_never_5xx_and_the_ttl_is_the_given_one_or_the_default(
    client: Client, aws_stack: AwsStack, ttl: str | None, idempotency_key: str | None, carriers: dict[str, str]
) -> None:
    headers = {**JSON_HEADERS, **carriers}
    if ttl is not None:
        headers[TTL_HEADER] = ttl
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    before = snapshot(aws_stack)

    response = send(client, "POST", CHAT.submit_path, headers, json.dumps(CHAT.body).encode())

    sent = _sent(*headers.values())
    if carriers.get("x-bf-vk", "").strip():
        assert response.status_code == 400, "no virtual key exists, so any x-bf-vk value is unknown"
    if response.status_code != 202:
        checked_error(response, sent)
        assert snapshot(aws_stack) == before
        return
    job_id = checked_submitted(response, CHAT.submit_path, sent)
    item = aws_stack.item(job_id)
    assert item is not None
    if snapshot(aws_stack).jobs == before.jobs:
        assert idempotency_key is not None, "only an Idempotency-Key replay answers 202 without a new job"
        return
    kept = int(item["result_ttl_s"]["N"])
    if ttl is not None and ttl.isascii() and ttl.isdigit() and 0 < int(ttl) <= aws_stack.settings.max_ttl_s:
        assert kept == int(ttl)
    elif ttl is None or not (ttl.strip().isascii() and ttl.strip().isdigit()) or int(ttl.strip()) == 0:
        assert kept == DEFAULT_TTL_S
    else:  # padded with whitespace, or above the deployment's maximum
        assert kept in (int(ttl.strip()), DEFAULT_TTL_S, aws_stack.settings.max_ttl_s)


# poll and cancel: job ids --------------------------------------------------------------------
JOB_PATHS = tuple(path + "/" for path in SUBMIT_PATHS)


@pytest.fixture
def existing_job(client: Client) -> str:
    return submit_job(client, CHAT)


def _lookalikes(job_id: str) -> list[str]:
    text = job_id
    return [text.upper(), text.replace("-", ""), "{" + text + "}", "urn:uuid:" + text, text + " ", text[:-1], text]


@hostile_settings(300)
@given(
    prefix=st.sampled_from(JOB_PATHS),
    job_id=job_ids,
    lookalike=st.none() | st.integers(0, 6),
    encode=st.booleans(),
    method=st.sampled_from(["GET", "DELETE"]),
)
def test_any_job_id_on_poll_or_cancel_is_the_one_404_and_touches_no_job(
    client: Client,
    aws_stack: AwsStack,
    existing_job: str,
    prefix: str,
    job_id: str,
    lookalike: int | None,
    encode: bool,
    method: str,
) -> None:
    if lookalike is not None:  # near misses of a real job's id, or its exact id on another type's path
        job_id = _lookalikes(existing_job)[lookalike]
        assume(not (job_id == existing_job and prefix == CHAT.submit_path + "/"))
    # the test client's urlsplit drops tab, CR and LF from a raw path (over HTTP they come percent-encoded)
    raw = not encode and not set(job_id) & set("\t\r\n")
    path = prefix + (job_id if raw else quote(job_id, safe=""))
    before = snapshot(aws_stack)

    response = send(client, method, path)

    error = checked_error(response, _sent(path))
    assert response.status_code == 404
    assert (error["code"], error["message"]) == ("job_not_found", JOB_NOT_FOUND)
    assert "param" not in error, "the 404 never says why"
    assert snapshot(aws_stack) == before
    item = aws_stack.item(existing_job)
    assert item is not None and item["status"]["S"] == "pending"


# list: query strings --------------------------------------------------------------------------
@pytest.fixture
def listed_jobs(client: Client) -> list[str]:
    return [submit_job(client, CHAT) for _ in range(3)]


@hostile_settings(250)
@given(pairs=list_queries, raw=st.none() | hostile_text)
def test_any_query_string_on_the_job_list_is_a_page_or_a_400_and_changes_nothing(
    client: Client, aws_stack: AwsStack, listed_jobs: list[str], pairs: list[tuple[str, str]], raw: str | None
) -> None:
    query = urlencode(pairs) if raw is None else raw.replace("#", "")
    path = "/v1/async/jobs?" + query
    before = snapshot(aws_stack)

    response = send(client, "GET", path)

    assert snapshot(aws_stack) == before
    if response.status_code != 200:
        error = checked_error(response, _sent(path))
        assert response.status_code == 400
        assert error["code"] in ("invalid_query_parameter", "invalid_cursor")
        return
    page = checked_json(response, _sent(path))
    assert set(page) == {"object", "data", "has_more", "next_cursor"}
    assert page["object"] == "list" and isinstance(page["has_more"], bool)
    assert page["next_cursor"] is None or isinstance(page["next_cursor"], str)
    assert {job["id"] for job in page["data"]} <= set(listed_jobs)


# size limits -------------------------------------------------------------------------------------
@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch, aws_stack: AwsStack) -> Iterator[int]:
    monkeypatch.setenv("ASYNCGATE_MAX_REQUEST_BYTES", str(SIZE_LIMIT))
    wiring.reset()
    yield SIZE_LIMIT
    wiring.reset()


@hostile_settings(120)
@given(
    path=st.sampled_from(SUBMIT_PATHS),
    size=st.integers(SIZE_LIMIT - 64, SIZE_LIMIT * 3),
    filler=st.binary(min_size=1, max_size=64),
    content_type=any_content_types,
)
def test_a_body_over_the_size_limit_is_413_whatever_it_holds_and_one_within_it_never_is(
    client: Client, aws_stack: AwsStack, small_limit: int, path: str, size: int, filler: bytes, content_type: str | None
) -> None:
    body = (filler * (size // len(filler) + 1))[:size]
    before = snapshot(aws_stack)

    response = send(client, "POST", path, _headers(content_type), body)

    if size > small_limit:
        error = checked_error(response, _sent(body, content_type))
        assert (response.status_code, error["code"]) == (413, "request_too_large")
        assert snapshot(aws_stack) == before
    else:
        assert response.status_code != 413
        assert_submit_outcome(aws_stack, before, response, path, _sent(body, content_type))


def test_a_json_body_one_byte_over_the_default_six_megabytes_is_413_and_stores_nothing(
    client: Client, aws_stack: AwsStack
) -> None:
    prefix = b'{"model":"mock/echo","prompt":"'
    body = prefix + b"a" * (6_000_001 - len(prefix) - 2) + b'"}'
    before = snapshot(aws_stack)

    response = send(client, "POST", CHAT.submit_path, JSON_HEADERS, body)

    error = checked_error(response)
    assert (response.status_code, error["code"]) == (413, "request_too_large")
    assert snapshot(aws_stack) == before


def test_a_well_formed_id_of_no_job_is_the_same_404_as_a_malformed_one(client: Client) -> None:
    unknown = client.http.get(f"{CHAT.submit_path}/{uuid.uuid4()}")
    malformed = client.http.get(f"{CHAT.submit_path}/..%2F..%2Fetc%2Fpasswd")

    bodies = [checked_error(response) for response in (unknown, malformed)]
    assert unknown.status_code == malformed.status_code == 404
    assert [{k: v for k, v in body.items() if k != "event_id"} for body in bodies] == [
        {"type": "not_found_error", "code": "job_not_found", "message": JOB_NOT_FOUND}
    ] * 2
