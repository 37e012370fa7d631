"""Cancel (``DELETE /v1/async/<type>/{id}``) and list (``GET /v1/async/jobs``), contract §6."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client, HTTPResponse

from chalicelib import aws
from tests.functional.payloads import (
    CHAT,
    EMBEDDINGS,
    RERANK,
    Kind,
    assert_gateway_error,
    mark_processing,
    set_item_numbers,
    submit_job,
)
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake

API_KEY = "sk-test-cancel-0d4e"
OPENAI_CHAT = CHAT.with_fields(model="openai/gpt-4o-mini")
FINISHED_FIELDS = {"id", "status", "created_at", "completed_at", "expires_at"}


@pytest.fixture
def openai(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIFake]:
    with OpenAIFake(api_key=API_KEY) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        yield server


def now_ms() -> int:
    return int(time.time() * 1000)


def cancel(client: Client, kind: Kind, job_id: str) -> HTTPResponse:
    return client.http.delete(kind.job_path(job_id))


def status_of(aws_stack: AwsStack, job_id: str) -> str:
    item = aws_stack.item(job_id)
    assert item is not None
    status: str = item["status"]["S"]
    return status


# ── cancel ─────────────────────────────────────────────────────────────────────────────


def test_cancelling_a_pending_job_answers_200_cancelled_and_the_provider_is_never_called(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client, CHAT, OPENAI_CHAT)

    response = cancel(client, CHAT, job_id)

    assert response.status_code == 200
    assert set(response.json_body) == FINISHED_FIELDS
    assert (response.json_body["id"], response.json_body["status"]) == (job_id, "cancelled")
    polled = client.http.get(CHAT.job_path(job_id))
    assert (polled.status_code, polled.json_body) == (200, response.json_body)
    assert aws_stack.run_worker() == 1
    assert openai.requests == []
    assert aws_stack.queued_messages() == 0
    assert client.http.get(CHAT.job_path(job_id)).json_body == response.json_body


def test_cancelling_a_processing_job_answers_202_and_flags_it(client: Client, aws_stack: AwsStack) -> None:
    job_id = submit_job(client, CHAT)
    mark_processing(aws_stack, job_id, lease_until_ms=now_ms() + 60_000)

    response = cancel(client, CHAT, job_id)

    assert response.status_code == 202
    assert (response.json_body["id"], response.json_body["status"]) == (job_id, "processing")
    assert int(response.headers["Retry-After"]) >= 1
    item = aws_stack.item(job_id)
    assert item is not None and item["cancel_requested"] == {"BOOL": True}
    assert client.http.get(CHAT.job_path(job_id)).status_code == 202


def test_cancel_requested_job_taken_over_after_its_worker_died_ends_cancelled_without_a_provider_call(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client, CHAT, OPENAI_CHAT)
    mark_processing(aws_stack, job_id, lease_until_ms=now_ms() + 60_000)
    assert cancel(client, CHAT, job_id).status_code == 202
    set_item_numbers(aws_stack, job_id, lease_until=now_ms() - 1000)  # that worker's lease ran out

    assert aws_stack.run_worker() == 1

    polled = client.http.get(CHAT.job_path(job_id))
    assert (polled.status_code, polled.json_body["status"]) == (200, "cancelled")
    assert openai.requests == []


def test_job_cancelled_while_the_provider_runs_ends_cancelled_when_the_worker_finishes(
    client: Client, aws_stack: AwsStack
) -> None:
    job_id = submit_job(client, CHAT)
    answers: list[HTTPResponse] = []

    def cancel_before_the_result_is_written(params: dict[str, Any], **_: Any) -> None:
        if not answers and "completed_at" in str(params.get("UpdateExpression", "")):
            answers.append(cancel(client, CHAT, job_id))

    events = aws.client("dynamodb").meta.events
    events.register("before-parameter-build.dynamodb.UpdateItem", cancel_before_the_result_is_written)
    try:
        assert aws_stack.run_worker() == 1
    finally:
        events.unregister("before-parameter-build.dynamodb.UpdateItem", cancel_before_the_result_is_written)

    assert [answer.status_code for answer in answers] == [202]
    polled = client.http.get(CHAT.job_path(job_id))
    assert (polled.status_code, polled.json_body["status"]) == (200, "cancelled")
    assert set(polled.json_body) == FINISHED_FIELDS
    item = aws_stack.item(job_id)
    assert item is not None and "result" not in item and "cancel_requested" not in item
    assert aws_stack.queued_messages() == 0


@pytest.mark.parametrize("ending", ["completed", "failed", "cancelled"])
def test_cancelling_a_finished_job_is_409(client: Client, aws_stack: AwsStack, ending: str) -> None:
    model = {"completed": "mock/echo", "failed": "mock/fail-400", "cancelled": "mock/echo"}[ending]
    job_id = submit_job(client, CHAT, CHAT.with_fields(model=model))
    if ending == "cancelled":
        assert cancel(client, CHAT, job_id).status_code == 200
    else:
        assert aws_stack.run_worker() == 1
    before = client.http.get(CHAT.job_path(job_id)).json_body

    response = cancel(client, CHAT, job_id)

    assert_gateway_error(response, 409, "job_finished")
    assert response.json_body["extra_fields"] == {"request_type": "chat_completion"}
    assert client.http.get(CHAT.job_path(job_id)).json_body == before


def without_event_id(body: dict[str, Any]) -> dict[str, Any]:
    error = {k: v for k, v in body["error"].items() if k != "event_id"}
    return {**{k: v for k, v in body.items() if k != "event_id"}, "error": error}


@pytest.mark.parametrize("case", ["unknown", "not-a-uuid", "other-type", "expired"])
def test_cancel_answers_the_same_404_as_poll(client: Client, aws_stack: AwsStack, case: str) -> None:
    job_id = submit_job(client, CHAT)
    kind = EMBEDDINGS if case == "other-type" else CHAT
    if case == "unknown":
        job_id = str(uuid.uuid4())
    elif case == "not-a-uuid":
        job_id = "not-a-job"
    elif case == "expired":
        assert aws_stack.run_worker() == 1
        set_item_numbers(aws_stack, job_id, expires_at=now_ms() - 1)

    deleted = cancel(client, kind, job_id)
    polled = client.http.get(kind.job_path(job_id))

    assert_gateway_error(deleted, 404)
    assert polled.status_code == 404
    assert without_event_id(deleted.json_body) == without_event_id(polled.json_body)
    if case == "other-type":
        assert status_of(aws_stack, job_id) == "pending"


# ── list ───────────────────────────────────────────────────────────────────────────────

SUMMARY_FIELDS = {"id", "request_type", "status", "created_at", "completed_at", "expires_at", "status_code"}


def listing(client: Client, query: str = "") -> dict[str, Any]:
    response = client.http.get("/v1/async/jobs" + (f"?{query}" if query else ""))
    assert response.status_code == 200, response.body
    body: dict[str, Any] = response.json_body
    assert body["object"] == "list"
    assert body["has_more"] is (body["next_cursor"] is not None)
    return body


def listed_ids(client: Client, query: str = "") -> list[str]:
    return [job["id"] for job in listing(client, query)["data"]]


def submit_in_order(
    client: Client, aws_stack: AwsStack, kinds: list[Kind], start_ms: int = 1_795_600_000_000
) -> list[str]:
    """Submit one job per kind, each a second newer than the one before; return ids newest first."""
    ids = [submit_job(client, kind) for kind in kinds]
    for offset, job_id in enumerate(ids):
        set_item_numbers(aws_stack, job_id, created_at=start_ms + offset * 1000)
    return ids[::-1]


def test_listing_shows_jobs_newest_first_as_summaries_without_results(client: Client, aws_stack: AwsStack) -> None:
    newest_first = submit_in_order(client, aws_stack, [CHAT, EMBEDDINGS, RERANK])
    assert aws_stack.run_worker() == 3

    body = listing(client)

    assert [job["id"] for job in body["data"]] == newest_first
    assert (body["has_more"], body["next_cursor"]) == (False, None)
    for job in body["data"]:
        assert set(job) <= SUMMARY_FIELDS and {"result", "error"}.isdisjoint(job)
        assert (job["status"], job["status_code"]) == ("completed", 200)
    assert [job["request_type"] for job in body["data"]] == ["rerank", "embedding", "chat_completion"]


def test_cursor_pagination_over_25_jobs_has_no_duplicates_or_gaps(client: Client, aws_stack: AwsStack) -> None:
    newest_first = submit_in_order(client, aws_stack, [CHAT] * 25)
    pages: list[list[str]] = []
    cursor = None

    while True:
        body = listing(client, "limit=7" + (f"&cursor={cursor}" if cursor else ""))
        pages.append([job["id"] for job in body["data"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert [len(page) for page in pages] == [7, 7, 7, 4]
    assert [job_id for page in pages for job_id in page] == newest_first


def test_listing_defaults_to_20_jobs(client: Client, aws_stack: AwsStack) -> None:
    newest_first = submit_in_order(client, aws_stack, [CHAT] * 21)

    body = listing(client)

    assert [job["id"] for job in body["data"]] == newest_first[:20]
    assert body["has_more"] is True


def test_status_filter_lists_only_jobs_in_that_status(client: Client, aws_stack: AwsStack) -> None:
    done, failed = (submit_job(client, CHAT, CHAT.with_fields(model=m)) for m in ("mock/echo", "mock/fail-400"))
    assert aws_stack.run_worker() == 2
    pending = submit_job(client, CHAT)
    cancelled = submit_job(client, CHAT)
    assert cancel(client, CHAT, cancelled).status_code == 200

    assert listed_ids(client, "status=completed") == [done]
    assert listed_ids(client, "status=failed") == [failed]
    assert listed_ids(client, "status=pending") == [pending]
    assert listed_ids(client, "status=cancelled") == [cancelled]
    assert listed_ids(client, "status=processing") == []


@pytest.mark.parametrize("spelling", ["chat_completion", "chat/completions", "chat%2Fcompletions"])
def test_type_filter_accepts_the_request_type_or_its_path(client: Client, aws_stack: AwsStack, spelling: str) -> None:
    chat_jobs = submit_in_order(client, aws_stack, [CHAT, EMBEDDINGS, CHAT, RERANK])[1::2]

    assert listed_ids(client, f"type={spelling}") == chat_jobs


def test_status_and_type_filters_combine(client: Client, aws_stack: AwsStack) -> None:
    chat_done, _ = submit_in_order(client, aws_stack, [EMBEDDINGS, CHAT])
    assert aws_stack.run_worker() == 2
    submit_job(client, CHAT)

    assert listed_ids(client, "status=completed&type=chat_completion") == [chat_done]


def test_expired_jobs_are_not_listed(client: Client, aws_stack: AwsStack) -> None:
    kept, expired = submit_in_order(client, aws_stack, [CHAT, CHAT])
    assert aws_stack.run_worker() == 2
    set_item_numbers(aws_stack, expired, expires_at=now_ms() - 1)

    assert listed_ids(client) == [kept]


def encoded(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=done", "status"),
        ("status=PENDING", "status"),
        ("type=chat", "type"),
        ("type=transcriptions", "type"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("cursor=!!!", "cursor"),
        ("cursor=abc", "cursor"),
        (f"cursor={encoded(['x', 'y'])}", "cursor"),
        (f"cursor={encoded({'id': 'x'})}", "cursor"),
    ],
)
def test_bad_query_parameter_is_400_naming_it(client: Client, aws_stack: AwsStack, query: str, param: str) -> None:
    submit_job(client, CHAT)

    error = assert_gateway_error(client.http.get(f"/v1/async/jobs?{query}"), 400)

    assert error["param"] == param


def test_cursor_with_a_boolean_position_is_400(client: Client, aws_stack: AwsStack) -> None:
    submit_job(client, CHAT)

    error = assert_gateway_error(client.http.get(f"/v1/async/jobs?cursor={encoded([True, 'x'])}"), 400)

    assert error["param"] == "cursor"


def test_status_filter_finds_a_match_behind_many_newer_non_matching_jobs(client: Client, aws_stack: AwsStack) -> None:
    newest_first = submit_in_order(client, aws_stack, [CHAT] * 12)
    oldest = newest_first[-1]
    aws.client("dynamodb").update_item(
        TableName=aws_stack.settings.jobs_table,
        Key={"id": {"S": oldest}},
        UpdateExpression="SET #s = :failed",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":failed": {"S": "failed"}},
    )
    found: list[str] = []
    cursor = None
    for _ in range(len(newest_first)):
        body = listing(client, "status=failed&limit=1" + (f"&cursor={cursor}" if cursor else ""))
        found += [job["id"] for job in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert found == [oldest]
