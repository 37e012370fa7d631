"""Fallbacks, key rotation, backoff and the attempt budget, through the worker with fakes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.jobs import Job, JobStatus
from chalicelib.payloads import Payloads
from chalicelib.worker import DEADLINE_MARGIN_S, Delivery, Worker
from tests.fakes import (
    FakeClock,
    InMemoryBlobStore,
    InMemoryJobQueue,
    InMemoryJobStore,
    ScriptedProvider,
    StaticProviders,
)

CHAT = RequestType.CHAT_COMPLETION
RESULT: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "usage": {}}


def failure(status: int, retry_after_s: float | None = None) -> ProviderError:
    return ProviderError(f"upstream {status}", status=status, error_type="upstream_error", retry_after_s=retry_after_s)


@dataclass
class Rig:
    clock: FakeClock
    store: InMemoryJobStore
    queue: InMemoryJobQueue
    providers: StaticProviders
    worker: Worker

    def submit(self, model: str, fallbacks: list[str] | None = None) -> str:
        job_id = str(uuid.uuid4())
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        if fallbacks is not None:
            body["fallbacks"] = fallbacks
        job = Job(job_id, CHAT, JobStatus.PENDING, int(self.clock.now() * 1000), 600, json.dumps(body))
        self.store.create(job, ttl_epoch_s=int(self.clock.now()) + 3600)
        return job_id

    def deliver(self, job_id: str, remaining_s: float | None = None) -> int | None:
        remaining_ms = None if remaining_s is None else int(remaining_s * 1000)
        failed = self.worker.handle_batch([Delivery("m-" + job_id, "r-" + job_id, job_id)], remaining_ms)
        return self.queue.deferred[-1][1] if failed else None

    def job(self, job_id: str) -> Job:
        return self.store.items[job_id]

    def result(self, job_id: str) -> dict[str, Any]:
        payload = self.job(job_id).result_json
        assert payload is not None
        parsed: dict[str, Any] = json.loads(payload)
        return parsed

    def error(self, job_id: str) -> dict[str, Any]:
        payload = self.job(job_id).error_json
        assert payload is not None
        parsed: dict[str, Any] = json.loads(payload)
        return parsed


def rig(settings: Settings | None = None, keys: dict[str, tuple[str, ...]] | None = None, **providers: Any) -> Rig:
    clock, store, queue = FakeClock(), InMemoryJobStore(), InMemoryJobQueue()
    static = StaticProviders(keys=keys, **providers)
    settings = settings or Settings()
    payloads = Payloads(InMemoryBlobStore(), settings)
    worker = Worker(store, queue, payloads, static, settings, clock, jitter=lambda: 1.0)
    return Rig(clock, store, queue, static, worker)


def test_fallback_serves_when_the_primary_keeps_failing_and_extra_fields_name_it() -> None:
    primary, backup = ScriptedProvider(failure(503)), ScriptedProvider(RESULT)
    r = rig(alpha=primary, beta=backup)
    job_id = r.submit("alpha/big", ["beta/small"])

    assert r.deliver(job_id) is None

    extra = r.result(job_id)["extra_fields"]
    assert (extra["provider"], extra["model_requested"]) == ("beta", "small")
    assert len(primary.calls) == Settings().inline_retries + 1
    assert [call.model for call in backup.calls] == ["small"]


def test_fallbacks_are_tried_in_order() -> None:
    first, second, third = ScriptedProvider(failure(500)), ScriptedProvider(failure(429)), ScriptedProvider(RESULT)
    r = rig(Settings(inline_retries=0), a=first, b=second, c=third)
    job_id = r.submit("a/1", ["b/2", "c/3"])

    r.deliver(job_id)

    assert (len(first.calls), len(second.calls), len(third.calls)) == (1, 1, 1)
    assert r.result(job_id)["extra_fields"]["provider"] == "c"


def test_provider_side_errors_fall_back_without_inline_retries() -> None:
    primary, backup = ScriptedProvider(failure(404)), ScriptedProvider(RESULT)
    r = rig(alpha=primary, beta=backup)
    job_id = r.submit("alpha/missing-model", ["beta/ok"])

    r.deliver(job_id)

    assert len(primary.calls) == 1
    assert r.job(job_id).status == JobStatus.COMPLETED


def test_an_invalid_request_does_not_fall_back() -> None:
    primary, backup = ScriptedProvider(failure(400)), ScriptedProvider(RESULT)
    r = rig(alpha=primary, beta=backup)
    job_id = r.submit("alpha/x", ["beta/y"])

    assert r.deliver(job_id) is None

    assert backup.calls == []
    assert r.job(job_id).status == JobStatus.FAILED
    assert r.error(job_id)["extra_fields"]["provider"] == "alpha"


def test_when_every_target_fails_retryably_the_job_is_requeued_from_the_primary() -> None:
    primary, backup = ScriptedProvider(failure(503)), ScriptedProvider(failure(502))
    r = rig(alpha=primary, beta=backup)
    job_id = r.submit("alpha/x", ["beta/y"])

    delay = r.deliver(job_id)

    assert delay is not None
    assert (r.job(job_id).status, r.job(job_id).route_from) == (JobStatus.PENDING, 0)


def test_after_the_last_attempt_the_job_fails_with_the_last_targets_error() -> None:
    primary, backup = ScriptedProvider(failure(503)), ScriptedProvider(failure(502))
    r = rig(Settings(max_attempts=2), alpha=primary, beta=backup)
    job_id = r.submit("alpha/x", ["beta/y"])

    r.deliver(job_id)
    r.deliver(job_id)

    job = r.job(job_id)
    assert (job.status, job.status_code) == (JobStatus.FAILED, 502)
    error = r.error(job_id)
    assert error["is_bifrost_error"] is False
    assert (error["extra_fields"]["provider"], error["extra_fields"]["model_requested"]) == ("beta", "y")


def test_an_attempt_out_of_time_resumes_at_the_same_target_next_time() -> None:
    settings = Settings(inline_retries=2, retry_base_s=4.0, retry_max_s=4.0, min_call_s=10.0)
    primary, backup = ScriptedProvider(failure(500)), ScriptedProvider(failure(503), RESULT)
    r = rig(settings, alpha=primary, beta=backup)
    job_id = r.submit("alpha/x", ["beta/y"])
    # three primary calls at 0, 4 and 8 s; the backup's first call at 8 s fails and a retry
    # at 12 s would leave less than min_call_s before the 20 s deadline
    assert r.deliver(job_id, remaining_s=DEADLINE_MARGIN_S + 20) is not None
    resumed_at = r.job(job_id).route_from

    assert r.deliver(job_id, remaining_s=300) is None
    assert resumed_at == 1
    assert len(primary.calls) == settings.inline_retries + 1
    assert r.result(job_id)["extra_fields"]["provider"] == "beta"


def test_retry_after_hint_sets_the_inline_delay() -> None:
    provider = ScriptedProvider(failure(429, retry_after_s=3.0), RESULT)
    r = rig(alpha=provider)
    job_id = r.submit("alpha/x")

    r.deliver(job_id)

    assert r.clock.sleeps == [3.0]
    assert r.job(job_id).status == JobStatus.COMPLETED


def test_a_refused_key_rotates_to_the_next_key_at_once_and_is_demoted() -> None:
    provider = ScriptedProvider(failure(401), RESULT)
    r = rig(keys={"alpha": ("k1", "k2")}, alpha=provider)
    job_id = r.submit("alpha/x")

    r.deliver(job_id)

    assert [call.api_key for call in provider.calls] == ["k1", "k2"]
    assert r.clock.sleeps == []
    assert r.providers.demoted == [("alpha", "k1")]
    assert r.job(job_id).status == JobStatus.COMPLETED


def test_a_throttled_key_rotates_and_the_last_key_still_gets_backoff() -> None:
    provider = ScriptedProvider(failure(429), failure(429), RESULT)
    r = rig(keys={"alpha": ("k1", "k2")}, alpha=provider)
    job_id = r.submit("alpha/x")

    r.deliver(job_id)

    assert [call.api_key for call in provider.calls] == ["k1", "k2", "k2"]
    assert len(r.clock.sleeps) == 1
    assert r.job(job_id).status == JobStatus.COMPLETED


def test_a_keyless_provider_is_called_without_a_key() -> None:
    provider = ScriptedProvider(RESULT)
    r = rig(alpha=provider)

    r.deliver(r.submit("alpha/x"))

    assert provider.calls[0].api_key is None
