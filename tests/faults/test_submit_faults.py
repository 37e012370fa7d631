"""AWS faults while a job is submitted: DynamoDB throttling, SQS refusing the message, S3 refusing a body.

A transient fault is absorbed (botocore's retries) and the submit succeeds; a lasting one is a
5xx with the contract §4 body and leaves nothing behind: no item, no message, no object, and no
job that could ever poll as pending.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from chalice.test import Client

from tests.faults.hooks import Fault, Recorder, client_error, dynamodb_throttled, hooked
from tests.faults.support import (
    UPSTREAM,
    assert_error_body,
    bucket_keys,
    chat_body,
    drain,
    poll,
    submit,
)
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake

BOTOCORE_CALLS = 3  # chalicelib.aws: retries total_max_attempts=3
INLINE_LIMIT = 1024


def assert_nothing_left(stack: AwsStack) -> None:
    assert (stack.item_count(), stack.queued_messages(), bucket_keys(stack)) == (0, 0, [])


def queue_down() -> Fault:
    return Fault(lambda: client_error("AWS.SimpleQueueService.ServiceUnavailable", "SendMessage", 503))


def sent_job_ids(recorder: Recorder) -> list[str]:
    return [str(params["MessageBody"]) for params in recorder.seen]


# DynamoDB throttling ----------------------------------------------------------------------
@pytest.mark.parametrize("throttled", [1, 2])
def test_briefly_throttled_job_write_is_retried_by_botocore_and_the_job_runs_once(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake, throttled: int
) -> None:
    with dynamodb_throttled("PutItem", times=throttled) as throttle:
        response = submit(client)

    assert response.status_code == 202
    assert (throttle.throttled, throttle.attempts) == (throttled, throttled + 1)
    job_id = response.json_body["id"]
    assert (aws_stack.item_count(), aws_stack.queued_messages()) == (1, 1)
    assert poll(client, job_id)[1]["status"] == "pending"

    drain(aws_stack)

    assert len(openai.requests_to(UPSTREAM)) == 1
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)


def test_persistently_throttled_job_write_is_a_503_to_retry_and_queues_nothing(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    with dynamodb_throttled("PutItem") as throttle:
        response = submit(client)

    assert (response.status_code, response.json_body["error"]["code"]) == (503, "temporarily_unavailable")
    assert response.headers["Retry-After"] == "1"
    assert_error_body(response.json_body, response.status_code, response.json_body["error"]["code"])
    assert response.json_body["extra_fields"] == {"request_type": "chat_completion"}
    assert throttle.attempts == BOTOCORE_CALLS
    assert_nothing_left(aws_stack)
    assert openai.requests == []


# SQS refusing the message ---------------------------------------------------------------
def test_queue_refusing_the_message_is_503_and_the_job_is_rolled_back(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    sent, refuse = Recorder(), queue_down()
    with (
        hooked("sqs", "before-parameter-build.sqs.SendMessage", sent),
        hooked("sqs", "before-call.sqs.SendMessage", refuse),
    ):
        response = submit(client)

    assert response.status_code == 503
    assert_error_body(response.json_body, 503, "queue_unavailable")
    assert refuse.injected == 1
    assert_nothing_left(aws_stack)
    [job_id] = sent_job_ids(sent)
    status, body = poll(client, job_id)
    assert (status, body["error"]["code"]) == (404, "job_not_found")
    assert drain(aws_stack) == 0
    assert openai.requests == []


def test_after_a_refused_message_the_same_idempotency_key_makes_a_new_job_that_runs_once(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    sent = Recorder()
    with (
        hooked("sqs", "before-parameter-build.sqs.SendMessage", sent),
        hooked("sqs", "before-call.sqs.SendMessage", queue_down()),
    ):
        assert submit(client, headers=key).status_code == 503
    [rolled_back] = sent_job_ids(sent)

    retried = submit(client, headers=key)

    assert retried.status_code == 202
    job_id = retried.json_body["id"]
    assert job_id != rolled_back
    assert poll(client, rolled_back)[0] == 404
    drain(aws_stack)
    assert len(openai.requests_to(UPSTREAM)) == 1
    status, body = poll(client, job_id)
    assert (status, body["status"]) == (200, "completed")


def is_rollback(params: dict[str, Any]) -> bool:
    return any("Delete" in item for item in params.get("TransactItems", []))


def test_retry_of_a_submit_whose_message_and_rollback_both_failed_gets_a_job_that_runs(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    rollback_fails = Fault(lambda: client_error("InternalServerError", "TransactWriteItems"), when=is_rollback)
    with (
        hooked("sqs", "before-call.sqs.SendMessage", queue_down()),
        hooked("dynamodb", "before-parameter-build.dynamodb.TransactWriteItems", rollback_fails),
    ):
        assert submit(client, headers=key).status_code == 503
    assert rollback_fails.injected == 1

    retried = submit(client, headers=key)

    assert retried.status_code == 202
    drain(aws_stack)
    assert len(openai.requests_to(UPSTREAM)) == 1
    status, body = poll(client, retried.json_body["id"])
    assert (status, body["status"]) == (200, "completed")


# S3 refusing a large request --------------------------------------------------------------
def test_large_request_with_s3_refusing_the_upload_is_5xx_and_stores_nothing(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCGATE_INLINE_LIMIT_BYTES", str(INLINE_LIMIT))
    refuse = Fault(lambda: client_error("InternalError", "PutObject", 500))
    with hooked("s3", "before-call.s3.PutObject", refuse):
        response = submit(client, chat_body("x" * (4 * INLINE_LIMIT)))

    assert 500 <= response.status_code < 600
    assert_error_body(response.json_body, response.status_code, response.json_body["error"]["code"])
    assert refuse.injected == 1
    assert_nothing_left(aws_stack)
    assert openai.requests == []


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, content_type) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        parts.append(f"{head}Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request_blob(params: dict[str, Any]) -> bool:
    return str(params.get("Key", "")).startswith("requests/")


def test_upload_stored_before_s3_refuses_the_large_request_is_removed_again(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCGATE_INLINE_LIMIT_BYTES", str(INLINE_LIMIT))
    body, content_type = multipart(
        {"model": "mock/echo", "prompt": "y" * (2 * INLINE_LIMIT)},
        {"image": ("cat.png", b"\x89PNG-bytes", "image/png")},
    )
    refuse = Fault(lambda: client_error("InternalError", "PutObject", 500), when=request_blob)
    with hooked("s3", "before-parameter-build.s3.PutObject", refuse):
        response = client.http.post("/v1/async/images/edits", headers={"Content-Type": content_type}, body=body)

    assert 500 <= response.status_code < 600
    assert refuse.injected == 1
    assert_nothing_left(aws_stack)


def mask_upload(params: dict[str, Any]) -> bool:
    return "/mask" in str(params.get("Key", ""))


def test_uploads_stored_before_s3_refuses_a_later_upload_are_removed_again(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, content_type = multipart(
        {"model": "mock/echo", "prompt": "a cat"},
        {"image": ("cat.png", b"\x89PNG-image", "image/png"), "mask": ("mask.png", b"\x89PNG-mask", "image/png")},
    )
    refuse = Fault(lambda: client_error("InternalError", "PutObject", 500), when=mask_upload)
    with hooked("s3", "before-parameter-build.s3.PutObject", refuse):
        response = client.http.post("/v1/async/images/edits", headers={"Content-Type": content_type}, body=body)

    assert 500 <= response.status_code < 600
    assert refuse.injected == 1
    assert_nothing_left(aws_stack)
