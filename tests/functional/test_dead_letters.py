"""The dead-letter consumer (issue 4, item 1): a job whose message exhausted its receives is
failed with 500 ``job_abandoned`` so its poll ends; finished jobs are left alone; a job some
worker still holds (live lease) is looked at again later."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from chalice.test import Client

from chalicelib import aws
from chalicelib.sqs_poller import SqsPoller
from tests.functional.forms import IMAGE, bucket_keys, submit_form
from tests.functional.payloads import (
    CHAT,
    assert_error_body,
    epoch_ms,
    mark_processing,
    set_item_numbers,
    submit_job,
)
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake, error_body

API_KEY = "sk-test-dlq-77b0"
OPENAI_CHAT = CHAT.with_fields(model="openai/gpt-4o-mini")


@pytest.fixture
def openai(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIFake]:
    with OpenAIFake(api_key=API_KEY) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        yield server


class DeadLetterQueue:
    """Feeds the DLQ to the ``dead_letters`` handler as Lambda would, keeping the receipt handles."""

    def __init__(self, aws_stack: AwsStack) -> None:
        from app import app

        self._url = aws_stack.dlq_url
        self.handles: list[str] = []

        def handler(event: dict[str, Any], context: Any) -> Any:
            self.handles.extend(record["receiptHandle"] for record in event["Records"])
            return app.handler_map["dead_letters"](event, context)

        self._poller = SqsPoller(aws.client("sqs"), self._url, handler, "dead_letters", 60, wait_s=0)

    def send(self, body: str) -> None:
        aws.client("sqs").send_message(QueueUrl=self._url, MessageBody=body)

    def drain(self) -> int:
        handled = 0
        while count := self._poller.poll_once():
            handled += count
        return handled

    def messages(self) -> int:
        attributes = aws.client("sqs").get_queue_attributes(
            QueueUrl=self._url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def make_all_visible(self) -> None:
        for handle in self.handles:
            aws.client("sqs").change_message_visibility(QueueUrl=self._url, ReceiptHandle=handle, VisibilityTimeout=0)
        self.handles.clear()


@pytest.fixture
def dlq(aws_stack: AwsStack) -> DeadLetterQueue:
    return DeadLetterQueue(aws_stack)


def now_ms() -> int:
    return int(time.time() * 1000)


def poll(client: Client, job_id: str) -> tuple[int, dict[str, Any]]:
    response = client.http.get(CHAT.job_path(job_id))
    body: dict[str, Any] = response.json_body
    return response.status_code, body


def assert_abandoned(client: Client, job_id: str) -> None:
    status, job = poll(client, job_id)
    assert (status, job["status"], job["status_code"]) == (200, "failed", 500)
    assert "result" not in job
    error = assert_error_body(job["error"], 500, bifrost=True)
    assert error["code"] == "job_abandoned"
    assert epoch_ms(job["expires_at"]) - epoch_ms(job["completed_at"]) == 3600 * 1000


def test_job_whose_message_is_dead_lettered_fails_with_500_job_abandoned(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue
) -> None:
    job_id = submit_job(client, CHAT)
    dlq.send(job_id)

    assert dlq.drain() == 1

    assert_abandoned(client, job_id)
    assert dlq.messages() == 0


def test_message_redriven_after_persistent_claim_failures_ends_the_job_failed(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue, openai: OpenAIFake
) -> None:
    job_id = submit_job(client, CHAT, OPENAI_CHAT)
    redrive = json.loads(
        aws.client("sqs").get_queue_attributes(QueueUrl=aws_stack.queue_url, AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )
    refused: list[str] = []

    def refuse_claims(params: dict[str, Any], **_: Any) -> None:
        refused.append(json.loads(params["body"])["Key"]["id"]["S"])  # the serialized request
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "UpdateItem")

    events = aws.client("dynamodb").meta.events
    events.register("before-call.dynamodb.UpdateItem", refuse_claims)
    try:
        for _ in range(3 * int(redrive["maxReceiveCount"])):
            if aws_stack.run_worker(rounds=1) == 0:
                break
            aws_stack.make_all_visible()
    finally:
        events.unregister("before-call.dynamodb.UpdateItem", refuse_claims)

    assert refused == [job_id] * int(redrive["maxReceiveCount"])
    assert aws_stack.queued_messages() == 0
    assert dlq.messages() == 1
    assert poll(client, job_id)[1]["status"] == "pending"

    assert dlq.drain() == 1

    assert_abandoned(client, job_id)
    assert openai.requests == []
    assert dlq.messages() == 0


@pytest.mark.parametrize("model", ["mock/echo", "mock/fail-400"], ids=["completed", "failed"])
def test_dead_letter_for_a_finished_job_changes_nothing(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue, model: str
) -> None:
    job_id = submit_job(client, CHAT, CHAT.with_fields(model=model))
    assert aws_stack.run_worker() == 1
    before = poll(client, job_id)
    item_before = aws_stack.item(job_id)
    dlq.send(job_id)

    assert dlq.drain() == 1

    assert poll(client, job_id) == before
    assert aws_stack.item(job_id) == item_before
    assert dlq.messages() == 0


def test_dead_letter_for_a_cancelled_job_changes_nothing(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue
) -> None:
    job_id = submit_job(client, CHAT)
    assert client.http.delete(CHAT.job_path(job_id)).status_code == 200
    dlq.send(job_id)

    assert dlq.drain() == 1

    assert poll(client, job_id)[1]["status"] == "cancelled"


def test_dead_letter_for_a_job_with_a_live_lease_is_kept_and_fails_it_once_the_lease_ends(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue
) -> None:
    job_id = submit_job(client, CHAT)
    mark_processing(aws_stack, job_id, lease_until_ms=now_ms() + 60_000)
    dlq.send(job_id)

    assert dlq.drain() == 1

    status, job = poll(client, job_id)
    assert (status, job["status"]) == (202, "processing")
    assert dlq.messages() == 1

    set_item_numbers(aws_stack, job_id, lease_until=now_ms() - 1)  # its worker died
    dlq.make_all_visible()
    assert dlq.drain() == 1

    assert_abandoned(client, job_id)
    assert dlq.messages() == 0


def test_dead_letter_for_a_processing_job_whose_lease_ran_out_fails_it(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue
) -> None:
    job_id = submit_job(client, CHAT)
    mark_processing(aws_stack, job_id, lease_until_ms=now_ms() - 1000)
    dlq.send(job_id)

    assert dlq.drain() == 1

    assert_abandoned(client, job_id)


def test_abandoned_job_is_never_run_by_a_late_delivery(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue, openai: OpenAIFake
) -> None:
    job_id = submit_job(client, CHAT, OPENAI_CHAT)  # its message is still in the jobs queue
    dlq.send(job_id)
    assert dlq.drain() == 1

    assert aws_stack.run_worker() == 1

    assert openai.requests == []
    assert_abandoned(client, job_id)
    assert aws_stack.queued_messages() == 0


@pytest.mark.parametrize("body", ["not-a-job-id", str(uuid.uuid4())], ids=["garbage", "unknown-job"])
def test_dead_letter_naming_no_job_is_dropped(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue, body: str
) -> None:
    job_id = submit_job(client, CHAT)
    dlq.send(body)

    assert dlq.drain() == 1

    assert dlq.messages() == 0
    assert poll(client, job_id)[1]["status"] == "pending"
    assert aws_stack.item_count() == 1


def test_inputs_of_an_abandoned_job_are_deleted(
    client: Client, aws_stack: AwsStack, dlq: DeadLetterQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCGATE_INLINE_LIMIT_BYTES", "1024")
    fields = {"model": "mock/echo", "prompt": "a red hat " * 200}
    job_id = submit_form(client, "/v1/async/images/edits", (fields, [("image", ("cat.png", IMAGE, "image/png"))]))
    assert len(bucket_keys(aws_stack)) == 2
    dlq.send(job_id)

    assert dlq.drain() == 1

    assert client.http.get(f"/v1/async/images/edits/{job_id}").json_body["status"] == "failed"
    assert bucket_keys(aws_stack) == []


# ── a job is never left open without a message to finish it ───────────────────────────


def test_job_whose_final_write_fails_once_keeps_its_message_and_completes_later(
    client: Client, aws_stack: AwsStack
) -> None:
    job_id = submit_job(client, CHAT)
    failures: list[str] = []

    def fail_first_finish(params: dict[str, Any], **_: Any) -> None:
        if not failures and "completed_at" in str(params.get("UpdateExpression", "")):
            failures.append(params["Key"]["id"]["S"])
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "UpdateItem")

    events = aws.client("dynamodb").meta.events
    events.register("before-parameter-build.dynamodb.UpdateItem", fail_first_finish)
    try:
        assert aws_stack.run_worker(rounds=1) == 1
    finally:
        events.unregister("before-parameter-build.dynamodb.UpdateItem", fail_first_finish)

    assert failures == [job_id]
    assert aws_stack.queued_messages() == 1
    set_item_numbers(aws_stack, job_id, lease_until=now_ms() - 1)
    aws_stack.make_all_visible()
    aws_stack.run_worker()
    assert poll(client, job_id)[1]["status"] == "completed"


def test_job_failed_with_a_huge_provider_error_ends_failed_with_an_error_body(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    openai.script_error("/chat/completions", 400, error_body("x" * 420_000, "invalid_request_error"))
    job_id = submit_job(client, CHAT, OPENAI_CHAT)

    assert aws_stack.run_worker() == 1

    status, job = poll(client, job_id)
    assert (status, job["status"], job["status_code"]) == (200, "failed", 400)
    assert job["error"]["status_code"] == 400
