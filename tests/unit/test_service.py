"""Submit and poll use cases (contract §2–3) against the in-memory store and queue."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import GatewayError
from chalicelib.jobs import ANONYMOUS, Job, JobStatus
from chalicelib.payloads import Payloads
from chalicelib.service import JOB_NOT_FOUND, JobService, is_job_id, parse_result_ttl
from chalicelib.submission import Submission
from tests.fakes import AllProviders, FakeClock, InMemoryBlobStore, InMemoryJobQueue, InMemoryJobStore, open_access

JSON = "application/json"
CHAT = RequestType.CHAT_COMPLETION
CHAT_BODY: dict[str, Any] = {"model": "mock/echo", "messages": [{"role": "user", "content": "hello"}]}


class CountingStore(InMemoryJobStore):
    """The in-memory store, counting reads so tests can see which polls reach storage."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, job_id: str) -> Job | None:
        self.reads += 1
        return super().get(job_id)


@dataclass
class Rig:
    clock: FakeClock
    store: CountingStore
    queue: InMemoryJobQueue
    settings: Settings
    service: JobService


def make_rig(settings: Settings | None = None, fail_sends: bool = False) -> Rig:
    settings = settings or Settings()
    clock, store, queue = FakeClock(), CountingStore(), InMemoryJobQueue(fail_sends=fail_sends)
    payloads = Payloads(InMemoryBlobStore(), settings)
    service = JobService(store, queue, payloads, open_access(clock), AllProviders("mock", "openai"), settings, clock)
    return Rig(clock, store, queue, settings, service)


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def submit(rig: Rig, body: Any = CHAT_BODY, ttl: str | None = None, request_type: RequestType = CHAT) -> Job:
    return rig.service.submit(Submission(request_type, encode(body), JSON, ttl))


def error_of(call: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("60", 60),
        ("1", 1),
        ("007", 7),
        (" 7 ", 7),
        ("86400", 86400),
        (None, 3600),
        ("", 3600),
        ("   ", 3600),
        ("abc", 3600),
        ("0", 3600),
        ("-5", 3600),
        ("1.5", 3600),
        ("60s", 3600),
        ("1e3", 3600),
        ("٣", 3600),
        ("²", 3600),
        ("999999", 100_000),
        ("99999999999999999999999", 100_000),
    ],
)
def test_result_ttl_header_uses_positive_integers_clamped_else_default(header: str | None, expected: int) -> None:
    assert parse_result_ttl(header, 3600, 100_000) == expected


def test_submit_stores_a_pending_job_and_queues_its_id() -> None:
    rig = make_rig()

    job = submit(rig)

    assert job.status == JobStatus.PENDING
    assert is_job_id(job.id)
    assert uuid.UUID(job.id).version == 4
    assert job.created_at_ms == int(rig.clock.now() * 1000)
    assert job.attempts == 0
    assert job.result_ttl_s == rig.settings.default_ttl_s
    assert json.loads(job.request_json or "") == CHAT_BODY
    assert rig.store.get(job.id) == job
    assert rig.queue.sent == [job.id]


def test_submit_ids_are_random_and_distinct() -> None:
    rig = make_rig()

    ids = {submit(rig).id for _ in range(20)}

    assert len(ids) == 20
    assert sorted(rig.queue.sent) == sorted(ids)


def test_open_job_gets_the_safety_horizon_ttl() -> None:
    rig = make_rig(Settings(open_job_horizon_s=2 * 86400))

    job = submit(rig, ttl="60")

    assert rig.store.ttls[job.id] == job.created_at_ms // 1000 + 2 * 86400


def test_ttl_header_sets_the_result_ttl_and_is_clamped_to_the_maximum() -> None:
    rig = make_rig(Settings(default_ttl_s=600, max_ttl_s=7200))

    assert submit(rig, ttl="120").result_ttl_s == 120
    assert submit(rig, ttl="100000").result_ttl_s == 7200
    assert submit(rig, ttl="-1").result_ttl_s == 600


