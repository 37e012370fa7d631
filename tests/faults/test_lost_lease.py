"""A worker that lost its lease (it outlived it; a successor re-claimed the job and finished it).

Its late outcome must not overwrite the finished job: not a late success, not a late failure,
and a late result too large for the item, written to its own blob, must not replace the result
the job points to (the late blob is deleted again).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from chalice.test import Client

from chalicelib.errors import ProviderError
from tests.faults.memory import SETTINGS, CountingProvider, Rig, message
from tests.faults.support import (
    UPSTREAM,
    HeldOpenAIFake,
    acknowledge,
    attempts,
    bucket_keys,
    chat_body,
    deliver_to_worker,
    expire_lease,
    make_visible,
    poll,
    receive,
    sqs_event,
    submit_job,
)
from tests.support.aws import AwsStack

INLINE_LIMIT = 1024
BLOB_RESULTS = replace(SETTINGS, inline_limit_bytes=INLINE_LIMIT)


def successor_finishes(rig: Rig, job_id: str) -> None:
    """Inside the first worker's call: its lease runs out and a second delivery runs the job to the end."""
    rig.clock.advance(rig.settings.lease_s + 1)
    assert rig.deliver(message(job_id, 2)) is None


def result_blobs(rig: Rig, job_id: str) -> list[str]:
    return [key for key in rig.blobs.objects if key.startswith(f"results/{job_id}/")]


# in memory ------------------------------------------------------------------------------
def test_late_result_of_a_worker_that_lost_its_lease_neither_overwrites_nor_replaces_the_successors() -> None:
    rig = Rig(CountingProvider(padding=4 * INLINE_LIMIT), settings=BLOB_RESULTS)
    job_id = rig.submit()
    rig.provider.before.append(lambda: successor_finishes(rig, job_id))

    assert rig.deliver(message(job_id, 1)) is None

    assert [call.attempt for call in rig.provider.calls] == [1, 2]
    status, body = rig.view(job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert body["result"]["id"] == "chatcmpl-call-2"
    assert result_blobs(rig, job_id) == [rig.job(job_id).result_ref]
    assert rig.job(job_id).attempts == 2


def test_late_failure_of_a_worker_that_lost_its_lease_does_not_turn_the_finished_job_into_a_failure() -> None:
    rig = Rig(CountingProvider())
    job_id = rig.submit()

    def successor_finishes_then_provider_refuses() -> None:
        successor_finishes(rig, job_id)
        raise ProviderError("late refusal", status=400, code="invalid_value")

    rig.provider.before.append(successor_finishes_then_provider_refuses)

    assert rig.deliver(message(job_id, 1)) is None

    assert len(rig.provider.calls) == 2
    status, body = rig.view(job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert body["result"]["id"] == "chatcmpl-call-2"
    assert "error" not in body


def test_late_retryable_failure_of_a_worker_that_lost_its_lease_does_not_reopen_the_finished_job() -> None:
    rig = Rig(CountingProvider())
    job_id = rig.submit()

    def successor_finishes_then_provider_is_overloaded() -> None:
        successor_finishes(rig, job_id)
        raise ProviderError("overloaded", status=503)

    rig.provider.before.append(successor_finishes_then_provider_is_overloaded)

    assert rig.deliver(message(job_id, 1)) is None

    assert len(rig.provider.calls) == 2
    status, body = rig.view(job_id)
    assert (status, body["status"], body["result"]["id"]) == (200, "completed", "chatcmpl-call-2")


# under moto, through the Lambda handler ---------------------------------------------------
def test_late_result_under_moto_leaves_the_successors_result_and_no_late_blob(
    client: Client, aws_stack: AwsStack, held_openai: HeldOpenAIFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCGATE_INLINE_LIMIT_BYTES", str(INLINE_LIMIT))
    job_id = submit_job(client, chat_body("x" * (4 * INLINE_LIMIT)))
    [first] = receive(aws_stack)
    outcome: list[list[str]] = []
    late = threading.Thread(target=lambda: outcome.append(deliver_to_worker(sqs_event([first]))))
    late.start()
    assert held_openai.arrived.wait(timeout=10)

    expire_lease(aws_stack, job_id)
    make_visible(aws_stack, [first])
    [again] = receive(aws_stack)
    assert deliver_to_worker(sqs_event([again])) == []
    acknowledge(aws_stack, [again])
    held_openai.release()
    late.join(timeout=10)

    assert outcome == [[]]
    assert len(held_openai.requests_to(UPSTREAM)) == 2
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert body["result"]["id"] == "chatcmpl-fake0001"
    item = aws_stack.item(job_id)
    assert item is not None
    assert [key for key in bucket_keys(aws_stack) if key.startswith("results/")] == [item["result_ref"]["S"]]
    assert attempts(aws_stack, job_id) == 2
    assert aws_stack.queued_messages() == 0
