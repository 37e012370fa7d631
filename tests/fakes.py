"""In-memory twins of the ports (job store, job queue, blob store), a fake clock, scripted providers.

The store twin keeps the same conditional semantics as ``DynamoJobStore`` (the store
contract tests run both), so unit tests of the use cases need no AWS at all.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from chalicelib.access import Access
from chalicelib.jobs import Job, JobStatus
from chalicelib.keys import Callers, VirtualKey
from chalicelib.ports import (
    Busy,
    CancelOutcome,
    Claimed,
    ClaimResult,
    Gone,
    IdempotencyConflict,
    IdempotencyRecord,
    JobFilter,
    JobPage,
    Outcome,
)
from chalicelib.providers.base import ProviderCall
from chalicelib.rate_limit import RateLimiter


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
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self._lock = threading.RLock()

    def create(self, job: Job, ttl_epoch_s: int, idempotency: IdempotencyRecord | None = None) -> None:
        with self._lock:
            if job.id in self.items:
                raise KeyError(f"job {job.id} exists")
            if idempotency is not None:
                if idempotency.key_id in self.idempotency:
                    raise IdempotencyConflict(self.idempotency[idempotency.key_id])
                self.idempotency[idempotency.key_id] = idempotency
            self.items[job.id] = job
            self.ttls[job.id] = ttl_epoch_s

    def get(self, job_id: str) -> Job | None:
        return self.items.get(job_id)

    def get_idempotency(self, key_id: str) -> IdempotencyRecord | None:
        return self.idempotency.get(key_id)

    def delete_pending(self, job_id: str, idempotency_key_id: str | None = None) -> None:
        with self._lock:
            job = self.items.get(job_id)
            if job is not None and job.status == JobStatus.PENDING:
                del self.items[job_id]
                del self.ttls[job_id]
                if idempotency_key_id is not None:
                    self.idempotency.pop(idempotency_key_id, None)

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
        with self._lock:
            job = self._held(job_id, owner)
            if job is None:
                return False
            self.items[job_id] = replace(
                job, status=JobStatus.PENDING, lease_owner=None, lease_until_ms=None, route_from=route_from
            )
            return True

    def finish(self, job_id: str, owner: str, outcome: Outcome) -> JobStatus | None:
        with self._lock:
            job = self._held(job_id, owner)
            if job is None:
                return None
            if job.cancel_requested:
                outcome = Outcome(JobStatus.CANCELLED, 0, outcome.completed_at_ms, outcome.expires_at_ms)
            self.items[job_id] = _terminal(job, outcome)
            self.ttls[job_id] = -(-outcome.expires_at_ms // 1000)
            return outcome.status

    def cancel(self, job_id: str, now_ms: int) -> CancelOutcome | None:
        with self._lock:
            job = self.items.get(job_id)
            if job is None:
                return None
            if job.status == JobStatus.PENDING:
                done = Outcome(JobStatus.CANCELLED, 0, now_ms, now_ms + job.result_ttl_s * 1000)
                self.items[job_id] = _terminal(job, done)
                return CancelOutcome(self.items[job_id], cancelled=True)
            if job.status == JobStatus.PROCESSING:
                self.items[job_id] = replace(job, cancel_requested=True)
                return CancelOutcome(self.items[job_id], requested=True)
            return CancelOutcome(job)

    def abandon(self, job_id: str, now_ms: int, error_json: str) -> ClaimResult:
        with self._lock:
            job = self.items.get(job_id)
            if job is None or job.status.is_terminal:
                return Gone()
            if job.status == JobStatus.PROCESSING and (job.lease_until_ms or 0) >= now_ms:
                return Busy(job.lease_until_ms or now_ms)
            failed = Outcome(JobStatus.FAILED, 500, now_ms, now_ms + job.result_ttl_s * 1000, error_json)
            self.items[job_id] = _terminal(job, failed)
            return Claimed(self.items[job_id])

    def list_jobs(self, where: JobFilter, limit: int, cursor: str | None, now_ms: int) -> JobPage:
        jobs = sorted(self.items.values(), key=lambda j: (j.created_at_ms, j.id), reverse=True)
        jobs = [
            job
            for job in jobs
            if job.caller == where.caller
            and not job.is_expired(now_ms)
            and (where.status is None or job.status == where.status)
            and (where.request_type is None or job.request_type == where.request_type)
        ]
        ids = [job.id for job in jobs]
        if cursor is not None:
            jobs = jobs[ids.index(cursor) + 1 :] if cursor in ids else []
        page = jobs[:limit]
        return JobPage(page, page[-1].id if len(jobs) > limit else None)

    def _held(self, job_id: str, owner: str) -> Job | None:
        job = self.items.get(job_id)
        if job is None or job.status != JobStatus.PROCESSING or job.lease_owner != owner:
            return None
        return job


def _terminal(job: Job, outcome: Outcome) -> Job:
    completed = outcome.status == JobStatus.COMPLETED
    return replace(
        job,
        status=outcome.status,
        status_code=None if outcome.status == JobStatus.CANCELLED else outcome.status_code,
        completed_at_ms=outcome.completed_at_ms,
        expires_at_ms=outcome.expires_at_ms,
        result_json=outcome.payload_json if completed else None,
        result_ref=outcome.payload_ref if completed else None,
        result_size=outcome.payload_size if completed and outcome.payload_ref else None,
        error_json=outcome.payload_json if outcome.status == JobStatus.FAILED else None,
        lease_owner=None,
        lease_until_ms=None,
        request_json=None,
        request_ref=None,
        cancel_requested=False,
        route_from=0,
    )


class InMemoryBlobStore:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.fail: bool = False

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.fail:
            raise ConnectionError("blob store unavailable")
        self.objects[key] = (data, content_type)

    def get(self, key: str) -> bytes:
        if self.fail:
            raise ConnectionError("blob store unavailable")
        return self.objects[key][0]

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        return [key for key in self.objects if key.startswith(prefix)]

    def url(self, key: str, expires_in_s: int) -> str:
        return f"https://blobs.example.invalid/{key}?expires={expires_in_s}"


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


class InMemoryKeyStore:
    """The keys table's twin: keys by hash, and per-minute request counters."""

    def __init__(self) -> None:
        self.keys: dict[str, VirtualKey] = {}
        self.hits: dict[tuple[str, int], int] = {}

    def add(self, key: VirtualKey, hashed: str) -> bool:
        if hashed in self.keys:
            return False
        self.keys[hashed] = key
        return True

    def find(self, key_hash: str) -> VirtualKey | None:
        return self.keys.get(key_hash)

    def get(self, key_id: str) -> tuple[VirtualKey, str] | None:
        return next(((key, hashed) for hashed, key in self.keys.items() if key.id == key_id), None)

    def all(self) -> list[VirtualKey]:
        return sorted(self.keys.values(), key=lambda k: k.created_at_ms)

    def disable(self, key_hash: str, now_ms: int) -> VirtualKey:
        key = self.keys[key_hash]
        self.keys[key_hash] = replace(key, disabled_at_ms=key.disabled_at_ms or now_ms)
        return self.keys[key_hash]

    def count_request(self, key_id: str, window_s: int, limit: int) -> bool:
        count = self.hits.get((key_id, window_s), 0)
        if count >= limit:
            return False
        self.hits[(key_id, window_s)] = count + 1
        return True


def open_access(clock: Any, keys: InMemoryKeyStore | None = None, require_key: bool = False) -> Access:
    """Access over an in-memory key store (no keys: every caller is anonymous)."""
    store = keys or InMemoryKeyStore()
    return Access(Callers(store, require_key), RateLimiter(store, clock))
