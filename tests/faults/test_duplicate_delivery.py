"""Duplicate and concurrent delivery of one job: the provider is called once, the job completed once.

SQS delivers at least once: the same message can come twice (to one worker or to two at the
same moment), and a job can have two messages. The claim (a conditional write with a lease)
must turn every extra delivery into an acknowledgement or a deferral, never a second call.

The true race (two claims at the same instant) runs on the in-memory twins. Under moto it is not
reliable: moto's UpdateItem evaluates the condition and writes without a lock, so two claims
released together from a barrier both succeed in a few percent of runs (DynamoDB serializes
writes to one item). The moto tests overlap deliveries in time instead: one worker is held
inside its OpenAI call while the duplicate arrives.
"""

from __future__ import annotations

import threading

from chalice.test import Client

from chalicelib.jobs import JobStatus
from tests.faults.memory import CountingProvider, RacingStore, Rig, message
from tests.faults.support import (
    UPSTREAM,
    HeldOpenAIFake,
    acknowledge,
    attempts,
    deliver_to_worker,
    make_visible,
    poll,
    receive,
    send_raw,
    sqs_event,
    submit_job,
    worker_batch,
)
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake


# in memory ------------------------------------------------------------------------------
def test_the_same_message_delivered_twice_calls_the_provider_once_and_acknowledges_the_repeat() -> None:
    rig = Rig(CountingProvider())
    job_id = rig.submit()

    assert rig.deliver(message(job_id)) is None
    finished = rig.job(job_id)
    assert rig.deliver(message(job_id)) is None

    assert len(rig.provider.calls) == 1
    assert rig.job(job_id) == finished
    status, body = rig.view(job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert body["result"]["id"] == "chatcmpl-call-1"


def test_two_messages_for_one_job_complete_it_once() -> None:
    rig = Rig(CountingProvider())
    job_id = rig.submit()

    assert rig.deliver(message(job_id, 1)) is None
    assert rig.deliver(message(job_id, 2)) is None

    assert len(rig.provider.calls) == 1
    assert (rig.job(job_id).status, rig.job(job_id).attempts) == (JobStatus.COMPLETED, 1)


def test_a_duplicate_arriving_while_the_job_runs_is_deferred_until_the_lease_ends() -> None:
    rig = Rig(CountingProvider())
    job_id = rig.submit()
    duplicate_delays: list[int | None] = []
    rig.provider.before.append(lambda: duplicate_delays.append(rig.deliver(message(job_id, 2))))

    assert rig.deliver(message(job_id, 1)) is None

    assert duplicate_delays == [rig.settings.lease_s]
    assert rig.deliver(message(job_id, 2)) is None
    assert len(rig.provider.calls) == 1
    status, body = rig.view(job_id)
    assert (status, body["status"], body["result"]["id"]) == (200, "completed", "chatcmpl-call-1")


def race_two_workers(rig: Rig, job_id: str) -> list[int | None]:
    """Deliver two messages for the job to two workers whose claims meet at a barrier; their answers.

    The winner's provider call waits until the loser is done, so the loser always sees a live lease.
    """
    delays: list[int | None] = []
    loser_done = threading.Event()
    rig.provider.before.append(lambda: loser_done.wait(timeout=10))

    def run(number: int) -> None:
        delays.append(rig.deliver(message(job_id, number)))
        loser_done.set()

    threads = [threading.Thread(target=run, args=(number,)) for number in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return delays


def test_two_workers_claiming_one_job_at_the_same_instant_call_the_provider_once() -> None:
    for _ in range(25):
        rig = Rig(CountingProvider(), store=RacingStore(parties=2))
        job_id = rig.submit()

        delays = race_two_workers(rig, job_id)

        assert len(rig.provider.calls) == 1
        assert delays == [rig.settings.lease_s, None]
        job = rig.job(job_id)
        assert (job.status, job.attempts) == (JobStatus.COMPLETED, 1)


# under moto, through the Lambda handler ---------------------------------------------------
def test_the_same_sqs_message_handed_to_the_worker_twice_calls_openai_once(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    [received] = receive(aws_stack)
    event = sqs_event([received])

    assert deliver_to_worker(event) == []
    assert deliver_to_worker(event) == []
    acknowledge(aws_stack, [received])

    assert len(openai.requests_to(UPSTREAM)) == 1
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert attempts(aws_stack, job_id) == 1
    assert aws_stack.queued_messages() == 0


def test_two_messages_for_one_job_on_the_queue_call_openai_once(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    send_raw(aws_stack, job_id)

    handled = worker_batch(aws_stack, batch_size=1) + worker_batch(aws_stack, batch_size=1)

    assert handled == 2
    assert len(openai.requests_to(UPSTREAM)) == 1
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert aws_stack.queued_messages() == 0


def test_a_duplicate_delivered_while_openai_is_still_answering_is_deferred_not_run(
    client: Client, aws_stack: AwsStack, held_openai: HeldOpenAIFake
) -> None:
    job_id = submit_job(client)
    [first] = receive(aws_stack)
    outcome: list[list[str]] = []
    running = threading.Thread(target=lambda: outcome.append(deliver_to_worker(sqs_event([first]))))
    running.start()
    assert held_openai.arrived.wait(timeout=10)
    send_raw(aws_stack, job_id)

    [duplicate] = receive(aws_stack)
    assert deliver_to_worker(sqs_event([duplicate])) == [duplicate["MessageId"]]
    status, body = poll(client, job_id)
    assert (status, body["status"]) == (202, "processing")

    held_openai.release()
    running.join(timeout=10)
    assert outcome == [[]]
    acknowledge(aws_stack, [first])
    make_visible(aws_stack, [duplicate])
    [again] = receive(aws_stack)
    assert deliver_to_worker(sqs_event([again])) == []
    acknowledge(aws_stack, [again])
    assert aws_stack.queued_messages() == 0
    assert len(held_openai.requests_to(UPSTREAM)) == 1
    status, body = poll(client, job_id)
    assert (status, body["status"], body["result"]["id"]) == (200, "completed", "chatcmpl-held")
    assert attempts(aws_stack, job_id) == 1
