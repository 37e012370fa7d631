"""DynamoDB failing a worker's write (not a refusal: an error): the job is never dropped.

A claim or a terminal write that errors (500, throttled past botocore's retries, network) is not
a lost lease. The message must come back (deferred) and a later delivery finish the job; the
provider is called once per attempt that reached it.
"""

from __future__ import annotations

from chalice.test import Client

from tests.faults.hooks import Fault, client_error, hooked, is_claim, is_finish
from tests.faults.support import UPSTREAM, attempts, drain, poll, submit_job
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake

UPDATE_ITEM = "before-parameter-build.dynamodb.UpdateItem"


def dynamodb_error() -> Exception:
    return client_error("InternalServerError", "UpdateItem")


def test_a_claim_write_that_errors_defers_the_message_and_the_next_delivery_runs_the_job(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    fault = Fault(dynamodb_error, when=is_claim, times=1)

    with hooked("dynamodb", UPDATE_ITEM, fault):
        assert aws_stack.run_worker() == 1

    assert (fault.injected, openai.requests) == (1, [])
    assert poll(client, job_id)[1]["status"] == "pending"
    assert (aws_stack.queued_messages(), aws_stack.run_worker()) == (1, 0)

    drain(aws_stack)

    assert len(openai.requests_to(UPSTREAM)) == 1
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert attempts(aws_stack, job_id) == 1


def test_a_result_write_that_errors_hands_the_job_back_instead_of_dropping_its_message(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client)
    fault = Fault(dynamodb_error, when=is_finish, times=1)

    with hooked("dynamodb", UPDATE_ITEM, fault):
        assert aws_stack.run_worker() == 1

    assert (fault.injected, len(openai.requests_to(UPSTREAM))) == (1, 1)
    assert aws_stack.queued_messages() == 1
    assert poll(client, job_id)[1]["status"] == "pending"

    drain(aws_stack)

    assert len(openai.requests_to(UPSTREAM)) == 2
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert attempts(aws_stack, job_id) == 2
