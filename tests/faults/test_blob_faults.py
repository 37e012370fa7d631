"""S3 faults in the worker and on poll, for jobs whose request or result is too large for the item.

The worker cannot read the request, or cannot store the result: the attempt is handed back (job
``pending``, message deferred) and the job completes once S3 answers again, intact. A poll that
cannot fetch a result from S3 is a 5xx with the §4 body; the job itself is untouched.
"""

from __future__ import annotations

from typing import Any

import pytest
from chalice.test import Client

from tests.faults.hooks import Fault, client_error, hooked
from tests.faults.support import UPSTREAM, assert_error_body, attempts, bucket_keys, chat_body, poll, submit_job
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake

INLINE_LIMIT = 1024
LARGE_PROMPT = "x" * (4 * INLINE_LIMIT)


@pytest.fixture(autouse=True)
def small_inline_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests and results over 1 KB go to S3 (set before the first request builds the app)."""
    monkeypatch.setenv("ASYNCGATE_INLINE_LIMIT_BYTES", str(INLINE_LIMIT))


def s3_down(operation: str, prefix: str, times: int | None = None) -> Fault:
    def under_prefix(params: dict[str, Any]) -> bool:
        return str(params.get("Key", "")).startswith(prefix)

    return Fault(lambda: client_error("InternalError", operation, 500), when=under_prefix, times=times)


def keys_under(stack: AwsStack, prefix: str) -> list[str]:
    return [key for key in bucket_keys(stack) if key.startswith(prefix)]


def test_s3_failing_to_read_a_large_request_hands_the_job_back_until_s3_recovers(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client, chat_body(LARGE_PROMPT))
    assert keys_under(aws_stack, "requests/") == [f"requests/{job_id}.json"]
    unreadable = s3_down("GetObject", "requests/")

    with hooked("s3", "before-parameter-build.s3.GetObject", unreadable):
        assert aws_stack.run_worker() == 1

    assert unreadable.injected == 1
    assert openai.requests == []
    status, body = poll(client, job_id)
    assert (status, body["status"]) == (202, "pending")
    assert (attempts(aws_stack, job_id), aws_stack.queued_messages(), aws_stack.run_worker()) == (1, 1, 0)

    aws_stack.make_all_visible()
    assert aws_stack.run_worker() == 1

    [sent] = openai.requests_to(UPSTREAM)
    assert sent.json["messages"][0]["content"] == LARGE_PROMPT
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert body["result"]["choices"][0]["message"]["content"] == LARGE_PROMPT
    assert attempts(aws_stack, job_id) == 2
    assert keys_under(aws_stack, "requests/") == []
    assert aws_stack.queued_messages() == 0


def test_s3_refusing_a_large_result_hands_the_job_back_and_the_next_attempt_stores_it(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client, chat_body(LARGE_PROMPT))
    refused = s3_down("PutObject", "results/", times=1)

    with hooked("s3", "before-parameter-build.s3.PutObject", refused):
        assert aws_stack.run_worker() == 1

    assert (refused.injected, len(openai.requests_to(UPSTREAM))) == (1, 1)
    assert poll(client, job_id)[1]["status"] == "pending"
    assert keys_under(aws_stack, "results/") == []

    aws_stack.make_all_visible()
    assert aws_stack.run_worker() == 1

    assert len(openai.requests_to(UPSTREAM)) == 2
    status, body = poll(client, job_id)
    assert (status, body["status"], body["status_code"]) == (200, "completed", 200)
    assert body["result"]["choices"][0]["message"]["content"] == LARGE_PROMPT
    assert len(keys_under(aws_stack, f"results/{job_id}/")) == 1
    assert aws_stack.queued_messages() == 0


def test_poll_while_s3_cannot_return_a_large_result_is_5xx_and_the_result_is_there_afterwards(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job_id = submit_job(client, chat_body(LARGE_PROMPT))
    assert aws_stack.run_worker() == 1

    with hooked("s3", "before-parameter-build.s3.GetObject", s3_down("GetObject", "results/")):
        status, body = poll(client, job_id)

    assert 500 <= status < 600
    assert_error_body(body, status, body["error"]["code"])
    status, body = poll(client, job_id)
    assert (status, body["status"]) == (200, "completed")
    assert body["result"]["choices"][0]["message"]["content"] == LARGE_PROMPT
    assert len(openai.requests_to(UPSTREAM)) == 1
