"""A submitted chat job runs through the queue and worker to a completed poll."""

from __future__ import annotations

import json

from chalice.test import Client

from tests.support.aws import AwsStack


def test_chat_job_completes_through_queue_and_worker(client: Client, aws_stack: AwsStack) -> None:
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": "hello"}]}
    submitted = client.http.post(
        "/v1/async/chat/completions", headers={"Content-Type": "application/json"}, body=json.dumps(body)
    )
    assert submitted.status_code == 202
    job_id = submitted.json_body["id"]

    assert aws_stack.run_worker() == 1

    polled = client.http.get(f"/v1/async/chat/completions/{job_id}")
    assert polled.status_code == 200
    assert polled.json_body["status"] == "completed"
    assert polled.json_body["result"]["choices"][0]["message"]["content"] == "hello"