REJECTIONS: list[tuple[str, bytes | None, str | None, int, str]] = [
    ("wrong content type", encode(CHAT_BODY), "text/plain", 400, "invalid_content_type"),
    ("no body", None, JSON, 400, "invalid_json"),
    ("broken json", b'{"model":', JSON, 400, "invalid_json"),
    ("array body", b"[]", JSON, 400, "invalid_json"),
    ("missing model", encode({"messages": CHAT_BODY["messages"]}), JSON, 400, "missing_required_field"),
    ("unknown provider", encode({**CHAT_BODY, "model": "nope/x"}), JSON, 400, "unsupported_provider"),
    ("missing messages", encode({"model": "mock/echo"}), JSON, 400, "missing_required_field"),
    ("streaming", encode({**CHAT_BODY, "stream": True}), JSON, 400, "stream_not_supported"),
    ("bad fallbacks", encode({**CHAT_BODY, "fallbacks": "mock/echo"}), JSON, 400, "invalid_field_type"),
    ("too large", encode({**CHAT_BODY, "pad": "x" * 2000}), JSON, 413, "request_too_large"),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejected_submit_stores_and_queues_nothing(
    raw: bytes | None, content_type: str | None, status: int, code: str
) -> None:
    rig = make_rig(Settings(max_request_bytes=1000))

    error = error_of(lambda: rig.service.submit(Submission(CHAT, raw, content_type, "60")))

    assert (error.status, error.code) == (status, code)
    assert rig.store.items == {}
    assert rig.queue.sent == []


def test_validation_is_checked_before_streaming() -> None:
    rig = make_rig()

    error = error_of(lambda: submit(rig, {"model": "mock/echo", "stream": True}))

    assert (error.code, error.param) == ("missing_required_field", "messages")


def test_an_oversized_body_is_refused_before_it_is_parsed() -> None:
    rig = make_rig(Settings(max_request_bytes=100))

    error = error_of(lambda: submit(rig, {"model": "mock/echo", "stream": True, "messages": [{"content": "x" * 500}]}))

    assert (error.status, error.code) == (413, "request_too_large")


def test_body_at_the_size_limit_is_accepted_and_one_byte_more_is_413() -> None:
    body = {**CHAT_BODY, "pad": "x"}
    size = len(encode(body))

    accepted = submit(make_rig(Settings(max_request_bytes=size)), body)
    error = error_of(lambda: submit(make_rig(Settings(max_request_bytes=size - 1)), body))

    assert accepted.status == JobStatus.PENDING
    assert (error.status, error.code) == (413, "request_too_large")


def test_queue_failure_is_503_and_rolls_the_job_back() -> None:
    rig = make_rig(fail_sends=True)

    error = error_of(lambda: submit(rig))

    assert (error.status, error.code) == (503, "queue_unavailable")
    assert error.is_bifrost_error
    assert rig.store.items == {}
    assert rig.store.ttls == {}


def test_poll_returns_the_job_of_the_same_type() -> None:
    rig = make_rig()
    job = submit(rig)

    assert rig.service.poll(CHAT, job.id, ANONYMOUS).job == job


def _finished(rig: Rig, job: Job, ttl_s: int = 60) -> Job:
    done_ms = job.created_at_ms + 1_000
    finished = replace(
        job,
        status=JobStatus.COMPLETED,
        completed_at_ms=done_ms,
        expires_at_ms=done_ms + ttl_s * 1000,
        status_code=200,
        result_json="{}",
        request_json=None,
    )
    rig.store.items[job.id] = finished
    return finished


def test_poll_returns_a_finished_job_until_it_expires() -> None:
    rig = make_rig()
    job = _finished(rig, submit(rig))
    assert job.expires_at_ms is not None

    rig.clock.current = (job.expires_at_ms - 1) / 1000
    assert rig.service.poll(CHAT, job.id, ANONYMOUS).job.status == JobStatus.COMPLETED

    rig.clock.current = job.expires_at_ms / 1000
    error = error_of(lambda: rig.service.poll(CHAT, job.id, ANONYMOUS))
    assert (error.status, error.code, error.message) == (404, "job_not_found", JOB_NOT_FOUND)


def test_poll_of_an_unknown_id_is_not_found() -> None:
    rig = make_rig()
    submit(rig)

    error = error_of(lambda: rig.service.poll(CHAT, str(uuid.uuid4()), ANONYMOUS))

    assert (error.status, error.code, error.message) == (404, "job_not_found", "job not found or expired")


@pytest.mark.parametrize(
    "other_type", [RequestType.TEXT_COMPLETION, RequestType.RESPONSES, RequestType.EMBEDDING, RequestType.RERANK]
)
def test_poll_with_another_type_is_indistinguishable_from_unknown(other_type: RequestType) -> None:
    rig = make_rig()
    job = submit(rig)

    error = error_of(lambda: rig.service.poll(other_type, job.id, ANONYMOUS))

    assert (error.status, error.code, error.message) == (404, "job_not_found", JOB_NOT_FOUND)


@pytest.mark.parametrize(
    "job_id", ["", "123", "not-a-uuid", "../../etc", "0B5E3A3E-2F0C-4F5E-9D0A-6C1F9F3A7B21", "x" * 500]
)
def test_poll_of_a_non_uuid_is_not_found_without_reading_the_store(job_id: str) -> None:
    rig = make_rig()

    error = error_of(lambda: rig.service.poll(CHAT, job_id, ANONYMOUS))

    assert (error.status, error.code) == (404, "job_not_found")
    assert rig.store.reads == 0


def test_poll_of_an_uppercased_real_id_is_not_found() -> None:
    rig = make_rig()
    job = submit(rig)

    error = error_of(lambda: rig.service.poll(CHAT, job.id.upper(), ANONYMOUS))

    assert error.code == "job_not_found"
