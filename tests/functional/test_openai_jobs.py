"""OpenAI jobs end to end in one process: Chalice test client, moto, the worker, and a fake OpenAI server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake, error_body

API_KEY = "sk-test-3a9f0c6e1d7b2458"
SUBMIT = "/v1/async/chat/completions"
UPSTREAM = "/chat/completions"
INLINE_RETRIES = 2


@pytest.fixture
def fake(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIFake]:
    """The fake OpenAI, wired in through the environment before the first request builds the app's graph."""
    with OpenAIFake(api_key=API_KEY) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ASYNCGATE_INLINE_RETRIES", str(INLINE_RETRIES))
        monkeypatch.setenv("ASYNCGATE_RETRY_BASE_SECONDS", "0.01")
        monkeypatch.setenv("ASYNCGATE_RETRY_MAX_SECONDS", "0.05")
        yield server


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a joke"}], **extra}


def submit(client: Client, body: dict[str, Any]) -> str:
    response = client.http.post(SUBMIT, headers={"Content-Type": "application/json"}, body=json.dumps(body))
    assert response.status_code == 202
    job_id: str = response.json_body["id"]
    return job_id


def poll(client: Client, job_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = client.http.get(f"{SUBMIT}/{job_id}")
    assert API_KEY not in response.body.decode()
    return response.status_code, response.json_body, response.headers


def deliver_once_then_return_the_message(aws_stack: AwsStack) -> None:
    """Run the worker on one batch, then make its messages visible again at once, as an expired delay would."""
    assert aws_stack.run_worker(rounds=1) == 1
    aws_stack.make_all_visible()


def test_openai_chat_job_completes_with_the_provider_result(
    client: Client, aws_stack: AwsStack, fake: OpenAIFake
) -> None:
    job_id = submit(client, chat_body(temperature=0.5, max_completion_tokens=32, fallbacks=["mock/echo"]))

    assert aws_stack.run_worker() == 1

    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Tell me a joke"}],
        "temperature": 0.5,
        "max_completion_tokens": 32,
    }
    status, job, _ = poll(client, job_id)
    assert status == 200
    assert (job["id"], job["status"], job["status_code"]) == (job_id, "completed", 200)
    assert "error" not in job
    result = job["result"]
    assert (result["id"], result["object"], result["model"]) == ("chatcmpl-fake0001", "chat.completion", "gpt-4o-mini")
    assert result["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Tell me a joke",
        "refusal": None,
        "annotations": [],
    }
    assert result["usage"]["total_tokens"] == result["usage"]["prompt_tokens"] + result["usage"]["completion_tokens"]
    extra = result["extra_fields"]
    assert {k: v for k, v in extra.items() if k != "latency_ms"} == {
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "request_type": "chat_completion",
    }
    assert isinstance(extra["latency_ms"], int) and extra["latency_ms"] >= 0
    assert aws_stack.queued_messages() == 0


def test_openai_400_fails_the_job_with_the_provider_error(
    client: Client, aws_stack: AwsStack, fake: OpenAIFake
) -> None:
    upstream = error_body(
        "Invalid value: 'wizard'. Supported values are: 'system', 'assistant', 'user', 'tool'.",
        "invalid_request_error",
        param="messages[0].role",
        code="invalid_value",
    )
    fake.script_error(UPSTREAM, 400, upstream)
    job_id = submit(client, chat_body(messages=[{"role": "wizard", "content": "hi"}]))

    assert aws_stack.run_worker() == 1

    status, job, _ = poll(client, job_id)
    assert status == 200
    assert (job["status"], job["status_code"]) == ("failed", 400)
    assert "result" not in job
    error = job["error"]
    assert (error["is_bifrost_error"], error["status_code"], error["type"]) == (False, 400, "invalid_request_error")
    detail = error["error"]
    assert (detail["type"], detail["code"], detail["param"]) == (
        "invalid_request_error",
        "invalid_value",
        "messages[0].role",
    )
    assert detail["message"] == upstream["error"]["message"]
    assert detail["event_id"] == error["event_id"]
    assert error["extra_fields"] == {
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "request_type": "chat_completion",
    }
    assert len(fake.requests) == 1
    assert aws_stack.queued_messages() == 0


def test_openai_503_is_retried_in_process_then_handed_back_to_the_queue(
    client: Client, aws_stack: AwsStack, fake: OpenAIFake
) -> None:
    fake.script_error(UPSTREAM, 503)
    job_id = submit(client, chat_body())

    assert aws_stack.run_worker() == 1

    assert len(fake.requests_to(UPSTREAM)) == INLINE_RETRIES + 1
    status, job, headers = poll(client, job_id)
    assert (status, job["status"]) == (202, "pending")
    assert "Retry-After" in headers
    assert aws_stack.queued_messages() == 1
    item = aws_stack.item(job_id)
    assert item is not None and item["attempts"]["N"] == "1"


def test_handed_back_job_completes_on_redelivery_once_openai_recovers(
    client: Client, aws_stack: AwsStack, fake: OpenAIFake
) -> None:
    fake.script_error(UPSTREAM, 503, times=INLINE_RETRIES + 1)
    job_id = submit(client, chat_body())
    deliver_once_then_return_the_message(aws_stack)

    assert aws_stack.run_worker() == 1

    assert len(fake.requests_to(UPSTREAM)) == INLINE_RETRIES + 2
    status, job, _ = poll(client, job_id)
    assert (status, job["status"], job["status_code"]) == (200, "completed", 200)
    assert job["result"]["model"] == "gpt-4o-mini"
    assert aws_stack.queued_messages() == 0


def test_openai_503_on_the_last_attempt_fails_the_job_with_503(
    client: Client, aws_stack: AwsStack, fake: OpenAIFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCGATE_MAX_ATTEMPTS", "2")
    fake.script_error(UPSTREAM, 503)
    job_id = submit(client, chat_body())
    deliver_once_then_return_the_message(aws_stack)

    assert aws_stack.run_worker() == 1

    assert len(fake.requests_to(UPSTREAM)) == 2 * (INLINE_RETRIES + 1)
    status, job, _ = poll(client, job_id)
    assert (status, job["status"], job["status_code"]) == (200, "failed", 503)
    assert (job["error"]["is_bifrost_error"], job["error"]["error"]["type"]) == (False, "server_error")
    assert job["error"]["extra_fields"]["provider"] == "openai"
    assert aws_stack.queued_messages() == 0
