"""End to end: the local stack in a subprocess (moto, HTTP API, SQS pollers, worker) over HTTP.

One stack serves most of the module; a second one runs with fast retry knobs for the
retry and requeue paths, and a third is started only to be stopped with SIGINT.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.support.local_stack import LocalStackProcess, local_stack

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}
POLL_INTERVAL_S = 0.05
NOT_FOUND_MESSAGE = "job not found or expired"
FAST_RETRIES = {
    "ASYNCGATE_RETRY_BASE_SECONDS": "0.01",
    "ASYNCGATE_REQUEUE_BASE_SECONDS": "1",
    "ASYNCGATE_REQUEUE_MAX_SECONDS": "1",
    "ASYNCGATE_MAX_ATTEMPTS": "3",
}
CHAT_PATH = "/v1/async/chat/completions"
UNKNOWN_ID = "3f0b8c52-8d57-4c0e-9b6f-0f2d4c1e7a90"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStackProcess]:
    with local_stack() as running:
        yield running


@pytest.fixture(scope="module")
def retry_stack() -> Iterator[LocalStackProcess]:
    with local_stack(FAST_RETRIES) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def chat_body(model: str, text: str = "hello") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def submit(
    http: requests.Session, stack: LocalStackProcess, path: str, body: dict[str, Any], ttl: str | None = None
) -> requests.Response:
    headers = dict(JSON)
    if ttl is not None:
        headers["x-bf-async-job-result-ttl"] = ttl
    response = http.post(stack.url(path), json=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text
    return response


def wait_until_finished(http: requests.Session, url: str, timeout_s: float) -> requests.Response:
    """Poll every 50 ms until the poll answers 200; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = http.get(url, timeout=10)
        if response.status_code != 202:
            return response
        if time.monotonic() > deadline:
            pytest.fail(f"job still open after {timeout_s}s: {response.text}")
        time.sleep(POLL_INTERVAL_S)


def run_job(
    http: requests.Session,
    stack: LocalStackProcess,
    path: str,
    body: dict[str, Any],
    timeout_s: float = 10.0,
    ttl: str | None = None,
) -> dict[str, Any]:
    submitted = submit(http, stack, path, body, ttl)
    finished = wait_until_finished(http, stack.url(submitted.headers["Location"]), timeout_s)
    assert finished.status_code == 200, finished.text
    job: dict[str, Any] = finished.json()
    assert job["id"] == submitted.json()["id"]
    return job


def parse_time(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text[:-1] + "+00:00")


def assert_not_found_body(response: requests.Response) -> None:
    assert response.status_code == 404
    body = response.json()
    assert body["is_bifrost_error"] is True
    assert body["status_code"] == 404
    assert body["event_id"]
    assert body["type"] == body["error"]["type"]
    assert body["error"]["message"] == NOT_FOUND_MESSAGE
    assert body["error"]["event_id"] == body["event_id"]


