"""SqsPoller against moto: real-shaped events, partial batch failures, redelivery, the Lambda context."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib import aws
from chalicelib.sqs_poller import LambdaContext, SqsPoller
from tests.support.aws import AwsStack

FUNCTION = "worker"
TIMEOUT_S = 300


@dataclass
class RecordingHandler:
    """A stand-in for the worker: records each call, then answers what ``reply`` says."""

    reply: Callable[[list[dict[str, Any]]], Any] = lambda records: {"batchItemFailures": []}
    events: list[dict[str, Any]] = field(default_factory=list)
    remaining_ms: list[int] = field(default_factory=list)
    contexts: list[LambdaContext] = field(default_factory=list)
    called: threading.Event = field(default_factory=threading.Event)

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        self.remaining_ms.append(context.get_remaining_time_in_millis())
        self.called.set()
        return self.reply(event["Records"])

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for event in self.events for record in event["Records"]]


def failing(*bodies: str) -> Callable[[list[dict[str, Any]]], Any]:
    """A reply that reports the records with these bodies as failed."""

    def reply(records: list[dict[str, Any]]) -> Any:
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if r["body"] in bodies]}

    return reply


def raising(records: list[dict[str, Any]]) -> Any:
    raise RuntimeError("the handler crashed")


def poller(stack: AwsStack, handler: RecordingHandler, wait_s: int = 0) -> SqsPoller:
    return SqsPoller(aws.client("sqs"), stack.queue_url, handler, FUNCTION, TIMEOUT_S, wait_s=wait_s)


def send(stack: AwsStack, *bodies: str) -> dict[str, str]:
    """Send each body; returns message id → body."""
    sqs = aws.client("sqs")
    return {sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)["MessageId"]: body for body in bodies}


def release(stack: AwsStack, records: list[dict[str, Any]]) -> None:
    """Make in-flight messages visible again now, instead of waiting out the queue's visibility timeout."""
    for record in records:
        aws.client("sqs").change_message_visibility(
            QueueUrl=stack.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
        )


def queue_arn(stack: AwsStack) -> str:
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["QueueArn"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


def test_batch_is_handed_to_the_handler_as_a_real_shaped_sqs_event(aws_stack: AwsStack) -> None:
    sent = send(aws_stack, "job-a", "job-b", "job-c")
    handler = RecordingHandler()

    assert poller(aws_stack, handler).poll_once() == 3

    assert len(handler.events) == 1
    records = handler.events[0]["Records"]
    assert {r["messageId"]: r["body"] for r in records} == sent
    for record in records:
        assert record["receiptHandle"]
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == queue_arn(aws_stack)
        assert record["awsRegion"] == "us-east-1"
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert int(record["attributes"]["SentTimestamp"]) > 0
        assert isinstance(record["messageAttributes"], dict)
        assert record["md5OfBody"]


def test_messages_listed_in_batch_item_failures_stay_queued_and_the_rest_are_deleted(aws_stack: AwsStack) -> None:
    send(aws_stack, "job-a", "job-b", "job-c")
    handler = RecordingHandler(reply=failing("job-b"))

    assert poller(aws_stack, handler).poll_once() == 3

    assert aws_stack.queued_messages() == 1
    release(aws_stack, [r for r in handler.records if r["body"] == "job-b"])
    again = RecordingHandler()
    assert poller(aws_stack, again).poll_once() == 1
    assert [r["body"] for r in again.records] == ["job-b"]
    assert again.records[0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert aws_stack.queued_messages() == 0


def test_handler_reporting_no_failures_acknowledges_the_whole_batch(aws_stack: AwsStack) -> None:
    send(aws_stack, "job-a", "job-b")
    handler = RecordingHandler(reply=lambda records: None)

    assert poller(aws_stack, handler).poll_once() == 2

    assert aws_stack.queued_messages() == 0


def test_handler_that_raises_leaves_every_message_queued_for_redelivery(aws_stack: AwsStack) -> None:
    sent = send(aws_stack, "job-a", "job-b", "job-c")
    handler = RecordingHandler(reply=raising)

    assert poller(aws_stack, handler).poll_once() == 3

    assert aws_stack.queued_messages() == 3
    release(aws_stack, handler.records)
    again = RecordingHandler()
    assert poller(aws_stack, again).poll_once() == 3
    assert {r["messageId"] for r in again.records} == set(sent)
    assert {r["attributes"]["ApproximateReceiveCount"] for r in again.records} == {"2"}


def test_empty_queue_does_not_call_the_handler(aws_stack: AwsStack) -> None:
    handler = RecordingHandler()

    assert poller(aws_stack, handler).poll_once() == 0

    assert handler.events == []


def test_handler_gets_a_context_with_the_function_name_and_its_timeout_left(aws_stack: AwsStack) -> None:
    send(aws_stack, "job-a")
    handler = RecordingHandler()

    poller(aws_stack, handler).poll_once()

    context = handler.contexts[0]
    assert context.function_name == FUNCTION
    assert context.aws_request_id
    assert (TIMEOUT_S - 5) * 1000 < handler.remaining_ms[0] <= TIMEOUT_S * 1000


def test_lambda_context_counts_down_from_the_timeout() -> None:
    context = LambdaContext(FUNCTION, 2)
    first = context.get_remaining_time_in_millis()
    assert 1000 < first <= 2000

    deadline = time.monotonic() + 1.0
    later = first
    while later == first and time.monotonic() < deadline:
        later = context.get_remaining_time_in_millis()

    assert later < first


@pytest.mark.parametrize("timeout_s", [0, 1])
def test_lambda_context_never_reports_more_than_its_timeout_nor_less_than_zero(timeout_s: int) -> None:
    remaining = LambdaContext(FUNCTION, timeout_s).get_remaining_time_in_millis()

    assert 0 <= remaining <= timeout_s * 1000


def test_run_feeds_the_handler_until_stopped(aws_stack: AwsStack) -> None:
    handler = RecordingHandler()
    running = poller(aws_stack, handler, wait_s=1)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        send(aws_stack, "job-a")
        assert handler.called.wait(timeout=10)
    finally:
        running.stop()
        thread.join(timeout=5)

    assert not thread.is_alive()
    assert [r["body"] for r in handler.records] == ["job-a"]
    assert aws_stack.queued_messages() == 0
