"""Moto-side helpers for fault tests: submit and poll as a client, drive the queues, age leases.

The worker runs as Lambda would run it (``AwsStack.run_worker``: real-shaped SQS events, messages
deleted unless reported as failed); ``deliver_to_worker`` hands it a batch by hand when a test
needs the same message twice. ``HeldOpenAIFake`` keeps a provider call in flight until released,
so "another worker acts meanwhile" needs no sleeping.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from chalice.test import Client, HTTPResponse

from chalicelib import aws
from chalicelib.sqs_poller import LambdaContext, SqsPoller
from tests.support.aws import AwsStack
from tests.support.fake_http import RecordedRequest, Reply
from tests.support.openai_fake import OpenAIFake

API_KEY = "sk-test-faults-5e0c2a9b"
SUBMIT = "/v1/async/chat/completions"
UPSTREAM = "/chat/completions"
JSON_HEADERS = {"Content-Type": "application/json"}


def chat_body(content: str = "Tell me a joke", model: str = "openai/gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def submit(client: Client, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> HTTPResponse:
    payload = json.dumps(body if body is not None else chat_body())
    return client.http.post(SUBMIT, headers={**JSON_HEADERS, **(headers or {})}, body=payload)


def submit_job(client: Client, body: dict[str, Any] | None = None) -> str:
    response = submit(client, body)
    assert response.status_code == 202, response.body
    job_id: str = response.json_body["id"]
    return job_id


def poll(client: Client, job_id: str) -> tuple[int, dict[str, Any]]:
    """The poll as a client sees it: HTTP status and body."""
    response = client.http.get(f"{SUBMIT}/{job_id}")
    body: dict[str, Any] = response.json_body
    return response.status_code, body


def assert_error_body(body: dict[str, Any], status: int, code: str) -> None:
    """A contract §4 body raised by the gateway itself, with no trace or internal name in it."""
    assert body["is_bifrost_error"] is True
    assert body["status_code"] == status
    error = body["error"]
    assert (error["code"], error["type"]) == (code, body["type"])
    assert error["message"]
    assert error["event_id"] == body["event_id"]
    text = json.dumps(body)
    for leak in ("Traceback", "botocore", "ClientError", "asyncgate-jobs", "asyncgate-payloads", 'File "'):
        assert leak not in text


def attempts(stack: AwsStack, job_id: str) -> int:
    item = stack.item(job_id)
    assert item is not None
    return int(item["attempts"]["N"])


def expire_lease(stack: AwsStack, job_id: str) -> None:
    """Age the job's lease into the past, as if its holder had gone quiet for the whole lease."""
    aws.client("dynamodb").update_item(
        TableName=stack.settings.jobs_table,
        Key={"id": {"S": job_id}},
        UpdateExpression="SET lease_until = :past",
        ConditionExpression="attribute_exists(lease_until)",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )


def drain(stack: AwsStack, limit: int = 20) -> int:
    """Run the worker, returning every handed-back message at once, until the queue is empty."""
    handled = 0
    for _ in range(limit):
        handled += stack.run_worker()
        if stack.queued_messages() == 0:
            return handled
        stack.make_all_visible()
    raise AssertionError("the queue never emptied")


def send_raw(stack: AwsStack, body: str, dead: bool = False) -> None:
    """Put a message on the jobs queue (or its DLQ) by hand: a duplicate, or a poison body."""
    aws.client("sqs").send_message(QueueUrl=stack.dlq_url if dead else stack.queue_url, MessageBody=body)


def receive(stack: AwsStack, count: int = 10, dead: bool = False) -> list[dict[str, Any]]:
    """Receive visible messages from the jobs queue (or its DLQ) by hand."""
    url = stack.dlq_url if dead else stack.queue_url
    reply = aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=count, AttributeNames=["All"])
    messages: list[dict[str, Any]] = reply.get("Messages", [])
    return messages


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A Lambda SQS event carrying ``messages`` (as received), each with its real id and receipt."""
    records = [
        {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "eventSource": "aws:sqs",
        }
        for message in messages
    ]
    return {"Records": records}


def deliver_to_worker(event: dict[str, Any], handler: str = "worker") -> list[str]:
    """One invocation of the worker (or ``dead_letters``); the message ids it reported as failed."""
    from app import app

    reply = app.handler_map[handler](event, LambdaContext(handler, 300))
    return [item["itemIdentifier"] for item in reply["batchItemFailures"]]


def worker_batch(stack: AwsStack, batch_size: int) -> int:
    """Receive one batch of at most ``batch_size`` messages and run the worker on it, as Lambda would."""
    from app import app

    poller = SqsPoller(aws.client("sqs"), stack.queue_url, app.handler_map["worker"], "worker", 300, batch_size, 0)
    return poller.poll_once()


def make_visible(stack: AwsStack, messages: list[dict[str, Any]]) -> None:
    """End the delay the worker put on messages received by hand (``make_all_visible`` for those)."""
    sqs = aws.client("sqs")
    for message in messages:
        sqs.change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )


def acknowledge(stack: AwsStack, messages: list[dict[str, Any]], dead: bool = False) -> None:
    sqs = aws.client("sqs")
    for message in messages:
        sqs.delete_message(QueueUrl=stack.dlq_url if dead else stack.queue_url, ReceiptHandle=message["ReceiptHandle"])


def run_dead_letters(stack: AwsStack) -> int:
    """Feed the DLQ's visible messages to the dead-letter consumer once; returns how many it got."""
    from app import app

    poller = SqsPoller(aws.client("sqs"), stack.dlq_url, app.handler_map["dead_letters"], "dead_letters", 60, wait_s=0)
    return poller.poll_once()


def dlq_depth(stack: AwsStack) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def bucket_keys(stack: AwsStack) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=stack.settings.bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def new_job_id() -> str:
    return str(uuid.uuid4())


class HeldOpenAIFake(OpenAIFake):
    """The fake OpenAI, holding its first ``held`` chat answers until ``release()``.

    A held answer says ``"id": "chatcmpl-held"``, so a test can tell which call's result a job kept.
    ``arrived`` is set once a held request is in.
    """

    def __init__(self, api_key: str | None = API_KEY, held: int = 1) -> None:
        super().__init__(api_key=api_key)
        self.arrived = threading.Event()
        self._gate = threading.Event()
        self._held = held
        self._count = threading.Lock()

    def respond(self, request: RecordedRequest) -> Reply:
        with self._count:
            hold = self._held > 0 and request.path.endswith(UPSTREAM)
            if hold:
                self._held -= 1
        if not hold:
            return super().respond(request)
        self.arrived.set()
        self._gate.wait(timeout=30)
        status, headers, content = super().respond(request)
        body = json.loads(content)
        body["id"] = "chatcmpl-held"
        return status, headers, json.dumps(body).encode()

    def release(self) -> None:
        self._gate.set()

    def stop(self) -> None:
        self._gate.set()
        super().stop()
