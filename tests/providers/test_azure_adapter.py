"""The Azure OpenAI adapter through the real transport against a fake Azure OpenAI resource on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import azure
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv
from chalicelib.providers.transport import HttpResponse, HttpTransport
from tests.fakes import FakeClock
from tests.support.azure_fake import (
    DEPLOYMENT_NOT_FOUND,
    INVALID_KEY,
    RESPONSES_PATH,
    SAFE_FILTERS,
    AzureOpenAIFake,
    azure_error,
    deployment_path,
)
from tests.support.fake_http import closed_port
from tests.support.openai_fake import PNG_PIXEL, SPEECH_AUDIO, embedding_vector

API_KEY = "3f9c0a7e5b1d4c2a8e6f0b9d7c5a3e1f"
DEPLOYMENTS = {
    "chat4o": "gpt-4o-2024-11-20",
    "instruct": "gpt-35-turbo-instruct",
    "embed-small": "text-embedding-3-small",
    "tts": "tts-1",
    "images": "dall-e-3",
    "resp41": "gpt-4.1-mini-2025-04-14",
}
CHAT = deployment_path("chat4o")


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
def fake() -> Iterator[AzureOpenAIFake]:
    with AzureOpenAIFake(api_key=API_KEY, deployments=DEPLOYMENTS) as server:
        yield server


def build(environ: Mapping[str, str], read_timeout_s: float = 5.0, transport: HttpTransport | None = None) -> Provider:
    env = ProviderEnv(Settings(), dict(environ), transport or HttpTransport(1.0, read_timeout_s), FakeClock())
    return azure.SPEC.build(env)


def chat_call(deployment: str = "chat4o", api_key: str | None = API_KEY, **extra: Any) -> ProviderCall:
    body = {"model": f"azure/{deployment}", "messages": [{"role": "user", "content": "hi"}], **extra}
    return ProviderCall(RequestType.CHAT_COMPLETION, deployment, body, 1, api_key)


def invoke_failing(provider: Provider, call: ProviderCall, secret: str = API_KEY) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.invoke(call)
    error = caught.value
    body = json.dumps(error.to_body("evt-1", {"provider": "azure", "model_requested": call.model}))
    assert secret not in str(error)
    assert secret not in body
    assert error.is_bifrost_error is False
    return error


# --- each request type: the request sent and the result returned ---------------------------------------------


@dataclass(frozen=True)
class Case:
    request_type: RequestType
    deployment: str
    path: str
    body: dict[str, Any]
    check: Callable[[dict[str, Any]], None]


def check_chat(result: dict[str, Any]) -> None:
    assert (result["object"], result["model"]) == ("chat.completion", "gpt-4o-2024-11-20")
    choice = result["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == ("stop", "Say hello")
    assert choice["content_filter_results"] == SAFE_FILTERS
    assert result["prompt_filter_results"] == [{"prompt_index": 0, "content_filter_results": SAFE_FILTERS}]


def check_completion(result: dict[str, Any]) -> None:
    assert (result["object"], result["model"]) == ("text_completion", "gpt-35-turbo-instruct")
    assert result["choices"][0]["text"] == "Once upon a time"


def check_embedding(result: dict[str, Any]) -> None:
    assert (result["object"], result["model"]) == ("list", "text-embedding-3-small")
    assert [item["embedding"] for item in result["data"]] == [
        embedding_vector("first", 4),
        embedding_vector("second", 4),
    ]


def check_speech(result: dict[str, Any]) -> None:
    assert result == {"audio": base64.b64encode(SPEECH_AUDIO).decode("ascii"), "content_type": "audio/mpeg"}


def check_images(result: dict[str, Any]) -> None:
    assert [base64.b64decode(item["b64_json"]) for item in result["data"]] == [PNG_PIXEL]


CASES = [
    Case(
        RequestType.CHAT_COMPLETION,
        "chat4o",
        "chat/completions",
        {
            "model": "azure/chat4o",
            "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello"}],
            "temperature": 0.2,
            "max_completion_tokens": 64,
            "tools": [{"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}],
        },
        check_chat,
    ),
    Case(
        RequestType.TEXT_COMPLETION,
        "instruct",
        "completions",
        {"model": "azure/instruct", "prompt": "Once upon a time", "max_tokens": 16},
        check_completion,
    ),
    Case(
        RequestType.EMBEDDING,
        "embed-small",
        "embeddings",
        {"model": "azure/embed-small", "input": ["first", "second"], "dimensions": 4},
        check_embedding,
    ),
    Case(
        RequestType.SPEECH,
        "tts",
        "audio/speech",
        {"model": "azure/tts", "input": "Hello there", "voice": "alloy", "response_format": "mp3"},
        check_speech,
    ),
    Case(
        RequestType.IMAGE_GENERATION,
        "images",
        "images/generations",
        {"model": "azure/images", "prompt": "A red square", "n": 1, "size": "1024x1024"},
        check_images,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.request_type.value for case in CASES])
def test_adapter_posts_openai_body_to_the_deployment_url_with_api_key_and_version(
    fake: AzureOpenAIFake, case: Case
) -> None:
    call = ProviderCall(case.request_type, case.deployment, case.body, 1, API_KEY)

    result = build(fake.environ()).invoke(call)

    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", f"/openai/deployments/{case.deployment}/{case.path}")
    assert sent.query == {"api-version": ["2024-10-21"]}
    assert sent.headers["api-key"] == API_KEY
    assert "authorization" not in sent.headers
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {**case.body, "model": case.deployment}
    case.check(result)


def test_responses_post_to_the_resource_responses_path_with_the_deployment_in_the_body(fake: AzureOpenAIFake) -> None:
    body = {"model": "azure/resp41", "input": "Write a haiku", "instructions": "Be poetic.", "max_output_tokens": 50}

    result = build(fake.environ()).invoke(ProviderCall(RequestType.RESPONSES, "resp41", body, 1, API_KEY))

    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", RESPONSES_PATH)
    assert sent.query == {"api-version": ["2025-04-01-preview"]}
    assert sent.headers["api-key"] == API_KEY
    assert sent.json == {**body, "model": "resp41"}
    assert (result["object"], result["model"], result["status"]) == ("response", "gpt-4.1-mini-2025-04-14", "completed")
    assert result["output"][0]["content"][0]["text"] == "Write a haiku"


def test_api_versions_come_from_the_environment(fake: AzureOpenAIFake) -> None:
    environ = {**fake.environ(), "AZURE_API_VERSION": "2024-06-01", "AZURE_RESPONSES_API_VERSION": "2025-03-01-preview"}
    provider = build(environ)

    provider.invoke(chat_call())
    provider.invoke(ProviderCall(RequestType.RESPONSES, "resp41", {"input": "hi"}, 1, API_KEY))

    assert [r.query["api-version"] for r in fake.requests] == [["2024-06-01"], ["2025-03-01-preview"]]


@pytest.mark.parametrize("suffix", ["", "/", "/openai", "/openai/", "/openai/v1", "/openai/v1/"])
def test_resource_endpoint_forms_all_reach_the_same_path(fake: AzureOpenAIFake, suffix: str) -> None:
    build({**fake.environ(), "AZURE_BASE_URL": fake.base_url + suffix}).invoke(chat_call())

    assert [r.path for r in fake.requests] == ["/openai/deployments/chat4o/chat/completions"]


def test_deployment_name_is_path_encoded() -> None:
    with AzureOpenAIFake(api_key=API_KEY) as any_deployment:
        result = build(any_deployment.environ()).invoke(chat_call("team a/gpt 4o"))

        assert any_deployment.requests[0].path == "/openai/deployments/team%20a%2Fgpt%204o/chat/completions"
    assert result["object"] == "chat.completion"


def test_without_a_key_no_api_key_header_is_sent() -> None:
    with AzureOpenAIFake(api_key=None) as open_resource:
        build(open_resource.environ()).invoke(chat_call(api_key=None))

        [sent] = open_resource.requests
    assert "api-key" not in sent.headers
    assert "authorization" not in sent.headers


@pytest.mark.parametrize("base_url", [None, "", "   "])
def test_missing_base_url_is_a_non_retryable_configuration_error_without_any_call(base_url: str | None) -> None:
    transport = CountingTransport()
    environ = {"AZURE_API_KEY": API_KEY, **({"AZURE_BASE_URL": base_url} if base_url is not None else {})}

    error = invoke_failing(build(environ, transport=transport), chat_call())

    assert (error.status, error.error_type, error.code) == (400, "invalid_request_error", "provider_not_configured")
    assert "AZURE_BASE_URL" in error.message
    assert error.retryable is False
    assert transport.calls == 0


def test_spec_names_azure_keys_and_serves_openai_json_types() -> None:
    env = ProviderEnv(Settings(), {}, HttpTransport(1.0, 2.0), FakeClock())

    assert azure.SPEC.name == "azure"
    assert azure.SPEC.key_variables == ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY")
    assert azure.SPEC.key_required(env) is True
    assert azure.SPEC.request_types == {
        RequestType.CHAT_COMPLETION,
        RequestType.TEXT_COMPLETION,
        RequestType.RESPONSES,
        RequestType.EMBEDDING,
        RequestType.SPEECH,
        RequestType.IMAGE_GENERATION,
    }


# --- errors Azure answers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    status: int
    body: dict[str, Any]
    error_type: str
    code: str | None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None


RATE_LIMIT = (
    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded "
    "token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds."
)
FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry."
)
INNER = {
    "code": "ResponsibleAIPolicyViolation",
    "content_filter_result": {"hate": {"filtered": True, "severity": "medium"}},
}
ERROR_CASES = {
    "400_content_filter": ErrorCase(
        400,
        azure_error("content_filter", FILTERED, param="prompt", type=None, status=400, innererror=INNER),
        "invalid_request_error",
        "content_filter",
        "prompt",
    ),
    "400_with_param": ErrorCase(
        400,
        {
            "error": {
                "message": "Invalid value for 'temperature': must be at most 2.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "decimal_above_max_value",
            }
        },
        "invalid_request_error",
        "decimal_above_max_value",
        "temperature",
    ),
    "404_deployment_not_found": ErrorCase(
        404, azure_error("DeploymentNotFound", DEPLOYMENT_NOT_FOUND), "not_found_error", "DeploymentNotFound"
    ),
    "429_retry_after": ErrorCase(
        429, azure_error("429", RATE_LIMIT), "rate_limit_error", "429", headers={"retry-after": "6"}, retry_after_s=6.0
    ),
    "429_retry_after_ms": ErrorCase(
        429,
        azure_error("429", RATE_LIMIT),
        "rate_limit_error",
        "429",
        headers={"retry-after-ms": "5500", "retry-after": "6"},
        retry_after_s=5.5,
    ),
    "500": ErrorCase(
        500,
        azure_error("InternalServerError", "The server had an error while processing your request."),
        "server_error",
        "InternalServerError",
    ),
    "503_overloaded": ErrorCase(
        503,
        azure_error("ServiceUnavailable", "The service is temporarily unable to process your request."),
        "server_error",
        "ServiceUnavailable",
        headers={"Retry-After": "3"},
        retry_after_s=3.0,
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=list(ERROR_CASES))
def test_azure_error_body_maps_to_provider_error_fields(fake: AzureOpenAIFake, case: ErrorCase) -> None:
    fake.script_json(CHAT, case.status, case.body, case.headers)

    error = invoke_failing(build(fake.environ()), chat_call())

    assert (error.status, error.error_type) == (case.status, case.error_type)
    assert (error.code or None, error.param) == (case.code, case.param)
    assert error.message == case.body["error"]["message"]
    assert error.retry_after_s == case.retry_after_s
    assert error.retryable is (case.status in (408, 409, 429) or case.status >= 500)


def test_wrong_key_is_401_with_azure_message_and_no_key_in_the_error(fake: AzureOpenAIFake) -> None:
    wrong = "0000aaaa1111bbbb2222cccc3333dddd"

    error = invoke_failing(build(fake.environ()), chat_call(api_key=wrong), secret=wrong)

    assert (error.status, error.error_type, error.code, error.message) == (
        401,
        "authentication_error",
        "401",
        INVALID_KEY,
    )
    assert error.retryable is False
    assert fake.requests[0].headers["api-key"] == wrong


def test_unknown_deployment_is_404_deployment_not_found(fake: AzureOpenAIFake) -> None:
    error = invoke_failing(build(fake.environ()), chat_call("gpt-nope"))

    assert (error.status, error.code, error.retryable) == (404, "DeploymentNotFound", False)


def test_legacy_gateway_error_shape_keeps_its_message(fake: AzureOpenAIFake) -> None:
    fake.script_json(CHAT, 401, {"statusCode": 401, "message": INVALID_KEY})

    error = invoke_failing(build(fake.environ()), chat_call())

    assert (error.status, error.error_type, error.code, error.message) == (401, "authentication_error", "", INVALID_KEY)


def test_key_echoed_by_the_provider_is_redacted(fake: AzureOpenAIFake) -> None:
    fake.script_error(CHAT, 401, "401", f"Invalid subscription key {API_KEY}.")

    error = invoke_failing(build(fake.environ()), chat_call())

    assert (error.status, error.code) == (401, "401")


def test_non_json_error_body_keeps_the_status_and_a_default_type(fake: AzureOpenAIFake) -> None:
    fake.script_raw(CHAT, 502, b"<html><body>502 Bad Gateway</body></html>", headers={"Retry-After": "4"})

    error = invoke_failing(build(fake.environ()), chat_call())

    assert (error.status, error.error_type, error.code, error.param) == (502, "server_error", "", None)
    assert (error.retry_after_s, error.retryable) == (4.0, True)


@pytest.mark.parametrize("content", [b"<html>OK</html>", b"[]", b""], ids=["html", "json_array", "empty"])
def test_success_status_with_unusable_body_is_502_invalid_response(fake: AzureOpenAIFake, content: bytes) -> None:
    fake.script_raw(CHAT, 200, content, "application/json")

    error = invoke_failing(build(fake.environ()), chat_call())

    assert (error.status, error.code) == (502, "invalid_response")


def test_read_timeout_is_504_provider_timeout(fake: AzureOpenAIFake) -> None:
    fake.script_delay(CHAT, 5.0)

    error = invoke_failing(build(fake.environ(), read_timeout_s=0.2), chat_call())

    assert (error.status, error.code, error.retryable) == (504, "provider_timeout", True)


def test_connection_refused_is_502_provider_unreachable() -> None:
    error = invoke_failing(build({"AZURE_BASE_URL": f"http://127.0.0.1:{closed_port()}"}), chat_call())

    assert (error.status, error.code, error.retryable) == (502, "provider_unreachable", True)
