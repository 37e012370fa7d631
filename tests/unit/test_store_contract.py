"""One contract for every JobStore: the in-memory twin and DynamoJobStore (under moto) must agree.

Every transition is conditional: create only once, claim only a pending job or an expired
lease, finish and release only as the lease holder. Times are integer epoch milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import aws
from chalicelib.contract import RequestType
from chalicelib.jobs import Job, JobStatus
from chalicelib.ports import Busy, Claimed, Gone, JobStore, Outcome
from chalicelib.store import DynamoJobStore
from tests.fakes import InMemoryJobStore
from tests.support.aws import AwsStack

NOW = 1_795_600_800_123
LEASE_MS = 330_000
HORIZON_S = NOW // 1000 + 3 * 86400
JOB_ID = "0b5e3a3e-2f0c-4f5e-9d0a-6c1f9f3a7b21"
REQUEST = '{"model":"mock/echo","messages":[{"role":"user","content":"héllo"}]}'


@dataclass
class Harness:
    store: JobStore
    ttl_of: Callable[[str], int | None]
    raw_item: Callable[[str], dict[str, Any] | None]


def _memory() -> Harness:
    store = InMemoryJobStore()
    return Harness(store, store.ttls.get, lambda _: None)


def _dynamo(stack: AwsStack) -> Harness:
    def ttl_of(job_id: str) -> int | None:
        item = stack.item(job_id)
        return int(item["ttl"]["N"]) if item and "ttl" in item else None

    return Harness(DynamoJobStore(aws.client("dynamodb"), stack.settings.jobs_table), ttl_of, stack.item)


@pytest.fixture(params=["memory", "dynamo"])
def harness(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        return _memory()
    return _dynamo(request.getfixturevalue("aws_stack"))


@pytest.fixture
def dynamo(aws_stack: AwsStack) -> Harness:
    return _dynamo(aws_stack)


def pending(job_id: str = JOB_ID, **changes: Any) -> Job:
    job = Job(
        id=job_id,
        request_type=RequestType.CHAT_COMPLETION,
        status=JobStatus.PENDING,
        created_at_ms=NOW,
        result_ttl_s=600,
        request_json=REQUEST,
    )
    return replace(job, **changes)


def created(h: Harness, job: Job | None = None) -> Job:
    job = job or pending()
    h.store.create(job, ttl_epoch_s=HORIZON_S)
    return job


def claimed(h: Harness, owner: str = "w1", now: int = NOW) -> Job:
    result = h.store.claim(JOB_ID, owner, now, now + LEASE_MS)
    assert isinstance(result, Claimed)
    return result.job


def outcome(status: JobStatus = JobStatus.COMPLETED, code: int = 200, payload: str = '{"ok": true}') -> Outcome:
    done = NOW + 2_500
    return Outcome(status, code, done, done + 600_000 + 1, payload)


def test_create_is_conditional_on_a_new_id(harness: Harness) -> None:
    job = created(harness)

    with pytest.raises((KeyError, ClientError)):
        harness.store.create(replace(job, request_json="{}"), ttl_epoch_s=1)

    assert harness.store.get(JOB_ID) == job
    assert harness.ttl_of(JOB_ID) == HORIZON_S


def test_get_of_a_missing_job_is_none(harness: Harness) -> None:
    assert harness.store.get(JOB_ID) is None


def test_get_round_trips_every_field_as_ints_and_strings(harness: Harness) -> None:
    job = pending(
        status=JobStatus.FAILED,
        attempts=3,
        lease_owner="w9",
        lease_until_ms=NOW + 5,
        completed_at_ms=NOW + 6,
        expires_at_ms=NOW + 7,
        status_code=503,
        result_json='{"partial": [1, 2.5]}',
        error_json='{"error": {"message": "überlastet"}}',
        caller="vk-1",
        request_ref="requests/x.json",
        result_ref="results/x/w9.json",
        result_size=12345,
        route_from=2,
        cancel_requested=True,
    )
    created(harness, job)

    loaded = harness.store.get(JOB_ID)

    assert loaded == job
    assert loaded is not None
    for field in fields(Job):
        value = getattr(loaded, field.name)
        assert value is not None, field.name
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert type(value) is int, field.name


def test_claim_of_a_pending_job_takes_the_lease_and_counts_the_attempt(harness: Harness) -> None:
    created(harness)

    result = harness.store.claim(JOB_ID, "w1", NOW, NOW + LEASE_MS)

    assert isinstance(result, Claimed)
    job = result.job
    assert (job.status, job.attempts, job.lease_owner, job.lease_until_ms) == (
        JobStatus.PROCESSING,
        1,
        "w1",
        NOW + LEASE_MS,
    )
    assert job.request_json == REQUEST
    assert harness.store.get(JOB_ID) == job


@pytest.mark.parametrize("later_ms", [0, 1, LEASE_MS - 1, LEASE_MS])
def test_claim_while_leased_is_busy_until_the_lease_ends(harness: Harness, later_ms: int) -> None:
    created(harness)
    held = claimed(harness)

    result = harness.store.claim(JOB_ID, "w2", NOW + later_ms, NOW + later_ms + LEASE_MS)

    assert result == Busy(NOW + LEASE_MS)
    assert harness.store.get(JOB_ID) == held


def test_claim_after_the_lease_expired_goes_to_the_new_owner(harness: Harness) -> None:
    created(harness)
    claimed(harness, "w1")
    later = NOW + LEASE_MS + 1

    job = claimed(harness, "w2", later)

    assert (job.lease_owner, job.lease_until_ms, job.attempts) == ("w2", later + LEASE_MS, 2)
    assert harness.store.release(JOB_ID, "w1") is False
    assert harness.store.finish(JOB_ID, "w1", outcome()) is None
    assert harness.store.get(JOB_ID) == job


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_claim_of_a_finished_job_is_gone(harness: Harness, status: JobStatus) -> None:
    job = created(harness, pending(status=status, attempts=1, completed_at_ms=NOW, expires_at_ms=NOW + 1))

    assert harness.store.claim(JOB_ID, "w1", NOW, NOW + LEASE_MS) == Gone()
    assert harness.store.get(JOB_ID) == job


def test_claim_of_a_missing_job_is_gone(harness: Harness) -> None:
    assert harness.store.claim(JOB_ID, "w1", NOW, NOW + LEASE_MS) == Gone()
    assert harness.store.get(JOB_ID) is None


def test_release_by_the_holder_returns_the_job_to_pending(harness: Harness) -> None:
    created(harness)
    held = claimed(harness)

    assert harness.store.release(JOB_ID, "w1") is True

    assert harness.store.get(JOB_ID) == replace(held, status=JobStatus.PENDING, lease_owner=None, lease_until_ms=None)
    assert claimed(harness, "w2").attempts == 2


def test_release_or_finish_by_another_owner_changes_nothing(harness: Harness) -> None:
    created(harness)
    held = claimed(harness, "w1")

    assert harness.store.release(JOB_ID, "intruder") is False
    assert harness.store.finish(JOB_ID, "intruder", outcome()) is None

    assert harness.store.get(JOB_ID) == held


def test_release_or_finish_of_an_unclaimed_or_missing_job_is_refused(harness: Harness) -> None:
    job = created(harness)

    assert harness.store.release(JOB_ID, "w1") is False
    assert harness.store.finish(JOB_ID, "w1", outcome()) is None
    assert harness.store.finish("11111111-2222-4333-8444-555555555555", "w1", outcome()) is None
    assert harness.store.get(JOB_ID) == job


def test_finish_completed_writes_the_result_and_drops_request_and_lease(harness: Harness) -> None:
    created(harness)
    claimed(harness)
    done = outcome(JobStatus.COMPLETED, 200, '{"object": "chat.completion"}')

    assert harness.store.finish(JOB_ID, "w1", done) == JobStatus.COMPLETED

    job = harness.store.get(JOB_ID)
    assert job == replace(
        pending(),
        status=JobStatus.COMPLETED,
        attempts=1,
        request_json=None,
        status_code=200,
        completed_at_ms=done.completed_at_ms,
        expires_at_ms=done.expires_at_ms,
        result_json='{"object": "chat.completion"}',
    )
    assert harness.store.finish(JOB_ID, "w1", outcome(JobStatus.FAILED, 500)) is None


def test_finish_failed_writes_the_error_and_its_status_code(harness: Harness) -> None:
    created(harness)
    claimed(harness)
    error = json.dumps({"status_code": 429, "error": {"message": "slow down"}})

    assert harness.store.finish(JOB_ID, "w1", outcome(JobStatus.FAILED, 429, error)) == JobStatus.FAILED

    job = harness.store.get(JOB_ID)
    assert job is not None
    assert (job.status, job.status_code, job.error_json, job.result_json) == (JobStatus.FAILED, 429, error, None)
    assert (job.request_json, job.lease_owner, job.lease_until_ms) == (None, None, None)
    assert harness.store.claim(JOB_ID, "w2", NOW + 10**9, NOW + 10**9 + LEASE_MS) == Gone()


def test_finish_sets_the_storage_ttl_to_the_expiry_rounded_up(harness: Harness) -> None:
    created(harness)
    claimed(harness)
    done = outcome()

    harness.store.finish(JOB_ID, "w1", done)

    assert harness.ttl_of(JOB_ID) == -(-done.expires_at_ms // 1000)
    assert harness.ttl_of(JOB_ID) == (done.expires_at_ms // 1000) + 1


def test_delete_pending_removes_only_pending_jobs(harness: Harness) -> None:
    other = "11111111-2222-4333-8444-555555555555"
    created(harness)
    finished = created(harness, pending(other, status=JobStatus.COMPLETED, completed_at_ms=NOW, expires_at_ms=NOW))

    harness.store.delete_pending(JOB_ID)
    harness.store.delete_pending(other)
    harness.store.delete_pending("22222222-2222-4333-8444-555555555555")

    assert harness.store.get(JOB_ID) is None
    assert harness.store.get(other) == finished


def test_delete_pending_keeps_a_claimed_job(harness: Harness) -> None:
    created(harness)
    held = claimed(harness)

    harness.store.delete_pending(JOB_ID)

    assert harness.store.get(JOB_ID) == held


def test_dynamo_item_keeps_the_open_horizon_ttl_and_json_as_strings(dynamo: Harness) -> None:
    created(dynamo)

    item = dynamo.raw_item(JOB_ID)

    assert item is not None
    assert item["ttl"] == {"N": str(HORIZON_S)}
    assert item["request"] == {"S": REQUEST}
    assert item["created_at"] == {"N": str(NOW)}
    assert item["status"] == {"S": "pending"}
    assert "lease_owner" not in item


def test_dynamo_claim_keeps_the_horizon_ttl(dynamo: Harness) -> None:
    created(dynamo)
    claimed(dynamo)

    item = dynamo.raw_item(JOB_ID)

    assert item is not None
    assert item["ttl"] == {"N": str(HORIZON_S)}
    assert item["attempts"] == {"N": "1"}
    assert item["lease_until"] == {"N": str(NOW + LEASE_MS)}


@pytest.mark.parametrize(
    ("status", "attribute", "code"), [(JobStatus.COMPLETED, "result", 200), (JobStatus.FAILED, "error", 502)]
)
def test_dynamo_finish_stores_ttl_in_seconds_and_the_payload_as_a_string(
    dynamo: Harness, status: JobStatus, attribute: str, code: int
) -> None:
    created(dynamo)
    claimed(dynamo)
    payload = '{"nested": {"n": 1.5, "list": [1, 2]}}'
    done = outcome(status, code, payload)

    dynamo.store.finish(JOB_ID, "w1", done)

    item = dynamo.raw_item(JOB_ID)
    assert item is not None
    assert item["ttl"] == {"N": str(-(-done.expires_at_ms // 1000))}
    assert item[attribute] == {"S": payload}
    assert item["status_code"] == {"N": str(code)}
    assert item["expires_at"] == {"N": str(done.expires_at_ms)}
    assert not {"request", "lease_owner", "lease_until"} & item.keys()