def test_echo_chat_job_is_accepted_then_completed_within_two_seconds(
    stack: LocalStackProcess, http: requests.Session
) -> None:
    started = time.monotonic()
    submitted = submit(http, stack, CHAT_PATH, chat_body("mock/echo"))
    job_id = submitted.json()["id"]
    assert submitted.json()["status"] == "pending"
    assert set(submitted.json()) == {"id", "status", "created_at"}
    assert uuid.UUID(job_id).version == 4
    assert submitted.headers["Location"] == f"{CHAT_PATH}/{job_id}"
    assert int(submitted.headers["Retry-After"]) >= 1

    finished = wait_until_finished(http, stack.url(submitted.headers["Location"]), timeout_s=10)
    elapsed = time.monotonic() - started
    print(f"mock/echo submit-to-completed: {elapsed * 1000:.0f} ms")

    assert finished.status_code == 200
    assert elapsed < 2.0
    job = finished.json()
    assert job["status"] == "completed"
    assert job["status_code"] == 200
    assert "error" not in job
    created, completed, expires = (parse_time(job[k]) for k in ("created_at", "completed_at", "expires_at"))
    assert created <= completed
    assert (expires - completed).total_seconds() == pytest.approx(3600, abs=0.01)
    result = job["result"]
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "hello", "refusal": None}
    assert set(result["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert result["extra_fields"]["provider"] == "mock"
    assert result["extra_fields"]["model_requested"] == "echo"
    assert result["extra_fields"]["request_type"] == "chat_completion"
    assert isinstance(result["extra_fields"]["latency_ms"], int)


def check_completion(result: dict[str, Any]) -> None:
    assert result["object"] == "text_completion"
    assert result["choices"][0]["text"] == "hello"


def check_chat(result: dict[str, Any]) -> None:
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["role"] == "assistant"


def check_responses(result: dict[str, Any]) -> None:
    assert result["object"] == "response"
    assert result["output"][0]["content"][0]["type"] == "output_text"


def check_embedding(result: dict[str, Any]) -> None:
    assert result["object"] == "list"
    assert result["data"][0]["object"] == "embedding"
    vector = result["data"][0]["embedding"]
    assert vector and all(isinstance(v, float) for v in vector)


def check_speech(result: dict[str, Any]) -> None:
    assert base64.b64decode(result["audio"])[:4] == b"RIFF"


def check_image(result: dict[str, Any]) -> None:
    assert base64.b64decode(result["data"][0]["b64_json"])[:8] == b"\x89PNG\r\n\x1a\n"


def check_rerank(result: dict[str, Any]) -> None:
    assert [r["index"] for r in result["results"]] == [0, 1]
    assert result["results"][0]["relevance_score"] > result["results"][1]["relevance_score"]


def check_ocr(result: dict[str, Any]) -> None:
    assert result["pages"][0]["index"] == 0
    assert isinstance(result["pages"][0]["markdown"], str)


ResultCheck = Callable[[dict[str, Any]], None]
JSON_TYPES: list[tuple[str, str, dict[str, Any], ResultCheck]] = [
    ("completions", "text_completion", {"prompt": "hello"}, check_completion),
    ("chat/completions", "chat_completion", {"messages": [{"role": "user", "content": "hi"}]}, check_chat),
    ("responses", "responses", {"input": "hello"}, check_responses),
    ("embeddings", "embedding", {"input": "hello"}, check_embedding),
    ("audio/speech", "speech", {"input": "hello", "voice": "alloy"}, check_speech),
    ("images/generations", "image_generation", {"prompt": "a red square"}, check_image),
    ("rerank", "rerank", {"query": "red fox", "documents": ["the red fox", "blue sky"]}, check_rerank),
    (
        "ocr",
        "ocr",
        {"document": {"type": "document_url", "document_url": "https://example.com/scan.pdf"}},
        check_ocr,
    ),
]


@pytest.mark.parametrize(("path", "request_type", "fields", "check"), JSON_TYPES, ids=[t[0] for t in JSON_TYPES])
def test_each_json_request_type_completes_with_its_result_shape(
    stack: LocalStackProcess,
    http: requests.Session,
    path: str,
    request_type: str,
    fields: dict[str, Any],
    check: ResultCheck,
) -> None:
    job = run_job(http, stack, f"/v1/async/{path}", {"model": "mock/echo", **fields})

    assert job["status"] == "completed"
    assert job["status_code"] == 200
    check(job["result"])
    assert job["result"]["extra_fields"]["request_type"] == request_type
    assert job["result"]["extra_fields"]["provider"] == "mock"


def test_result_with_one_second_ttl_is_served_then_expires(stack: LocalStackProcess, http: requests.Session) -> None:
    job = run_job(http, stack, CHAT_PATH, chat_body("mock/echo"), ttl="1")
    expires_at = parse_time(job["expires_at"])
    assert (expires_at - parse_time(job["completed_at"])).total_seconds() == pytest.approx(1, abs=0.01)

    wait = (expires_at - datetime.now(UTC)).total_seconds() + 0.2
    time.sleep(max(0.0, wait))

    assert_not_found_body(http.get(stack.url(f"{CHAT_PATH}/{job['id']}"), timeout=10))


@pytest.mark.parametrize("job_id", [UNKNOWN_ID, "not-a-uuid"], ids=["unknown-uuid", "not-a-uuid"])
def test_unknown_job_id_answers_404_not_found_body(
    stack: LocalStackProcess, http: requests.Session, job_id: str
) -> None:
    assert_not_found_body(http.get(stack.url(f"{CHAT_PATH}/{job_id}"), timeout=10))


def test_job_polled_on_another_types_path_answers_404(stack: LocalStackProcess, http: requests.Session) -> None:
    job = run_job(http, stack, CHAT_PATH, chat_body("mock/echo"))

    assert_not_found_body(http.get(stack.url(f"/v1/async/embeddings/{job['id']}"), timeout=10))


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", CHAT_PATH), ("DELETE", "/health"), ("PUT", f"{CHAT_PATH}/{UNKNOWN_ID}")],
)
def test_method_a_path_does_not_serve_answers_405(
    stack: LocalStackProcess, http: requests.Session, method: str, path: str
) -> None:
    response = http.request(method, stack.url(path), timeout=10)

    assert response.status_code == 405
    body = response.json()
    assert body["status_code"] == 405
    assert body["is_bifrost_error"] is True
    assert body["error"]["code"] == "method_not_allowed"


def test_unknown_path_answers_404_error_body(stack: LocalStackProcess, http: requests.Session) -> None:
    response = http.get(stack.url("/v1/async/nonsense"), timeout=10)

    assert response.status_code == 404
    body = response.json()
    assert body["status_code"] == 404
    assert body["is_bifrost_error"] is True
    assert body["error"]["message"]


def test_health_answers_200_ok(stack: LocalStackProcess, http: requests.Session) -> None:
    response = http.get(stack.url("/health"), timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_provider_400_ends_the_job_failed_with_the_providers_status(
    stack: LocalStackProcess, http: requests.Session
) -> None:
    job = run_job(http, stack, CHAT_PATH, chat_body("mock/fail-400"))

    assert job["status"] == "failed"
    assert job["status_code"] == 400
    assert "result" not in job
    assert job["completed_at"] and job["expires_at"]
    error = job["error"]
    assert error["is_bifrost_error"] is False
    assert error["status_code"] == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] == "invalid_value"
    expected_extra = {"provider": "mock", "model_requested": "fail-400", "request_type": "chat_completion"}
    assert error["extra_fields"] == expected_extra


def test_slow_job_answers_202_while_running_then_completes(stack: LocalStackProcess, http: requests.Session) -> None:
    submitted = submit(http, stack, CHAT_PATH, chat_body("mock/sleep-1500ms"))
    url = stack.url(submitted.headers["Location"])

    # The provider sleeps 1.5 s after the claim, so the job is open for at least 1.5 s after submit.
    seen: set[str] = set()
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        running = http.get(url, timeout=10)
        assert running.status_code == 202
        assert int(running.headers["Retry-After"]) >= 1
        body = running.json()
        assert set(body) == {"id", "status", "created_at"}
        seen.add(body["status"])
        time.sleep(0.1)
    assert seen <= {"pending", "processing"}
    assert "processing" in seen

    finished = wait_until_finished(http, url, timeout_s=10)
    assert finished.status_code == 200
    assert finished.json()["status"] == "completed"


def test_provider_503_on_every_attempt_ends_failed_with_503(
    retry_stack: LocalStackProcess, http: requests.Session
) -> None:
    job = run_job(http, retry_stack, CHAT_PATH, chat_body("mock/fail-503"), timeout_s=20)

    assert job["status"] == "failed"
    assert job["status_code"] == 503
    assert job["error"]["is_bifrost_error"] is False
    assert job["error"]["status_code"] == 503
    assert job["error"]["error"]["type"] == "server_error"


def test_flaky_provider_job_completes_after_a_requeue(retry_stack: LocalStackProcess, http: requests.Session) -> None:
    started = time.monotonic()
    job = run_job(http, retry_stack, CHAT_PATH, chat_body("mock/flaky-1"), timeout_s=20)
    elapsed = time.monotonic() - started

    assert job["status"] == "completed"
    assert job["status_code"] == 200
    assert job["result"]["object"] == "chat.completion"
    # The first delivery fails every inline retry; the message comes back after its
    # requeue delay (at least 1 s), so completion cannot come sooner.
    assert elapsed >= 0.9


def test_sigint_stops_the_stack_cleanly_within_ten_seconds(http: requests.Session) -> None:
    running = LocalStackProcess().start()
    try:
        job = run_job(http, running, CHAT_PATH, chat_body("mock/echo"))
        assert job["status"] == "completed"
    finally:
        stopped = running.stop()

    assert stopped.returncode == 0, stopped.output
    assert stopped.stop_seconds < 10
    assert "Traceback" not in stopped.output
    with pytest.raises(requests.ConnectionError):
        requests.get(running.url("/health"), timeout=2)
