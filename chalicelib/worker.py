"""Run jobs from queue deliveries: claim → provider → store the result or the error.

Owns the at-least-once rules: a claim (conditional write with a lease) makes duplicate
deliveries harmless; a message is acknowledged only when its job is finished or gone;
a job held by a live lease elsewhere is re-checked when that lease ends. Retryable
provider failures get short in-process backoff, then the message goes back to the
queue with a growing delay; after the last attempt the job fails with the last error.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from chalicelib.clock import Clock, now_ms
from chalicelib.config import Settings
from chalicelib.errors import GatewayError, InternalError
from chalicelib.jobs import Job, JobStatus
from chalicelib.payloads import Payloads
from chalicelib.ports import Busy, Claimed, JobQueue, JobStore, Outcome
from chalicelib.providers.transport import time_limit
from chalicelib.routing import ProviderSource, Router, Served
from chalicelib.service import is_job_id
from chalicelib.validation import GATEWAY_FIELDS, ModelRef

log = logging.getLogger(__name__)

DEADLINE_MARGIN_S = 5.0


@dataclass(frozen=True)
class Delivery:
    message_id: str
    receipt_handle: str
    body: str


class Worker:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        payloads: Payloads,
        providers: ProviderSource,
        settings: Settings,
        clock: Clock,
        new_owner: Callable[[], str] = lambda: uuid.uuid4().hex,
        jitter: Callable[[], float] = random.random,
        time_limit: Callable[[float], AbstractContextManager[None]] = time_limit,
    ) -> None:
        self._store = store
        self._queue = queue
        self._providers = providers
        self._settings = settings
        self._clock = clock
        self._new_owner = new_owner
        self._jitter = jitter
        self._payloads = payloads
        self._router = Router(providers, settings, clock, jitter, time_limit)

    def handle_batch(self, deliveries: Sequence[Delivery], remaining_ms: int | None) -> list[str]:
        """Process deliveries concurrently; return the message ids SQS must deliver again."""
        budget_s = (remaining_ms / 1000) if remaining_ms is not None else self._settings.lease_s
        deadline = self._clock.now() + budget_s - DEADLINE_MARGIN_S
        if len(deliveries) == 1:
            delays = [self._process_safely(deliveries[0], deadline)]
        else:
            with ThreadPoolExecutor(max_workers=min(len(deliveries), self._settings.worker_threads)) as pool:
                delays = list(pool.map(lambda d: self._process_safely(d, deadline), deliveries))
        failed = []
        for delivery, delay in zip(deliveries, delays, strict=True):
            if delay is None:
                continue
            failed.append(delivery.message_id)
            self._defer(delivery, delay)
        return failed

    def process(self, delivery: Delivery, deadline: float) -> int | None:
        """Run one delivery. ``None``: acknowledge it; a number: deliver again after that many seconds."""
        job_id = delivery.body.strip()
        if not is_job_id(job_id):
            log.warning("message %s does not name a job; dropping it", delivery.message_id)
            return None
        owner = self._new_owner()
        now = now_ms(self._clock)
        claim = self._store.claim(job_id, owner, now, now + self._settings.lease_s * 1000)
        if isinstance(claim, Busy):
            return max(1, -(-(claim.lease_until_ms - now) // 1000))
        if not isinstance(claim, Claimed):
            return None
        self._defer(delivery, self._settings.lease_s)
        log.info("job %s claimed attempt=%d", job_id, claim.job.attempts)
        try:
            return self._run(claim.job, owner, deadline)
        except Exception:
            log.exception("job %s attempt %d crashed; handing it back", job_id, claim.job.attempts)
            self._store.release(job_id, owner)
            return self._requeue_delay(claim.job.attempts, None)

    def _process_safely(self, delivery: Delivery, deadline: float) -> int | None:
        try:
            return self.process(delivery, deadline)
        except Exception:
            log.exception("message %s could not be processed", delivery.message_id)
            return self._settings.requeue_base_s

    def _run(self, job: Job, owner: str, deadline: float) -> int | None:
        try:
            loaded = self._payloads.read_request(job)
        except GatewayError as broken:
            inputs = [job.request_ref] if job.request_ref else []
            Finisher(self._store, self._payloads, self._clock, job, owner, inputs).failed(broken, {})
            return None
        done = Finisher(self._store, self._payloads, self._clock, job, owner, loaded.blob_keys)
        if job.cancel_requested:
            done.cancelled()
            return None
        if job.attempts > self._settings.max_attempts:
            done.failed(InternalError("the job ran out of attempts", code="attempts_exhausted"), {})
            return None
        kind = job.request_type.value
        try:
            body, targets = _decode(loaded.body)
        except GatewayError as broken:
            done.failed(broken, {"request_type": kind})
            return None
        files = self._payloads.load_files(loaded.uploads)
        try:
            outcome = self._router.route(job.request_type, body, files, targets, job.route_from, job.attempts, deadline)
        except GatewayError as broken:
            done.failed(broken, {"request_type": kind})
            return None
        if isinstance(outcome, Served):
            served = {"provider": outcome.target.provider, "model_requested": outcome.target.model}
            outcome.result["extra_fields"] = {**served, "request_type": kind, "latency_ms": outcome.latency_ms}
            done.completed(outcome.result)
            return None
        error = outcome.error
        if outcome.retry_from is not None and job.attempts < self._settings.max_attempts:
            if not self._store.release(job.id, owner, outcome.retry_from):
                log.warning("job %s lost its lease before release", job.id)
                return None
            delay = self._requeue_delay(job.attempts, error.retry_after_s)
            log.info("job %s attempt %d failed with %d; retry in %ds", job.id, job.attempts, error.status, delay)
            return delay
        target = outcome.target
        done.failed(error, {"provider": target.provider, "model_requested": target.model, "request_type": kind})
        return None

    def _requeue_delay(self, attempt: int, hint_s: float | None) -> int:
        ceiling = min(self._settings.requeue_max_s, self._settings.requeue_base_s * 2.0 ** max(0, attempt - 1))
        delay = ceiling / 2 + self._jitter() * ceiling / 2
        return max(1, round(max(delay, hint_s or 0.0)))

    def _defer(self, delivery: Delivery, delay_s: int) -> None:
        try:
            self._queue.defer(delivery.receipt_handle, delay_s)
        except Exception:
            log.warning("message %s visibility could not be changed", delivery.message_id, exc_info=True)


def _decode(body: dict[str, Any]) -> tuple[dict[str, Any], list[ModelRef]]:
    """The request for providers and its targets (model, then fallbacks); a broken one is an internal error."""
    try:
        targets = [ModelRef.parse(str(body["model"]))]
        targets += [ModelRef.parse(str(item)) for item in body.get("fallbacks") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InternalError("the stored request could not be read", code="corrupt_job") from None
    return {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}, targets


class Finisher:
    """Ends one claimed job: writes the outcome as lease holder, then drops the job's inputs."""

    def __init__(
        self, store: JobStore, payloads: Payloads, clock: Clock, job: Job, owner: str, input_keys: list[str]
    ) -> None:
        self._store = store
        self._payloads = payloads
        self._clock = clock
        self._job = job
        self._owner = owner
        self._input_keys = input_keys

    def completed(self, result: dict[str, Any]) -> None:
        payload = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        stored = self._payloads.store_result(self._job.id, self._owner, payload)
        written = self._write(Outcome(JobStatus.COMPLETED, 200, *self._times(), stored.inline, stored.ref, stored.size))
        if stored.ref is not None and written != JobStatus.COMPLETED:
            self._payloads.discard([stored.ref])

    def failed(self, error: GatewayError, extra: dict[str, Any]) -> None:
        body = error.to_body(event_id=str(uuid.uuid4()), extra_fields=extra)
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        self._write(Outcome(JobStatus.FAILED, error.status, *self._times(), payload))

    def cancelled(self) -> None:
        self._write(Outcome(JobStatus.CANCELLED, 0, *self._times()))

    def _times(self) -> tuple[int, int]:
        done = now_ms(self._clock)
        return done, done + self._job.result_ttl_s * 1000

    def _write(self, outcome: Outcome) -> JobStatus | None:
        job = self._job
        written = self._store.finish(job.id, self._owner, outcome)
        if written is None:
            log.warning("job %s lost its lease before it could be marked %s", job.id, outcome.status.value)
            return None
        log.info("job %s %s status_code=%d attempts=%d", job.id, written.value, outcome.status_code, job.attempts)
        self._payloads.discard(self._input_keys)
        return written


def deliveries_from_records(records: Sequence[dict[str, Any]]) -> list[Delivery]:
    """SQS event records (as Lambda delivers them) as deliveries."""
    return [Delivery(r["messageId"], r["receiptHandle"], r["body"]) for r in records]
