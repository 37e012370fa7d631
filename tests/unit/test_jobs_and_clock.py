"""The job's JSON view (contract §2–3), the timestamp format and the poll interval hint."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from chalicelib.clock import SystemClock, now_ms, rfc3339
from chalicelib.contract import RequestType
from chalicelib.jobs import Job, JobStatus, poll_interval_s, render_job
from tests.fakes import FakeClock

JOB_ID = "0b5e3a3e-2f0c-4f5e-9d0a-6c1f9f3a7b21"
CREATED_MS = 1_795_600_800_123
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

BASE = Job(
    id=JOB_ID,
    request_type=RequestType.CHAT_COMPLETION,
    status=JobStatus.PENDING,
    created_at_ms=CREATED_MS,
    result_ttl_s=3600,
    request_json='{"model":"mock/echo"}',
)
RESULT_JSON = '{"object": "chat.completion",  "choices": [ {"index": 0} ], "n": 1.50}'
ERROR_JSON = (
    '{"event_id":"e1","type":"server_error","is_bifrost_error":false,"status_code":503,"error":{"message":"x"}}'
)


def _finished(status: JobStatus, code: int, result: str | None, error: str | None) -> Job:
    return replace(
        BASE,
        status=status,
        attempts=2,
        completed_at_ms=CREATED_MS + 2_500,
        expires_at_ms=CREATED_MS + 2_500 + 3_600_000,
        status_code=code,
        result_json=result,
        error_json=error,
        request_json=None,
    )


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.PROCESSING])
def test_open_job_renders_only_id_status_and_created_at(status: JobStatus) -> None:
    job = replace(BASE, status=status, attempts=1, lease_owner="w1", lease_until_ms=CREATED_MS + 330_000)

    body = json.loads(render_job(job))

    assert body == {"id": JOB_ID, "status": status.value, "created_at": "2026-11-25T10:00:00.123Z"}


def test_completed_job_renders_times_status_code_and_result() -> None:
    job = _finished(JobStatus.COMPLETED, 200, RESULT_JSON, None)

    body = json.loads(render_job(job))

    assert body == {
        "id": JOB_ID,
        "status": "completed",
        "created_at": "2026-11-25T10:00:00.123Z",
        "completed_at": "2026-11-25T10:00:02.623Z",
        "expires_at": "2026-11-25T11:00:02.623Z",
        "status_code": 200,
        "result": json.loads(RESULT_JSON),
    }
    assert "error" not in body


def test_failed_job_renders_status_code_and_error_without_result() -> None:
    job = _finished(JobStatus.FAILED, 503, None, ERROR_JSON)

    body = json.loads(render_job(job))

    assert body["status"] == "failed"
    assert body["status_code"] == 503
    assert body["error"] == json.loads(ERROR_JSON)
    assert "result" not in body
    assert {"completed_at", "expires_at"} <= body.keys()


def test_stored_json_is_spliced_in_verbatim() -> None:
    completed = render_job(_finished(JobStatus.COMPLETED, 200, RESULT_JSON, None))
    failed = render_job(_finished(JobStatus.FAILED, 500, None, ERROR_JSON))

    assert completed.endswith(f',"result":{RESULT_JSON}}}')
    assert failed.endswith(f',"error":{ERROR_JSON}}}')
    json.loads(completed)
    json.loads(failed)


def test_cancelled_job_is_terminal_and_renders_without_result_or_error() -> None:
    job = replace(BASE, status=JobStatus.CANCELLED, completed_at_ms=CREATED_MS + 1_000, request_json=None)

    body = json.loads(render_job(job))

    assert body == {
        "id": JOB_ID,
        "status": "cancelled",
        "created_at": "2026-11-25T10:00:00.123Z",
        "completed_at": "2026-11-25T10:00:01.123Z",
    }


def test_rendering_never_exposes_internal_fields() -> None:
    job = replace(_finished(JobStatus.COMPLETED, 200, RESULT_JSON, None), caller="vk-hash", lease_owner="w1")

    text = render_job(job)

    assert "vk-hash" not in text
    assert "w1" not in text
    assert set(json.loads(text)) == {
        "id",
        "status",
        "created_at",
        "completed_at",
        "expires_at",
        "status_code",
        "result",
    }


@pytest.mark.parametrize(
    ("epoch_ms", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1_000_000_000_007, "2001-09-09T01:46:40.007Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (CREATED_MS, "2026-11-25T10:00:00.123Z"),
    ],
)
def test_rfc3339_is_utc_with_milliseconds_and_z(epoch_ms: int, expected: str) -> None:
    assert rfc3339(epoch_ms) == expected
    assert RFC3339.match(rfc3339(epoch_ms))


def test_now_ms_is_integer_milliseconds_of_the_clock() -> None:
    clock = FakeClock(start=1_795_600_800.1239)

    assert now_ms(clock) == 1_795_600_800_123
    assert isinstance(now_ms(SystemClock()), int)


def test_system_clock_does_not_sleep_for_non_positive_durations() -> None:
    clock = SystemClock()
    before = clock.now()

    clock.sleep(0)
    clock.sleep(-5)

    assert clock.now() - before < 1


@pytest.mark.parametrize(
    ("age_ms", "expected"),
    [
        (0, 1),
        (9_999, 1),
        (19_999, 1),
        (20_000, 2),
        (125_000, 12),
        (300_000, 30),
        (86_400_000, 30),
        (-60_000, 1),
    ],
)
def test_poll_interval_starts_at_one_second_and_never_exceeds_thirty(age_ms: int, expected: int) -> None:
    assert poll_interval_s(BASE, CREATED_MS + age_ms) == expected


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (JobStatus.PENDING, False),
        (JobStatus.PROCESSING, False),
        (JobStatus.COMPLETED, True),
        (JobStatus.FAILED, True),
        (JobStatus.CANCELLED, True),
    ],
)
def test_only_completed_failed_and_cancelled_are_terminal(status: JobStatus, terminal: bool) -> None:
    assert status.is_terminal is terminal


def test_job_expires_the_moment_expires_at_is_reached() -> None:
    job = _finished(JobStatus.COMPLETED, 200, RESULT_JSON, None)
    expires = job.expires_at_ms
    assert expires is not None

    assert not job.is_expired(expires - 1)
    assert job.is_expired(expires)
    assert not BASE.is_expired(CREATED_MS + 10**12)
