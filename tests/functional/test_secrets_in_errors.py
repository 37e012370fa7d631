"""Provider error paths and secret reads never give a key away (issue 5, secrets hygiene).

Each test runs one job in process (Chalice test client, moto, the worker) against a fake
provider that fails in some way, with DEBUG logging captured for the gateway and botocore,
and then searches the stored job item, the poll body and the log for every configured
secret, verbatim or encoded. Secrets Manager values (provider keys, the admin token) are
created in moto before logging is captured, so only what the gateway itself logs is searched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import aws
from tests.support import gemini_fake
from tests.support.anthropic_fake import AnthropicFake
from tests.support.aws import AwsStack
from tests.support.fake_http import RecordedRequest, Reply, closed_port, json_reply
from tests.support.gemini_fake import GeminiFake
from tests.support.mistral_fake import MistralFake
from tests.support.openai_fake import OpenAIFake, error_body
from tests.support.secret_scan import flatten, leaks, log_text

OPENAI_KEY = "sk-proj-Hyg13ne+Op3nAI/key=7c2e9b41d0"
SPARE_KEY = "sk-proj-Hyg13ne+Sp4re/key=a81f3c6d52"
GROQ_KEY = "gsk_Hyg13ne+Groq/key=0f9d2a7e44b1"
ADMIN_TOKEN = "adm-Hyg13ne+Token/value=5d8e1c0b9a"
SUBMIT = "/v1/async/chat/completions"
JSON = {"Content-Type": "application/json"}
APP_LOGGERS = ("chalicelib", "asyncgate", "urllib3")
ALL_LOGGERS = (*APP_LOGGERS, "botocore")
FAIL_FAST = {
    "ASYNCGATE_MAX_ATTEMPTS": "1",
    "ASYNCGATE_INLINE_RETRIES": "0",
    "ASYNCGATE_PROVIDER_READ_TIMEOUT": "0.5",
    "ASYNCGATE_PROVIDER_CONNECT_TIMEOUT": "0.5",
    "ASYNCGATE_MIN_CALL_SECONDS": "0",
}
SECRETS = {"openai key": OPENAI_KEY, "spare key": SPARE_KEY, "groq key": GROQ_KEY, "admin token": ADMIN_TOKEN}


@pytest.fixture
def fake(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIFake]:
    """An OpenAI fake accepting ``OPENAI_KEY``, wired in before the first request builds the graph."""
    with OpenAIFake(api_key=OPENAI_KEY) as server:
        for name, value in {**server.environ(), **FAIL_FAST}.items():
            monkeypatch.setenv(name, value)
        yield server


def capture(caplog: pytest.LogCaptureFixture, loggers: tuple[str, ...] = ALL_LOGGERS) -> None:
    for name in loggers:
        caplog.set_level(logging.DEBUG, logger=name)


def chat(model: str = "openai/gpt-4o-mini") -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]})


def run_job(client: Client, aws_stack: AwsStack, model: str = "openai/gpt-4o-mini") -> tuple[str, dict[str, Any]]:
    """Submit, let the worker run the job to its end, poll; the poll body (text) and the stored item."""
    submitted = client.http.post(SUBMIT, headers=JSON, body=chat(model))
    assert submitted.status_code == 202, submitted.body
    job_id = submitted.json_body["id"]
    assert aws_stack.run_worker() >= 1
    aws_stack.make_all_visible()  # a delivery handed back (a crashed attempt) runs again at once
    aws_stack.run_worker()
    polled = client.http.get(f"{SUBMIT}/{job_id}")
    assert polled.status_code == 200, polled.body
    item = aws_stack.item(job_id)
    assert item is not None
    return submitted.body.decode() + polled.body.decode(), item


def corpus(bodies: str, item: dict[str, Any], caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    return {"responses": bodies, "job item": flatten(item), "log": log_text(caplog.records)}


def stored_error(item: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(item["error"]["S"])
    return error


def put_secret(name: str, value: str) -> None:
    aws.client("secretsmanager").create_secret(Name=name, SecretString=value)


class KeyEchoingFake(OpenAIFake):
    """Refuses every key, quoting the ``Authorization`` header it received."""

    def authorize(self, request: RecordedRequest) -> Reply | None:
        return json_reply(401, error_body(f"revoked: {request.headers.get('authorization')}", "auth"))


@pytest.mark.parametrize("status", [401, 403, 400])
def test_provider_error_echoing_the_key_in_its_message_is_stored_and_served_without_it(
    client: Client, aws_stack: AwsStack, fake: OpenAIFake, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    message = f"Incorrect API key provided: {OPENAI_KEY}. Sent: Authorization: Bearer {OPENAI_KEY}"
    fake.script_error("/chat/completions", status, error_body(message, "invalid_request_error"))
    capture(caplog)

    bodies, item = run_job(client, aws_stack)

    assert item["status"]["S"] == "failed"
    assert stored_error(item)["status_code"] == status
    assert leaks(SECRETS, corpus(bodies, item, caplog)) == []


def test_every_key_of_a_rotation_is_kept_out_of_the_error_when_each_is_echoed(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with KeyEchoingFake() as echoing:
        monkeypatch.setenv("OPENAI_BASE_URL", echoing.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", f"{OPENAI_KEY},{SPARE_KEY}")
        for name, value in FAIL_FAST.items():
            monkeypatch.setenv(name, value)
        capture(caplog)

        bodies, item = run_job(client, aws_stack)

        sent = {request.headers["authorization"] for request in echoing.requests}
    assert sent == {f"Bearer {OPENAI_KEY}", f"Bearer {SPARE_KEY}"}  # both keys were tried
    assert stored_error(item)["status_code"] == 401
    assert leaks(SECRETS, corpus(bodies, item, caplog)) == []


EchoFake = OpenAIFake | MistralFake | GeminiFake | AnthropicFake
ECHOED_FIELDS = {"message": "denied", "type": OPENAI_KEY, "code": OPENAI_KEY, "param": OPENAI_KEY}


def script_echo_everywhere(provider: str, fake: EchoFake) -> None:
    """A 401 whose every error field but the message is the caller's key, in the provider's own shape."""
    if provider == "openai":
        fake.script_json("/chat/completions", 401, {"error": ECHOED_FIELDS})
    elif provider == "mistral":
        fake.script_json("/chat/completions", 401, ECHOED_FIELDS)
    elif provider == "gemini":
        details = (gemini_fake.error_info(OPENAI_KEY), gemini_fake.bad_request("bad", OPENAI_KEY))
        body = gemini_fake.error_body(401, "denied", *details, status=OPENAI_KEY)
        fake.script_json(gemini_fake.generate_path("gemini-2.0-flash"), 401, body)
    else:
        fake.script_json("/messages", 401, {"type": "error", "error": {"type": OPENAI_KEY, "message": "denied"}})


ECHO_FAKES: dict[str, tuple[Callable[[], EchoFake], str]] = {
    "openai": (lambda: OpenAIFake(api_key=OPENAI_KEY), "openai/gpt-4o-mini"),
    "mistral": (lambda: MistralFake(api_key=OPENAI_KEY), "mistral/mistral-small-latest"),
    "gemini": (lambda: GeminiFake(api_key=OPENAI_KEY), "gemini/gemini-2.0-flash"),
    "anthropic": (lambda: AnthropicFake(api_key=OPENAI_KEY), "anthropic/claude-3-5-haiku-20241022"),
}


@pytest.mark.parametrize("provider", sorted(ECHO_FAKES))
def test_provider_error_echoing_the_key_in_type_code_or_param_keeps_it_out(
    client: Client,
    aws_stack: AwsStack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    provider: str,
) -> None:
    make, model = ECHO_FAKES[provider]
    with make() as fake:
        for name, value in {**fake.environ(), **FAIL_FAST}.items():
            monkeypatch.setenv(name, value)
        script_echo_everywhere(provider, fake)
        capture(caplog)

        bodies, item = run_job(client, aws_stack, model)

    assert stored_error(item)["status_code"] == 401
    assert leaks(SECRETS, corpus(bodies, item, caplog)) == []


def test_provider_timeout_fails_the_job_with_504_and_no_key_anywhere(
    client: Client, aws_stack: AwsStack, fake: OpenAIFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script_delay("/chat/completions", 3.0)
    capture(caplog)

    bodies, item = run_job(client, aws_stack)

    assert stored_error(item)["status_code"] == 504
    assert leaks(SECRETS, corpus(bodies, item, caplog)) == []


def test_unreachable_provider_fails_the_job_with_502_and_no_key_anywhere(
    client: Client,
    aws_stack: AwsStack,
    fake: OpenAIFake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    capture(caplog)

    bodies, item = run_job(client, aws_stack)

    assert stored_error(item)["status_code"] == 502
    assert leaks(SECRETS, corpus(bodies, item, caplog)) == []


@pytest.mark.parametrize(
    ("configured", "code"),
    [
        (f"{OPENAI_KEY}\nsk-proj-Hyg13ne-pasted-tail", "provider_request_failed"),
        (f"{OPENAI_KEY}\u2019", "attempts_exhausted"),
    ],
    ids=["newline-inside", "not-latin-1"],
)
def test_a_key_that_cannot_be_sent_fails_the_job_without_showing_it(
    client: Client,
    aws_stack: AwsStack,
    fake: OpenAIFake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    configured: str,
    code: str,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", configured)  # requests refuses the first; http.client the second
    capture(caplog)

    bodies, item = run_job(client, aws_stack)

    assert stored_error(item)["error"]["code"] == code
    assert fake.requests == []
    assert leaks({**SECRETS, "configured key": configured}, corpus(bodies, item, caplog)) == []


def test_missing_provider_key_names_the_variable_and_leaks_no_other_key(
    client: Client,
    aws_stack: AwsStack,
    fake: OpenAIFake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GROQ_BASE_URL", fake.base_url)
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    capture(caplog)

    bodies, item = run_job(client, aws_stack, "groq/llama-3.3-70b")

    error = stored_error(item)
    assert (error["status_code"], error["error"]["code"]) == (401, "missing_api_key")
    assert leaks(SECRETS, corpus(bodies, item, caplog)) == []


MALFORMED_SECRET = f"openai: {OPENAI_KEY}\ngroq: {GROQ_KEY}\n"


def test_malformed_provider_keys_secret_fails_the_job_without_showing_its_content(
    client: Client,
    aws_stack: AwsStack,
    fake: OpenAIFake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    put_secret("asyncgate/provider-keys", MALFORMED_SECRET)
    monkeypatch.setenv("ASYNCGATE_PROVIDER_KEYS_SECRET", "asyncgate/provider-keys")
    capture(caplog, APP_LOGGERS)

    bodies, item = run_job(client, aws_stack)

    error = stored_error(item)
    assert (error["status_code"], error["error"]["code"]) == (500, "provider_keys_invalid")
    assert fake.requests == []
    assert leaks(SECRETS, corpus(bodies, item, caplog)) == []


def test_admin_token_from_secrets_manager_never_appears_in_responses_or_gateway_logs(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    put_secret("asyncgate/admin-token", ADMIN_TOKEN)
    monkeypatch.setenv("ASYNCGATE_ADMIN_TOKEN_SECRET", "asyncgate/admin-token")
    capture(caplog, APP_LOGGERS)
    right, wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"}

    answers = [
        client.http.get("/api/keys", headers=wrong),
        client.http.get("/api/keys", headers={}),
        client.http.post("/api/keys", headers={**wrong, **JSON}, body=json.dumps({"name": "x"})),
        client.http.get("/api/keys", headers=right),
        client.http.get("/api/keys", headers={"Authorization": ADMIN_TOKEN}),
    ]

    assert [answer.status_code for answer in answers] == [401, 401, 401, 200, 401]
    texts = {f"response {i}": flatten([a.headers, a.body.decode()]) for i, a in enumerate(answers)}
    assert leaks(SECRETS, {**texts, "log": log_text(caplog.records)}) == []


@pytest.mark.parametrize(
    ("variable", "value", "model"),
    [
        ("ASYNCGATE_PROVIDER_KEYS_SECRET", json.dumps({"openai": OPENAI_KEY}), "openai/gpt-4o-mini"),
        ("ASYNCGATE_PROVIDER_KEYS_SECRET", MALFORMED_SECRET, "openai/gpt-4o-mini"),
        ("ASYNCGATE_ADMIN_TOKEN_SECRET", ADMIN_TOKEN, None),
    ],
    ids=["provider-keys", "malformed-provider-keys", "admin-token"],
)
def test_secrets_manager_values_never_reach_botocore_debug_logs(
    client: Client,
    aws_stack: AwsStack,
    fake: OpenAIFake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    model: str | None,
) -> None:
    put_secret("asyncgate/secret", value)
    monkeypatch.setenv(variable, "asyncgate/secret")
    monkeypatch.delenv("OPENAI_API_KEY")
    capture(caplog)

    if model is None:
        assert client.http.get("/api/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    else:
        run_job(client, aws_stack, model)

    assert leaks(SECRETS, {"log": log_text(caplog.records)}) == []
