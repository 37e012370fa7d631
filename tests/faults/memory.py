"""In-memory rig for fault tests: the real ``JobService`` and ``Worker`` over the thread-safe twins.

Each ``worker()`` is a separate worker (another Lambda container) sharing the store, queue and
blobs; the clock is fake, so leases run out by ``clock.advance`` and backoff never sleeps.
``view`` is a poll as a client sees it: the HTTP status the route gives and the body.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.jobs import ANONYMOUS, Job
from chalicelib.payloads import Payloads
from chalicelib.ports import ClaimResult
from chalicelib.providers.base import ProviderCall
from chalicelib.service import JobService
from chalicelib.submission import Submission
from chalicelib.worker import Delivery, Worker
from tests.fakes import (
    AllProviders,
    FakeClock,
    InMemoryBlobStore,
    InMemoryJobQueue,
    InMemoryJobStore,
    StaticProviders,
    open_access,
)
from tests.faults.hooks import WorkerKilled

CHAT = RequestType.CHAT_COMPLETION
SETTINGS = Settings(max_attempts=3, inline_retries=1)


def chat_result(tag: str, padding: int = 0) -> dict[str, Any]:
    message = {"role": "assistant", "content": tag}
    result = {"id": f"chatcmpl-{tag}", "object": "chat.completion", "model": "model-1", "usage": {}}
    return {**result, "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "pad": "x" * padding}


class CountingProvider:
    """Answers ``chat_result("call-<n>")`` for its n-th call; ``before`` runs inside each call first."""

    def __init__(self, padding: int = 0) -> None:
        self.calls: list[ProviderCall] = []
        self.before: list[Any] = []
        self._padding = padding
        self._lock = threading.Lock()

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        with self._lock:
            self.calls.append(call)
            number = len(self.calls)
            action = self.before.pop(0) if self.before else None
        if action is not None:
            action()
        return chat_result(f"call-{number}", self._padding)


def die() -> None:
    raise WorkerKilled("the worker's process died mid-call")


class RacingStore(InMemoryJobStore):
    """The store twin, holding each claim at a barrier until ``parties`` claims are in flight together."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def claim(self, job_id: str, owner: str, now_ms: int, lease_until_ms: int) -> ClaimResult:
        self.barrier.wait()
        return super().claim(job_id, owner, now_ms, lease_until_ms)


@dataclass
class Rig:
    provider: CountingProvider
    settings: Settings = SETTINGS
    store: InMemoryJobStore = field(default_factory=InMemoryJobStore)
    clock: FakeClock = field(default_factory=FakeClock)
    queue: InMemoryJobQueue = field(default_factory=InMemoryJobQueue)
    blobs: InMemoryBlobStore = field(default_factory=InMemoryBlobStore)

    @property
    def service(self) -> JobService:
        payloads = Payloads(self.blobs, self.settings)
        return JobService(
            self.store, self.queue, payloads, open_access(self.clock), AllProviders("acme"), self.settings, self.clock
        )

    def worker(self) -> Worker:
        providers = StaticProviders(acme=self.provider)
        payloads = Payloads(self.blobs, self.settings)
        return Worker(self.store, self.queue, payloads, providers, self.settings, self.clock, jitter=lambda: 0.5)

    def submit(self) -> str:
        body = {"model": "acme/model-1", "messages": [{"role": "user", "content": "hello"}]}
        job = self.service.submit(Submission(CHAT, json.dumps(body).encode(), "application/json"))
        assert self.queue.sent[-1] == job.id
        return job.id

    def job(self, job_id: str) -> Job:
        return self.store.items[job_id]

    def view(self, job_id: str) -> tuple[int, dict[str, Any]]:
        polled = self.service.poll(CHAT, job_id, ANONYMOUS)
        return (200 if polled.job.status.is_terminal else 202), json.loads(polled.body)

    def deliver(self, delivery: Delivery, worker: Worker | None = None) -> int | None:
        """One SQS delivery to a worker: ``None`` when acknowledged, else the delay SQS was told to wait."""
        failed = (worker or self.worker()).handle_batch([delivery], None)
        if not failed:
            return None
        assert failed == [delivery.message_id]
        return [delay for receipt, delay in self.queue.deferred if receipt == delivery.receipt_handle][-1]

    def lease_ms(self) -> int:
        return self.settings.lease_s * 1000

    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)


def message(job_id: str, number: int = 1) -> Delivery:
    """The ``number``-th distinct SQS message naming ``job_id``."""
    return Delivery(f"msg-{number}", f"receipt-{number}", job_id)
