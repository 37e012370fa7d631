"""SQS adapter for the jobs queue: send a job id, defer an in-flight message.

The message body is the job id and nothing else: the job item is the source of
truth, so a stale or duplicated message can never carry stale state.
``ASYNCGATE_JOBS_QUEUE`` may be a queue URL (as CloudFormation's ``Ref`` gives) or a name.
"""

from __future__ import annotations

import threading
from typing import Any

MAX_VISIBILITY_S = 12 * 3600


class SqsJobQueue:
    def __init__(self, client: Any, queue: str) -> None:
        self._client = client
        self._queue = queue
        self._url: str | None = queue if queue.startswith(("https://", "http://")) else None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if self._url is None:
            with self._lock:
                if self._url is None:
                    self._url = self._client.get_queue_url(QueueName=self._queue)["QueueUrl"]
        return self._url

    def send(self, job_id: str) -> None:
        self._client.send_message(QueueUrl=self.url, MessageBody=job_id)

    def defer(self, receipt_handle: str, delay_s: int) -> None:
        self._client.change_message_visibility(
            QueueUrl=self.url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(MAX_VISIBILITY_S, delay_s)),
        )
