"""The OpenAI adapter through the real transport against a fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import openai
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv
from chalicelib.providers.credentials import KeyRing
from chalicelib.providers.registry import ProviderRegistry
from chalicelib.providers.transport import HttpResponse, HttpTransport
from tests.fakes import FakeClock
from tests.support.fake_http import closed_port
from tests.support.openai_fake import PNG_PIXEL, SPEECH_AUDIO, OpenAIFake, embedding_vector, error_body

API_KEY = "sk-test-4f1c9a7e2b6d8035"
CHAT = "/chat/completions"


class CountingTransport(HttpTransport):
    """The real transport, counting the calls that reach it."""

    def __init__(self) -> None:
        super().__init__(1.0, 1.0)
        self.calls = 0

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> HttpResponse:
        self.calls += 1
        return super().request(method, url, headers=headers, json_body=json_body, data=data, files=files)


@pytest.fixture
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake(api_key=API_KEY) as server:
        yield server


class KeyedProvider:
    """The adapter as the worker drives it: each call carries the key the registry picks."""

    def __init__(self, registry: ProviderRegistry) -> None:
        self._registry = registry

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        key = self._registry.keys_for("openai")[0]
        return self._registry.get("openai").invoke(replace(call, api_key=key))


def build(
    base_url: str | None,
    api_key: str | None = API_KEY,
    read_timeout_s: float = 5.0,
    transport: HttpTransport | None = None,
) -> Provider:
    given = {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": api_key}
    environ = {name: value for name, value in given.items() if value is not None}
    env = ProviderEnv(Settings(), environ, transport or HttpTransport(1.0, read_timeout_s), FakeClock())
    return KeyedProvider(ProviderRegistry([openai.SPEC], lambda: env, lambda: KeyRing(environ)))


def chat_call(**extra: Any) -> ProviderCall:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    return ProviderCall(RequestType.CHAT_COMPLETION, "gpt-4o-mini", body)


def invoke_failing(provider: Provider, call: ProviderCall, secret: str = API_KEY) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.invoke(call)
    error = caught.value
    body = json.dumps(error.to_body("evt-1", {"provider": "openai", "model_requested": call.model}))
    assert secret not in str(error)
    assert secret not in body
    return error


# --- each request type: the request sent and the result returned ----------------------------------------


@dataclass(frozen=True)
class Case:
    request_type: RequestType
    path: str
    body: dict[str, Any]
    check: Callable[[dict[str, Any]], None]


def check_chat(result: dict[str, Any]) -> None:
    assert (result["object"], result["model"]) == ("chat.completion", "gpt-4o-mini")
    choice = result["choices"][0]
    assert (choice["index"], choice["finish_reason"]) == (0, "stop")
    assert (choice["message"]["role"], choice["message"]["content"]) == ("assistant", "Say hello")
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def check_completion(result: dict[str, Any]) -> None:
    assert (result["object"], result["model"]) == ("text_completion", "gpt-3.5-turbo-instruct")
    assert result["choices"][0]["text"] == "Once upon a time"
    assert result["choices"][0]["finish_reason"] == "stop"


def check_responses(result: dict[str, Any]) -> None:
    assert (result["object"], result["model"], result["status"]) == ("response", "gpt-4.1-mini", "completed")
    message = result["output"][0]
    assert (message["type"], message["role"]) == ("message", "assistant")
    assert message["content"][0] == {"type": "output_text", "text": "Write a haiku", "annotations": []}
    assert set(result["usage"]) >= {"input_tokens", "output_tokens", "total_tokens"}


def check_embedding(result: dict[str, Any]) -> None:
    assert (result["object"], result["model"]) == ("list", "text-embedding-3-small")
    assert [item["object"] for item in result["data"]] == ["embedding", "embedding"]
    assert [item["index"] for item in result["data"]] == [0, 1]
    assert result["data"][1]["embedding"] == embedding_vector("second", 4)
    assert result["usage"]["prompt_tokens"] == result["usage"]["total_tokens"]


def check_speech(result: dict[str, Any]) -> None:
    assert result == {"audio": base64.b64encode(SPEECH_AUDIO).decode("ascii"), "content_type": "audio/mpeg"}


def check_images(result: dict[str, Any]) -> None:
    assert isinstance(result["created"], int)
    assert [base64.b64decode(item["b64_json"]) for item in result["data"]] == [PNG_PIXEL, PNG_PIXEL]


CASES = [
    Case(
        RequestType.CHAT_COMPLETION,
        "/chat/completions",
        {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello"}],
            "temperature": 0.2,
            "max_completion_tokens": 64,
            "response_format": {"type": "text"},
            "user": "user-42",
            "stream": False,
        },
        check_chat,
    ),
    Case(
        RequestType.TEXT_COMPLETION,
        "/completions",
        {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Once upon a time", "max_tokens": 16, "suffix": "."},
        check_completion,
    ),
    Case(
        RequestType.RESPONSES,
        "/responses",
        {
            "model": "openai/gpt-4.1-mini",
            "input": "Write a haiku",
            "instructions": "Be poetic.",
            "max_output_tokens": 50,
            "metadata": {"ticket": "T-1"},
            "store": False,
        },
        check_responses,
    ),
    Case(
        RequestType.EMBEDDING,
        "/embeddings",
        {
            "model": "openai/text-embedding-3-small",
            "input": ["first", "second"],
            "dimensions": 4,
            "encoding_format": "float",
            "user": "user-42",
        },
        check_embedding,
    ),
    Case(
        RequestType.SPEECH,
        "/audio/speech",
        {
            "model": "openai/gpt-4o-mini-tts",
            "input": "Hello there",
            "voice": "alloy",
            "response_format": "mp3",
            "speed": 1.25,
            "instructions": "Cheerful.",
        },
        check_speech,
    ),
    Case(
        RequestType.IMAGE_GENERATION,
        "/images/generations",
        {"model": "openai/gpt-image-1", "prompt": "A red square", "n": 2, "size": "1024x1024", "quality": "low"},
        check_images,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.request_type.value for case in CASES])
def test_adapter_posts_client_body_with_bare_model_and_returns_openai_result(fake: OpenAIFake, case: Case) -> None:
    bare_model = case.body["model"].removeprefix("openai/")
    result = build(fake.base_url).invoke(ProviderCall(case.request_type, bare_model, case.body))

    [sent] = fake.requests
    assert sent.method == "POST"
    assert sent.path == "/v1" + case.path
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {**case.body, "model": bare_model}
    assert "fallbacks" not in sent.json
    case.check(result)


def test_speech_result_carries_the_content_type_the_provider_answered(fake: OpenAIFake) -> None:
    body = {"model": "openai/tts-1", "input": "Hi", "voice": "nova", "response_format": "opus"}
    result = build(fake.base_url).invoke(ProviderCall(RequestType.SPEECH, "tts-1", body))

    assert result == {"audio": base64.b64encode(SPEECH_AUDIO).decode("ascii"), "content_type": "audio/opus"}


def test_trailing_slash_in_base_url_does_not_double_the_path_separator(fake: OpenAIFake) -> None:
    build(fake.base_url + "/").invoke(chat_call())

    assert [r.path for r in fake.requests] == ["/v1/chat/completions"]


# --- errors the provider answers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    status: int
    body: dict[str, Any]
    retryable: bool
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None


RATE_LIMITED = error_body("Rate limit reached for gpt-4o-mini.", "requests", code="rate_limit_exceeded")
ERROR_CASES = {
    "400_with_param": ErrorCase(
        400,
        error_body("Invalid 'temperature'.", "invalid_request_error", "temperature", "decimal_above_max_value"),
        False,
    ),
    "404_model_not_found": ErrorCase(
        404,
        error_body("The model `gpt-9` does not exist.", "invalid_request_error", code="model_not_found"),
        retryable=False,
    ),
    "429_retry_after": ErrorCase(429, RATE_LIMITED, True, {"retry-after": "20"}, 20.0),
    "429_retry_after_ms": ErrorCase(429, RATE_LIMITED, True, {"retry-after-ms": "1500", "retry-after": "7"}, 1.5),
    "429_insufficient_quota": ErrorCase(
        429, error_body("You exceeded your current quota.", "insufficient_quota", code="insufficient_quota"), True
    ),
    "500": ErrorCase(500, error_body("The server had an error.", "server_error"), retryable=True),
    "503_retry_after": ErrorCase(503, error_body("Overloaded.", "server_error"), True, {"Retry-After": "3"}, 3.0),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=list(ERROR_CASES))
def test_provider_error_body_maps_to_provider_error_fields(fake: OpenAIFake, case: ErrorCase) -> None:
    fake.script_error(CHAT, case.status, case.body, case.headers)

    error = invoke_failing(build(fake.base_url), chat_call())

    detail = case.body["error"]
    assert (error.status, error.error_type) == (case.status, detail["type"])
    assert (error.code or None, error.param or None) == (detail["code"] or None, detail["param"] or None)
    assert error.message == detail["message"]
    assert error.retry_after_s == case.retry_after_s
    assert error.retryable is case.retryable
    assert error.is_bifrost_error is False


def test_provider_error_without_code_or_param_omits_them_from_the_job_error(fake: OpenAIFake) -> None:
    fake.script_error(CHAT, 500, error_body("The server had an error.", "server_error"))

    body = invoke_failing(build(fake.base_url), chat_call()).to_body("evt-1", {"provider": "openai"})

    assert (body["status_code"], body["is_bifrost_error"], body["type"]) == (500, False, "server_error")
    assert set(body["error"]) == {"type", "message", "event_id"}


def test_wrong_api_key_maps_to_401_invalid_api_key_without_leaking_the_key(fake: OpenAIFake) -> None:
    wrong = "sk-wrong-7d3e0b9c1a2f4e68"

    error = invoke_failing(build(fake.base_url, api_key=wrong), chat_call(), secret=wrong)

    assert (error.status, error.error_type, error.code) == (401, "invalid_request_error", "invalid_api_key")
    assert error.retryable is False
    assert fake.requests[0].headers["authorization"] == f"Bearer {wrong}"


def test_api_key_echoed_by_the_provider_is_redacted_from_the_error(fake: OpenAIFake) -> None:
    fake.script_error(CHAT, 401, error_body(f"Invalid API key: {API_KEY}", "invalid_request_error", code="bad_key"))

    error = invoke_failing(build(fake.base_url), chat_call())

    assert (error.status, error.code) == (401, "bad_key")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504])
def test_retryable_follows_openai_python_rule(fake: OpenAIFake, status: int) -> None:
    fake.script_error(CHAT, status)

    error = invoke_failing(build(fake.base_url), chat_call())

    assert error.status == status
    assert error.retryable is (status in (408, 409, 429) or status >= 500)


def test_non_json_error_body_keeps_the_status_and_a_default_type(fake: OpenAIFake) -> None:
    fake.script_raw(CHAT, 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", headers={"Retry-After": "4"})

    error = invoke_failing(build(fake.base_url), chat_call())

    assert (error.status, error.error_type, error.code, error.param) == (502, "server_error", "", None)
    assert error.message
    assert error.retry_after_s == 4.0
    assert error.retryable is True


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"<html>OK</html>", "text/html"), (b'[{"object": "list"}]', "application/json"), (b"", "application/json")],
    ids=["html", "json_array", "empty"],
)
def test_success_status_with_unusable_body_is_502_invalid_response(
    fake: OpenAIFake, content: bytes, content_type: str
) -> None:
    fake.script_raw(CHAT, 200, content, content_type)

    error = invoke_failing(build(fake.base_url), chat_call())

    assert (error.status, error.code) == (502, "invalid_response")


# --- failures to get an answer at all -----------------------------------------------------------------------


def test_read_timeout_is_504_provider_timeout(fake: OpenAIFake) -> None:
    fake.script_delay(CHAT, 5.0)

    error = invoke_failing(build(fake.base_url, read_timeout_s=0.2), chat_call())

    assert (error.status, error.error_type, error.code) == (504, "timeout_error", "provider_timeout")
    assert error.retryable is True
    assert len(fake.requests) == 1


def test_connection_refused_is_502_provider_unreachable() -> None:
    error = invoke_failing(build(f"http://127.0.0.1:{closed_port()}/v1"), chat_call())

    assert (error.status, error.code) == (502, "provider_unreachable")
    assert error.retryable is True


# --- credentials ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base_url", [None, "https://api.openai.com/v1", "https://api.openai.com/v1/"])
@pytest.mark.parametrize("api_key", [None, "", "   "])
def test_missing_key_for_openai_itself_is_401_without_any_http_call(base_url: str | None, api_key: str | None) -> None:
    transport = CountingTransport()

    error = invoke_failing(build(base_url, api_key=api_key, transport=transport), chat_call())

    assert (error.status, error.error_type, error.code) == (401, "authentication_error", "missing_api_key")
    assert error.retryable is False
    assert transport.calls == 0


@pytest.mark.parametrize("api_key", [None, "", "   "])
def test_missing_key_for_a_custom_base_url_sends_no_authorization(api_key: str | None) -> None:
    with OpenAIFake(api_key=None) as open_server:
        result = build(open_server.base_url, api_key=api_key).invoke(chat_call())

        [sent] = open_server.requests
    assert "authorization" not in sent.headers
    assert result["object"] == "chat.completion"
