"""Poison messages: a job whose processing keeps crashing reaches the DLQ and is failed; junk is dropped.

The jobs queue redrives a message to its DLQ after ``maxReceiveCount`` receives (``infra``:
``MAX_ATTEMPTS + 3``; moto honours the redrive policy). The dead-letter consumer then fails the
job with 500 ``job_abandoned`` so its poll ends, unless a worker still holds a live lease on it.
A message body that names no job is acknowledged and dropped without a provider call.
"""

from __future__ import annotations

from collections.abc import Callable

from chalice.test import Client

from chalicelib import wiring
from chalicelib.infra import max_receive_count
from chalicelib.ports import Claimed
from tests.faults.conftest import MAX_ATTEMPTS
from tests.faults.hooks import Fault, Params, client_error, hooked, is_claim, is_finish, on_job
from tests.faults.support import (
    UPSTREAM,
    acknowledge,
    assert_error_body,
    deliver_to_worker,
    dlq_depth,
    drain,
    expire_lease,
    new_job_id,
    poll,
    receive,
    run_dead_letters,
    send_raw,
    sqs_event,
    submit_job,
)
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake

UPDATE_ITEM = "before-parameter-build.dynamodb.UpdateItem"


def failing_writes(job_id: str, which: Callable[[Params], bool]) -> Fault:
    """DynamoDB fails one kind of write (``is_claim``, ``is_finish``) on this job, every time."""
    return Fault(
        lambda: client_error("InternalServerError", "UpdateItem"), when=lambda p: on_job(job_id)(p) and which(p)
    )


def assert_abandoned(client: Client, job_id: str) -> None:
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "failed", 500)
    assert_error_body(body["error"], 500, "job_abandoned")


def test_job_that_can_never_be_claimed_reaches_the_dlq_and_is_failed_as_abandoned(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    with hooked("dynamodb", UPDATE_ITEM, failing_writes(job_id, is_claim)):
        assert drain(aws_stack) == max_receive_count(aws_stack.settings)
        assert (dlq_depth(aws_stack), poll(client, job_id)[1]["status"]) == (1, "pending")

        assert run_dead_letters(aws_stack) == 1

    assert_abandoned(client, job_id)
    assert dlq_depth(aws_stack) == 0
    assert openai.requests == []


def test_job_whose_result_can_never_be_written_calls_the_provider_once_per_attempt_then_is_abandoned(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    with hooked("dynamodb", UPDATE_ITEM, failing_writes(job_id, is_finish)):
        assert drain(aws_stack) == max_receive_count(aws_stack.settings)
        assert run_dead_letters(aws_stack) == 1

    assert len(openai.requests_to(UPSTREAM)) == MAX_ATTEMPTS
    assert_abandoned(client, job_id)
    assert (aws_stack.queued_messages(), dlq_depth(aws_stack)) == (0, 0)


def test_dead_letter_for_a_job_a_worker_still_holds_waits_for_the_lease_to_end(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    now_ms = int(wiring.container().clock.now() * 1000)
    assert isinstance(wiring.container().store.claim(job_id, "slow-worker", now_ms, now_ms + 60_000), Claimed)
    send_raw(aws_stack, job_id, dead=True)
    [dead] = receive(aws_stack, dead=True)

    assert deliver_to_worker(sqs_event([dead]), "dead_letters") == [dead["MessageId"]]
    assert poll(client, job_id)[1]["status"] == "processing"

    expire_lease(aws_stack, job_id)
    assert deliver_to_worker(sqs_event([dead]), "dead_letters") == []
    acknowledge(aws_stack, [dead], dead=True)

    assert_abandoned(client, job_id)
    assert aws_stack.run_worker() == 1
    assert aws_stack.queued_messages() == 0
    assert openai.requests == []
    assert_abandoned(client, job_id)


def test_messages_that_name_no_job_are_dropped_without_a_provider_call(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    for body in ("not-a-job-id", '{"id": "x"}', new_job_id().upper(), new_job_id(), ""):
        send_raw(aws_stack, body or " ")
    send_raw(aws_stack, "junk", dead=True)

    assert aws_stack.run_worker() == 5
    assert run_dead_letters(aws_stack) == 1

    assert (aws_stack.queued_messages(), dlq_depth(aws_stack), aws_stack.item_count()) == (0, 0, 0)
    assert openai.requests == []
