"""Local stand-in for Lambda's SQS event source mapping.

Long-polls the jobs queue, hands each batch to the same handler Lambda would run as a
real-shaped SQS event (with a Lambda context that counts down the function timeout),
and deletes exactly the messages the handler did not list in ``batchItemFailures``.
If the handler raises, nothing is deleted: SQS redelivers, as it would in AWS. For soak
runs it can also deliver a share of messages twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


class LambdaContext:
    """The part of Lambda's context object the handlers use."""

    def __init__(self, function_name: str, timeout_s: int) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = 1024
        self.aws_request_id = f"local-{time.monotonic_ns()}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class SqsPoller:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        function_name: str,
        timeout_s: int,
        batch_size: int = 10,
        wait_s: int = 1,
        visibility_s: int | None = None,
        duplicate_rate: float = 0.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._function_name = function_name
        self._timeout_s = timeout_s
        self._batch_size = batch_size
        self._wait_s = wait_s
        self._visibility = {"VisibilityTimeout": visibility_s} if visibility_s else {}
        self._duplicate_rate = duplicate_rate
        self._rng = rng
        self._stopping = threading.Event()
        self._arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._region = self._arn.split(":")[3]

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("poller for %s failed; retrying", self._function_name)
                self._stopping.wait(1)

    def stop(self) -> None:
        self._stopping.set()

    def poll_once(self) -> int:
        """Receive one batch and run it; returns how many messages were received."""
        received = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=self._wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            **self._visibility,
        ).get("Messages", [])
        if not received:
            return 0
        self._duplicate_some(received)
        event = {"Records": [self._record(message) for message in received]}
        try:
            reply = self._handler(event, LambdaContext(self._function_name, self._timeout_s))
        except Exception:
            log.exception("%s raised; its %d messages will be redelivered", self._function_name, len(received))
            return len(received)
        failed = {item["itemIdentifier"] for item in (reply or {}).get("batchItemFailures", [])}
        done = [m for m in received if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(received)

    def _duplicate_some(self, received: list[dict[str, Any]]) -> None:
        """Chaos for soak runs: deliver some messages twice, as SQS may."""
        for message in received:
            if self._duplicate_rate and self._rng() < self._duplicate_rate:
                self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=message["Body"])

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._arn,
            "awsRegion": self._region,
        }
