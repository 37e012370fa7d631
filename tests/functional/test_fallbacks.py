"""Fallbacks through the API, the queue and the worker, with the mock provider's failure models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from tests.support.aws import AwsStack

SUBMIT = "/v1/async/chat/completions"
JSON = {"Content-Type": "application/json"}


def submit(client: Client, body: dict[str, Any]) -> Any:
    return client.http.post(SUBMIT, headers=JSON, body=json.dumps(body))


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


def test_a_failing_primary_is_served_by_its_fallback(client: Client, aws_stack: AwsStack) -> None:
    job_id = submit(client, chat("mock/fail-503", fallbacks=["mock/fail-404", "mock/echo"])).json_body["id"]

    aws_stack.run_worker()

    polled = client.http.get(f"{SUBMIT}/{job_id}").json_body
    assert polled["status"] == "completed"
    assert polled["result"]["extra_fields"]["provider"] == "mock"
    assert polled["result"]["extra_fields"]["model_requested"] == "echo"
    assert polled["result"]["choices"][0]["message"]["content"] == "hello"


def test_an_invalid_request_error_does_not_reach_the_fallback(client: Client, aws_stack: AwsStack) -> None:
    job_id = submit(client, chat("mock/fail-400", fallbacks=["mock/echo"])).json_body["id"]

    aws_stack.run_worker()

    polled = client.http.get(f"{SUBMIT}/{job_id}").json_body
    assert (polled["status"], polled["status_code"]) == ("failed", 400)
    assert polled["error"]["extra_fields"]["model_requested"] == "fail-400"


@pytest.mark.parametrize(
    "fallbacks",
    ["mock/echo", ["mock-echo"], ["nowhere/model"], [42], ["mock/echo", ""], ["anthropic/claude-sonnet-4-5"]],
    ids=["not-a-list", "no-slash", "unknown-provider", "not-a-string", "empty", "type-not-served"],
)
def test_malformed_fallbacks_are_refused_and_nothing_is_stored(
    client: Client, aws_stack: AwsStack, fallbacks: Any
) -> None:
    response = client.http.post(
        "/v1/async/rerank",
        headers=JSON,
        body=json.dumps({"model": "mock/echo", "query": "q", "documents": ["d"], "fallbacks": fallbacks}),
    )

    assert response.status_code == 400
    assert response.json_body["error"]["param"] == "fallbacks"
    assert aws_stack.item_count() == 0
    assert aws_stack.queued_messages() == 0
