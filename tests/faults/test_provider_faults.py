"""Provider timeouts and 5xx storms: retried inline, then handed back to the queue, then final.

The fake OpenAI stalls past a small read timeout, or answers 503 for a while. Each attempt makes
``1 + INLINE_RETRIES`` calls; the job completes on the attempt where the provider recovers, or
fails with the provider's status after ``MAX_ATTEMPTS`` attempts. Requests are counted exactly.
Handed-back messages are made visible at once instead of waiting out their delay.
"""

from __future__ import annotations

from typing import Any

import pytest
from chalice.test import Client

from tests.faults.conftest import INLINE_RETRIES, MAX_ATTEMPTS
from tests.faults.support import UPSTREAM, attempts, dlq_depth, drain, poll, submit_job
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake

CALLS_PER_ATTEMPT = 1 + INLINE_RETRIES
READ_TIMEOUT_S = 0.2
STALL_S = 1.0


@pytest.fixture
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCGATE_PROVIDER_READ_TIMEOUT", str(READ_TIMEOUT_S))


def assert_provider_failure(body: dict[str, Any], status: int, error_type: str, code: str | None) -> None:
    """The job's error is the provider's (§4: not the gateway's), naming the provider and model."""
    error = body["error"]
    assert (error["is_bifrost_error"], error["status_code"]) == (False, status)
    assert (error["error"]["type"], error["error"].get("code")) == (error_type, code)
    assert error["extra_fields"] == {
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "request_type": "chat_completion",
    }


@pytest.mark.usefixtures("short_read_timeout")
def test_provider_stalling_through_one_attempt_is_retried_later_and_completes(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    openai.script_delay(UPSTREAM, STALL_S, times=CALLS_PER_ATTEMPT)
    job_id = submit_job(client)

    assert aws_stack.run_worker() == 1

    assert len(openai.requests_to(UPSTREAM)) == CALLS_PER_ATTEMPT
    status, body = poll(client, job_id)
    assert (status, body["status"]) == (202, "pending")

    drain(aws_stack)

    assert len(openai.requests_to(UPSTREAM)) == CALLS_PER_ATTEMPT + 1
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert attempts(aws_stack, job_id) == 2


@pytest.mark.usefixtures("short_read_timeout")
def test_provider_that_never_answers_in_time_fails_the_job_with_504_after_the_last_attempt(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    openai.script_delay(UPSTREAM, STALL_S)
    job_id = submit_job(client)

    drain(aws_stack)

    assert len(openai.requests_to(UPSTREAM)) == MAX_ATTEMPTS * CALLS_PER_ATTEMPT
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "failed", 504)
    assert_provider_failure(body, 504, "timeout_error", "provider_timeout")
    assert attempts(aws_stack, job_id) == MAX_ATTEMPTS
    assert dlq_depth(aws_stack) == 0


@pytest.mark.parametrize(("storm", "attempt"), [(1, 1), (2, 2), (3, 2), (4, 3)])
def test_503_storm_that_ends_completes_the_job_on_the_attempt_after_it(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake, storm: int, attempt: int
) -> None:
    openai.script_error(UPSTREAM, 503, times=storm)
    job_id = submit_job(client)

    drain(aws_stack)

    assert len(openai.requests_to(UPSTREAM)) == storm + 1
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert attempts(aws_stack, job_id) == attempt
    assert aws_stack.queued_messages() == 0


def test_503_storm_that_never_ends_fails_the_job_with_503_after_max_attempts(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    openai.script_error(UPSTREAM, 503)
    job_id = submit_job(client)

    assert drain(aws_stack) == MAX_ATTEMPTS

    assert len(openai.requests_to(UPSTREAM)) == MAX_ATTEMPTS * CALLS_PER_ATTEMPT
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "failed", 503)
    assert_provider_failure(body, 503, "server_error", None)
    assert attempts(aws_stack, job_id) == MAX_ATTEMPTS
    assert (aws_stack.queued_messages(), dlq_depth(aws_stack)) == (0, 0)
