"""The worker against in-memory ports and a fake clock: claims, retries, requeues and terminal writes."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.jobs import Job, JobStatus
from chalicelib.payloads import Payloads
from chalicelib.ports import Claimed
from chalicelib.providers.base import ProviderCall
from chalicelib.providers.mock import MockProvider
from chalicelib.worker import DEADLINE_MARGIN_S, Delivery, Worker, deliveries_from_records
from tests.fakes import (
    FakeClock,
    InMemoryBlobStore,
    InMemoryJobQueue,
    InMemoryJobStore,
    ScriptedProvider,
    StaticProviders,
)

CHAT = RequestType.CHAT_COMPLETION
MESSAGES = [{"role": "user", "content": "hello"}]
RESULT: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "usage": {}}


@dataclass
class Rig:
    clock: FakeClock
    store: InMemoryJobStore
    queue: InMemoryJobQueue
    settings: Settings
    worker: Worker
    blobs: InMemoryBlobStore

    def job(self, job_id: str) -> Job:
        return self.store.items[job_id]

    def deliver(self, job_id: str, remaining_ms: int | None = None) -> int | None:
        """One SQS delivery; None when acknowledged, else the visibility delay the message got."""
        delivery = Delivery(f"msg-{job_id}", f"rcpt-{job_id}", job_id)
        failed = self.worker.handle_batch([delivery], remaining_ms)
        if not failed:
            return None
        receipt, delay = self.queue.deferred[-1]
        assert (failed, receipt) == ([delivery.message_id], delivery.receipt_handle)
        return delay

    def redeliver_until_acknowledged(self, job_id: str, limit: int = 20) -> list[int]:
        """Deliver, wait out each requeue delay on the clock, until acknowledged; returns the delays."""
        delays: list[int] = []
        for _ in range(limit):
            delay = self.deliver(job_id)
            if delay is None:
                return delays
            delays.append(delay)
            self.clock.advance(delay)
        raise AssertionError("the message was never acknowledged")

    def lease_elsewhere(self, job_id: str, owner: str, lease_ms: int) -> Job:
        now_ms = int(self.clock.now() * 1000)
        claim = self.store.claim(job_id, owner, now_ms, now_ms + lease_ms)
        assert isinstance(claim, Claimed)
        return claim.job


def make_rig(provider: Any = None, settings: Settings | None = None, jitter: float = 1.0) -> Rig:
    """A worker over fresh fakes; ``provider`` serves ``acme/*``, the real mock provider serves ``mock/*``."""
    clock, store, queue = FakeClock(), InMemoryJobStore(), InMemoryJobQueue()
    settings = settings or Settings()
    providers = StaticProviders(acme=provider, mock=MockProvider(clock))
    blobs = InMemoryBlobStore()
    worker = Worker(store, queue, Payloads(blobs, settings), providers, settings, clock, jitter=lambda: jitter)
    return Rig(clock, store, queue, settings, worker, blobs)


def add_job(rig: Rig, model: str = "acme/model-1", ttl_s: int = 600, **extra: Any) -> str:
    job_id = str(uuid.uuid4())
    body = {"model": model, "messages": MESSAGES, **extra}
    job = Job(job_id, CHAT, JobStatus.PENDING, int(rig.clock.now() * 1000), ttl_s, json.dumps(body))
    rig.store.create(job, ttl_epoch_s=int(rig.clock.now()) + 86400)
    return job_id


def error_body(job: Job) -> dict[str, Any]:
    return dict(json.loads(job.error_json or "null"))


def overloaded(status: int = 503, code: str | None = None, retry_after_s: float | None = None) -> ProviderError:
    return ProviderError("overloaded", status=status, code=code, retry_after_s=retry_after_s)


def test_success_stores_the_result_with_extra_fields_and_expiry() -> None:
    rig = make_rig()
    job_id = add_job(rig, "mock/sleep-250ms", ttl_s=120)
    started_ms = int(rig.clock.now() * 1000)

    assert rig.deliver(job_id) is None

    job = rig.job(job_id)
    assert (job.status, job.status_code, job.attempts) == (JobStatus.COMPLETED, 200, 1)
    assert job.completed_at_ms == started_ms + 250
    assert job.expires_at_ms == job.completed_at_ms + 120_000
    assert (job.error_json, job.request_json, job.lease_owner) == (None, None, None)
    result = json.loads(job.result_json or "")
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["content"] == "hello"
    extra = {"provider": "mock", "model_requested": "sleep-250ms", "request_type": "chat_completion"}
    assert result["extra_fields"] == {**extra, "latency_ms": 250}


def test_provider_gets_the_bare_model_the_attempt_and_no_gateway_fields() -> None:
    provider = ScriptedProvider(RESULT)
    rig = make_rig(provider)
    job_id = add_job(rig, "acme/org/model-1", fallbacks=["mock/echo"], temperature=0.2)

    rig.deliver(job_id)

    (call,) = provider.calls
    assert (call.request_type, call.model, call.attempt) == (CHAT, "org/model-1", 1)
    assert "fallbacks" not in call.body
    assert call.body["temperature"] == 0.2


def test_duplicate_delivery_of_a_finished_job_is_acknowledged_without_calling_the_provider() -> None:
    provider = ScriptedProvider(RESULT)
    rig = make_rig(provider)
    job_id = add_job(rig)
    rig.deliver(job_id)
    finished = rig.job(job_id)

    assert rig.deliver(job_id) is None

    assert len(provider.calls) == 1
    assert rig.job(job_id) == finished


def test_delivery_while_another_worker_holds_a_live_lease_is_deferred_until_it_ends() -> None:
    provider = ScriptedProvider(RESULT)
    rig = make_rig(provider)
    job_id = add_job(rig)
    held = rig.lease_elsewhere(job_id, "other-worker", rig.settings.lease_s * 1000)

    assert rig.deliver(job_id) == rig.settings.lease_s
    rig.clock.advance(100.4)
    assert rig.deliver(job_id) == rig.settings.lease_s - 100

    assert provider.calls == []
    assert rig.job(job_id) == held


def test_crashed_workers_job_is_taken_over_after_its_lease_expires() -> None:
    provider = ScriptedProvider(RESULT)
    rig = make_rig(provider)
    job_id = add_job(rig)
    rig.lease_elsewhere(job_id, "crashed-worker", rig.settings.lease_s * 1000)
    rig.clock.advance(rig.settings.lease_s + 1)

    assert rig.deliver(job_id) is None

    job = rig.job(job_id)
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    assert [call.attempt for call in provider.calls] == [2]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_non_retryable_provider_error_fails_the_job_at_once(status: int) -> None:
    provider = ScriptedProvider(
        ProviderError("bad input", status=status, error_type="invalid_request_error", code="invalid_value", param="x")
    )
    rig = make_rig(provider)
    job_id = add_job(rig)

    assert rig.deliver(job_id) is None

    job = rig.job(job_id)
    assert (job.status, job.status_code, job.result_json) == (JobStatus.FAILED, status, None)
    body = error_body(job)
    assert (body["is_bifrost_error"], body["status_code"]) == (False, status)
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_value", "x")
    assert error["message"]
    assert body["event_id"] == error["event_id"]
    assert body["extra_fields"] == {"provider": "acme", "model_requested": "model-1", "request_type": "chat_completion"}
    assert len(provider.calls) == 1
    assert rig.clock.sleeps == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_error_is_retried_inline_with_growing_backoff_then_requeued(status: int) -> None:
    provider = ScriptedProvider(overloaded(status))
    rig = make_rig(provider)
    job_id = add_job(rig)

    delay = rig.deliver(job_id)

    assert len(provider.calls) == rig.settings.inline_retries + 1
    sleeps = rig.clock.sleeps
    assert len(sleeps) == rig.settings.inline_retries
    assert sleeps == sorted(sleeps)
    assert sleeps[0] < sleeps[-1] <= rig.settings.retry_max_s
    job = rig.job(job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.PENDING, 1, None)
    assert (delay or 0) >= 1


def test_retry_after_hint_is_honoured_inline_and_on_requeue() -> None:
    rig = make_rig(ScriptedProvider(overloaded(429, retry_after_s=7.0)))

    delay = rig.deliver(add_job(rig))

    assert len(rig.clock.sleeps) == rig.settings.inline_retries
    assert min(rig.clock.sleeps) >= 7.0
    assert (delay or 0) >= 7


def test_requeue_delays_grow_and_the_last_attempt_fails_with_the_last_error() -> None:
    settings = Settings()
    calls = settings.max_attempts * (settings.inline_retries + 1)
    provider = ScriptedProvider(*[overloaded(503, code=f"overloaded_{n}") for n in range(1, calls + 1)])
    rig = make_rig(provider, settings)
    job_id = add_job(rig)

    delays = rig.redeliver_until_acknowledged(job_id)

    assert len(delays) == settings.max_attempts - 1
    assert delays == sorted(delays)
    assert delays[0] < delays[-1] <= settings.requeue_max_s
    assert len(provider.calls) == calls
    job = rig.job(job_id)
    assert (job.status, job.status_code, job.attempts) == (JobStatus.FAILED, 503, settings.max_attempts)
    body = error_body(job)
    assert body["is_bifrost_error"] is False
    assert body["error"]["code"] == f"overloaded_{calls}"


@pytest.mark.parametrize("model", ["mock/fail-503", "mock/fail-429", "mock/fail-500"])
@pytest.mark.parametrize("jitter", [0.0, 1.0])
def test_always_failing_job_ends_within_about_two_minutes(model: str, jitter: float) -> None:
    rig = make_rig(settings=Settings(), jitter=jitter)
    job_id = add_job(rig, model)
    start = rig.clock.now()

    delays = rig.redeliver_until_acknowledged(job_id)

    total = sum(rig.clock.sleeps) + sum(delays)
    assert total == pytest.approx(rig.clock.now() - start)
    assert 0 < total <= 120
    assert rig.job(job_id).status == JobStatus.FAILED


TIGHT = Settings(inline_retries=3, retry_base_s=1.0, retry_max_s=8.0, provider_read_timeout_s=10.0, lease_s=60)


@pytest.mark.parametrize(
    ("settings", "spare_s", "sleeps"),
    [(TIGHT, 1.0 + 2.0 + 1.0, [1.0, 2.0]), (TIGHT, 0.5, []), (Settings(), 0.4, [])],
)
def test_inline_retries_stop_when_another_call_would_pass_the_deadline(
    settings: Settings, spare_s: float, sleeps: list[float]
) -> None:
    provider = ScriptedProvider(overloaded(503))
    rig = make_rig(provider, settings)
    job_id = add_job(rig)
    remaining_s = DEADLINE_MARGIN_S + settings.min_call_s + spare_s

    delay = rig.deliver(job_id, remaining_ms=int(remaining_s * 1000))

    assert rig.clock.sleeps == sleeps
    assert len(provider.calls) == len(sleeps) + 1
    assert delay is not None
    assert rig.job(job_id).status == JobStatus.PENDING


def test_no_call_starts_when_the_attempt_has_too_little_time_left() -> None:
    provider = ScriptedProvider(RESULT)
    rig = make_rig(provider)
    job_id = add_job(rig)

    delay = rig.deliver(job_id, remaining_ms=int((DEADLINE_MARGIN_S + rig.settings.min_call_s - 1) * 1000))

    assert provider.calls == []
    assert delay is not None
    assert rig.job(job_id).status == JobStatus.PENDING
    assert rig.job(job_id).attempts == 1


MISSING_JOB = str(uuid.UUID(int=7))


@pytest.mark.parametrize("body", ["", "hello", "not-a-uuid", '{"id": "x"}', MISSING_JOB.upper(), MISSING_JOB])
def test_message_that_names_no_existing_job_is_acknowledged_and_dropped(body: str) -> None:
    provider = ScriptedProvider(RESULT)
    rig = make_rig(provider)

    assert rig.worker.handle_batch([Delivery("m1", "r1", body)], None) == []

    assert provider.calls == []
    assert rig.queue.deferred == []


def test_unexpected_adapter_exception_releases_the_job_and_requeues() -> None:
    provider = ScriptedProvider(RuntimeError("adapter bug"), RESULT)
    rig = make_rig(provider)
    job_id = add_job(rig)

    delay = rig.deliver(job_id)

    assert (delay or 0) >= 1
    job = rig.job(job_id)
    assert (job.status, job.lease_owner, job.attempts) == (JobStatus.PENDING, None, 1)
    assert rig.deliver(job_id) is None
    assert rig.job(job_id).status == JobStatus.COMPLETED


def test_adapter_that_always_crashes_ends_failed_instead_of_looping() -> None:
    provider = ScriptedProvider(RuntimeError("adapter bug"))
    rig = make_rig(provider)
    job_id = add_job(rig)

    rig.redeliver_until_acknowledged(job_id)

    job = rig.job(job_id)
    assert (job.status, job.status_code) == (JobStatus.FAILED, 500)
    assert len(provider.calls) == rig.settings.max_attempts
    assert error_body(job)["error"]["code"] == "attempts_exhausted"


def test_job_whose_stored_request_is_unreadable_fails_as_corrupt() -> None:
    provider = ScriptedProvider(RESULT)
    rig = make_rig(provider)
    job_id = str(uuid.uuid4())
    rig.store.create(Job(job_id, CHAT, JobStatus.PENDING, 0, 60, "{not json"), ttl_epoch_s=86400)

    assert rig.deliver(job_id) is None

    job = rig.job(job_id)
    assert (job.status, job.status_code) == (JobStatus.FAILED, 500)
    assert error_body(job)["error"]["code"] == "corrupt_job"
    assert provider.calls == []


def test_result_larger_than_the_inline_limit_is_kept_as_a_blob_the_job_points_to() -> None:
    rig = make_rig(ScriptedProvider({**RESULT, "padding": "x" * 2_000}), Settings(inline_limit_bytes=1_000))
    job_id = add_job(rig)

    assert rig.deliver(job_id) is None

    job = rig.job(job_id)
    assert (job.status, job.status_code, job.result_json) == (JobStatus.COMPLETED, 200, None)
    assert job.result_ref is not None and job.result_ref.startswith(f"results/{job_id}/")
    stored = json.loads(rig.blobs.objects[job.result_ref][0])
    assert stored["padding"] == "x" * 2_000
    assert stored["extra_fields"]["provider"] == "acme"
    assert job.result_size == len(rig.blobs.objects[job.result_ref][0])


def test_worker_that_lost_its_lease_does_not_overwrite_the_new_holder() -> None:
    class SlowProvider:
        """Outlives the lease; meanwhile another worker takes the job over."""

        def invoke(self, call: ProviderCall) -> dict[str, Any]:
            rig.clock.advance(rig.settings.lease_s + 1)
            rig.lease_elsewhere(job_id, "successor", 330_000)
            return dict(RESULT)

    rig = make_rig(SlowProvider())
    job_id = add_job(rig)

    assert rig.deliver(job_id) is None

    job = rig.job(job_id)
    assert (job.status, job.lease_owner, job.attempts) == (JobStatus.PROCESSING, "successor", 2)


class BarrierProvider:
    """Each call waits until all expected calls are in flight, so it passes only if they run concurrently."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        self.barrier.wait()
        if call.model == "busy":
            raise overloaded(503)
        if call.model == "bad":
            raise ProviderError("bad", status=400)
        return dict(RESULT)


def test_batch_runs_deliveries_concurrently_and_returns_exactly_the_ids_to_retry() -> None:
    rig = make_rig(BarrierProvider(parties=3), Settings(inline_retries=0))
    ok, busy, bad, leased = (add_job(rig, f"acme/{m}") for m in ("ok", "busy", "bad", "ok"))
    rig.lease_elsewhere(leased, "other-worker", 60_000)
    bodies = {"ok": ok, "busy": busy, "junk": "junk", "bad": bad, "gone": str(uuid.uuid4()), "leased": leased}
    records = [{"messageId": f"m-{k}", "receiptHandle": f"r-{k}", "body": v} for k, v in bodies.items()]

    failed = rig.worker.handle_batch(deliveries_from_records(records), 300_000)

    assert failed == ["m-busy", "m-leased"]
    assert [rig.job(j).status for j in (ok, busy, bad)] == [JobStatus.COMPLETED, JobStatus.PENDING, JobStatus.FAILED]
    assert rig.job(leased).lease_owner == "other-worker"
    final = dict(rig.queue.deferred)
    assert final["r-leased"] == 60
    assert final["r-busy"] >= 1


def test_flaky_model_succeeds_on_attempt_n_plus_one_through_requeues() -> None:
    rig = make_rig()
    job_id = add_job(rig, "mock/flaky-2")

    delays = rig.redeliver_until_acknowledged(job_id)

    job = rig.job(job_id)
    assert (len(delays), job.status, job.attempts, job.status_code) == (2, JobStatus.COMPLETED, 3, 200)
    assert json.loads(job.result_json or "")["choices"][0]["message"]["content"] == "hello"
