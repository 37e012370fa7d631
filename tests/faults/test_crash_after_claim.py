"""A worker that dies after claiming a job: the job waits out the lease, then the next delivery finishes it.

The death is a ``BaseException`` (as a Lambda timeout or OOM is to the code: nothing catches it)
raised inside the provider call, or while writing the result, or simply a claim nobody finishes.
Until the lease ends a redelivered message is deferred to the lease's end without a provider
call; afterwards it re-claims the job (attempt 2) and completes it.
"""

from __future__ import annotations

import pytest
from chalice.test import Client

from chalicelib import wiring
from chalicelib.jobs import JobStatus
from chalicelib.ports import Claimed
from tests.faults.hooks import Fault, Recorder, WorkerKilled, hooked, is_finish
from tests.faults.memory import CountingProvider, Rig, die, message
from tests.faults.support import UPSTREAM, attempts, expire_lease, poll, submit_job
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake

VISIBILITY = "before-parameter-build.sqs.ChangeMessageVisibility"


# in memory ------------------------------------------------------------------------------
def test_worker_dying_mid_call_leaves_the_job_processing_until_its_lease_ends_then_attempt_2_completes() -> None:
    rig = Rig(CountingProvider())
    rig.provider.before.append(die)
    job_id = rig.submit()

    with pytest.raises(WorkerKilled):
        rig.deliver(message(job_id))

    assert rig.queue.deferred == [("receipt-1", rig.settings.lease_s)]
    status, body = rig.view(job_id)
    assert (status, body["status"], rig.job(job_id).attempts) == (202, "processing", 1)

    rig.clock.advance(100)
    assert rig.deliver(message(job_id)) == rig.settings.lease_s - 100
    assert (rig.job(job_id).status, rig.job(job_id).attempts, len(rig.provider.calls)) == (JobStatus.PROCESSING, 1, 1)

    rig.clock.advance(rig.settings.lease_s - 100 + 1)
    assert rig.deliver(message(job_id)) is None

    assert [call.attempt for call in rig.provider.calls] == [1, 2]
    status, body = rig.view(job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert body["result"]["id"] == "chatcmpl-call-2"
    assert rig.job(job_id).attempts == 2


def test_a_claim_that_is_never_finished_is_taken_over_once_the_lease_has_passed() -> None:
    rig = Rig(CountingProvider())
    job_id = rig.submit()
    claim = rig.store.claim(job_id, "vanished-worker", rig.now_ms(), rig.now_ms() + rig.lease_ms())
    assert isinstance(claim, Claimed)

    assert rig.deliver(message(job_id)) == rig.settings.lease_s
    rig.clock.advance(rig.settings.lease_s)
    assert rig.deliver(message(job_id)) == 1
    assert rig.provider.calls == []
    assert rig.view(job_id)[1]["status"] == "processing"

    rig.clock.advance(1)
    assert rig.deliver(message(job_id)) is None

    assert len(rig.provider.calls) == 1
    status, body = rig.view(job_id)
    assert (status, body["status"], rig.job(job_id).attempts) == (200, "completed", 2)


def test_a_worker_dying_in_a_batch_leaves_every_job_of_the_batch_finishable() -> None:
    rig = Rig(CountingProvider())
    rig.provider.before.append(die)
    doomed, other = rig.submit(), rig.submit()

    with pytest.raises(WorkerKilled):
        rig.worker().handle_batch([message(doomed, 1), message(other, 2)], None)

    rig.clock.advance(rig.settings.lease_s + 1)
    assert rig.worker().handle_batch([message(doomed, 1), message(other, 2)], None) == []

    assert [rig.view(job_id)[1]["status"] for job_id in (doomed, other)] == ["completed", "completed"]
    assert len(rig.provider.calls) == 3
    assert sorted(rig.job(job_id).attempts for job_id in (doomed, other)) == [1, 2]


# under moto, through the Lambda handler ---------------------------------------------------
def test_worker_killed_while_writing_the_result_completes_on_attempt_2_after_the_lease(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    kill = Fault(WorkerKilled("killed while writing the result"), when=is_finish, times=1)
    with hooked("dynamodb", "before-parameter-build.dynamodb.UpdateItem", kill), pytest.raises(WorkerKilled):
        aws_stack.run_worker()

    assert len(openai.requests_to(UPSTREAM)) == 1
    assert poll(client, job_id)[1]["status"] == "processing"
    assert (attempts(aws_stack, job_id), aws_stack.queued_messages()) == (1, 1)

    aws_stack.make_all_visible()
    visibility = Recorder()
    with hooked("sqs", VISIBILITY, visibility):
        assert aws_stack.run_worker() == 1
    assert aws_stack.settings.lease_s - 5 <= visibility.seen[-1]["VisibilityTimeout"] <= aws_stack.settings.lease_s
    assert aws_stack.run_worker() == 0
    assert (attempts(aws_stack, job_id), len(openai.requests_to(UPSTREAM))) == (1, 1)
    assert poll(client, job_id)[1]["status"] == "processing"

    expire_lease(aws_stack, job_id)
    aws_stack.make_all_visible()
    assert aws_stack.run_worker() == 1

    assert len(openai.requests_to(UPSTREAM)) == 2
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert attempts(aws_stack, job_id) == 2
    assert aws_stack.queued_messages() == 0


def test_a_claim_never_finished_under_moto_is_taken_over_after_the_lease_and_calls_openai_once(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    now_ms = int(wiring.container().clock.now() * 1000)
    claim = wiring.container().store.claim(
        job_id, "vanished-worker", now_ms, now_ms + aws_stack.settings.lease_s * 1000
    )
    assert isinstance(claim, Claimed)

    visibility = Recorder()
    with hooked("sqs", VISIBILITY, visibility):
        assert aws_stack.run_worker() == 1
    assert aws_stack.settings.lease_s - 5 <= visibility.seen[-1]["VisibilityTimeout"] <= aws_stack.settings.lease_s
    assert openai.requests == []
    status, body = poll(client, job_id)
    assert (status, body["status"]) == (202, "processing")

    expire_lease(aws_stack, job_id)
    aws_stack.make_all_visible()
    assert aws_stack.run_worker() == 1

    assert len(openai.requests_to(UPSTREAM)) == 1
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert attempts(aws_stack, job_id) == 2
    assert aws_stack.queued_messages() == 0
