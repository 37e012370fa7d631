"""In-memory twins of the ports (job store, job queue), a fake clock and a scripted provider.

The store twin keeps the same conditional semantics as ``DynamoJobStore`` (the store
contract tests run both), so unit tests of the use cases need no AWS at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chalicelib.jobs import Job, JobStatus
from chalicelib.ports import Busy, Claimed, ClaimResult, Gone, Outcome
from chalicelib.providers.base import ProviderCall


class FakeClock:
    """Starts at a fixed instant; ``sleep`` advances time instead of waiting."""

    def __init__(self, start: float = 1_795_600_000.0) -> None:
        self.current = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.current

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.current += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.current += seconds


class InMemoryJobStore:
    def __init__(self) -> None:
        self.items: dict[str, Job] = {}
        self.ttls: dict[str, int] = {}
        self._lock = threading.Lock()

    def create(self, job: Job, ttl_epoch_s: int) -> None:
        with self._lock:
            if job.id in self.items:
                raise KeyError(f"job {job.id} exists")
            self.items[job.id] = job
            self.ttls[job.id] = ttl_epoch_s

    def get(self, job_id: str) -> Job | None:
        return self.items.get(job_id)

    def delete_pending(self, job_id: str) -> None:
        with self._lock:
            job = self.items.get(job_id)
            if job is not None and job.status == JobStatus.PENDING:
                del self.items[job_id]
                del self.ttls[job_id]

    def claim(self, job_id: str, owner: str, now_ms: int, lease_until_ms: int) -> ClaimResult:
        with self._lock:
            job = self.items.get(job_id)
            if job is None:
                return Gone()
            lease_over = job.lease_until_ms is not None and job.lease_until_ms < now_ms
            if job.status == JobStatus.PENDING or (job.status == JobStatus.PROCESSING and lease_over):
                claimed = replace(
                    job,
                    status=JobStatus.PROCESSING,
                    lease_owner=owner,
                    lease_until_ms=lease_until_ms,
                    attempts=job.attempts + 1,
                )
                self.items[job_id] = claimed
                return Claimed(claimed)
            if job.status == JobStatus.PROCESSING and job.lease_until_ms is not None:
                return Busy(job.lease_until_ms)
            return Gone()

    def release(self, job_id: str, owner: str, route_from: int = 0) -> bool:
        return self._as_holder(
            job_id,
            owner,
            lambda job: replace(
                job, status=JobStatus.PENDING, lease_owner=None, lease_until_ms=None, route_from=route_from
            ),
        )

    def finish(self, job_id: str, owner: str, outcome: Outcome) -> bool:
        completed = outcome.status == JobStatus.COMPLETED

        def apply(job: Job) -> Job:
            self.ttls[job_id] = -(-outcome.expires_at_ms // 1000)
            return replace(
                job,
                status=outcome.status,
                status_code=outcome.status_code,
                completed_at_ms=outcome.completed_at_ms,
                expires_at_ms=outcome.expires_at_ms,
                result_json=outcome.payload_json if completed else job.result_json,
                error_json=None if completed else outcome.payload_json,
                lease_owner=None,
                lease_until_ms=None,
                request_json=None,
            )

        return self._as_holder(job_id, owner, apply)

    def _as_holder(self, job_id: str, owner: str, change: Callable[[Job], Job]) -> bool:
        with self._lock:
            job = self.items.get(job_id)
            if job is None or job.status != JobStatus.PROCESSING or job.lease_owner != owner:
                return False
            self.items[job_id] = change(job)
            return True


class InMemoryJobQueue:
    def __init__(self, fail_sends: bool = False) -> None:
        self.sent: list[str] = []
        self.deferred: list[tuple[str, int]] = []
        self.fail_sends = fail_sends

    def send(self, job_id: str) -> None:
        if self.fail_sends:
            raise ConnectionError("queue unavailable")
        self.sent.append(job_id)

    def defer(self, receipt_handle: str, delay_s: int) -> None:
        self.deferred.append((receipt_handle, delay_s))


class ScriptedProvider:
    """Answers from a script: each entry is a result dict or an exception to raise."""

    def __init__(self, *script: dict[str, Any] | Exception) -> None:
        self.script = list(script)
        self.calls: list[ProviderCall] = []
        self._lock = threading.Lock()

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        with self._lock:
            self.calls.append(call)
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return dict(step)


class StaticProviders:
    """A provider source with fixed adapters and keys, for worker unit tests.

    ``keys`` maps a provider to the keys a call should try in order (none: call without a key);
    ``demoted`` records each key the worker pushed back.
    """

    def __init__(self, keys: dict[str, tuple[str, ...]] | None = None, **providers: Any) -> None:
        self._providers = providers
        self._keys = keys or {}
        self.demoted: list[tuple[str, str]] = []

    def get(self, provider: str) -> Any:
        return self._providers[provider]

    def keys_for(self, provider: str) -> tuple[str | None, ...]:
        return self._keys.get(provider) or (None,)

    def demote_key(self, provider: str, key: str) -> None:
        self.demoted.append((provider, key))


class AllProviders:
    """A catalog that knows every provider name in ``known`` and supports every type."""

    def __init__(self, *known: str) -> None:
        self._known = set(known)

    def is_known(self, provider: str) -> bool:
        return provider in self._known

    def supports(self, provider: str, request_type: Any) -> bool:
        return provider in self._known
