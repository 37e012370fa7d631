"""Gemini's error answers, failures to get one, credentials and the base URL, through a fake on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.contract import RequestType
from chalicelib.providers import gemini
from chalicelib.providers.base import Provider, ProviderCall
from chalicelib.providers.transport import HttpResponse, HttpTransport
from tests.support.fake_http import closed_port
from tests.support.gemini_fake import (
    DEFAULT_ERRORS,
    MISSING_MODEL,
    QUOTA_MESSAGE,
    GeminiFake,
    bad_request,
    batch_embed_path,
    error_body,
    error_info,
    gemini_provider,
    generate_path,
    invoke_failing,
    quota_failure,
    retry_info,
)

KEY = "AIzaSyTest-4f1c9a7e2b6d8035"
MODEL = "gemini-2.0-flash"
GENERATE = generate_path(MODEL)


@pytest.fixture
def fake() -> Iterator[GeminiFake]:
    with GeminiFake(api_key=KEY) as server:
        yield server


@pytest.fixture
def provider(fake: GeminiFake) -> Provider:
    return gemini_provider(fake.environ())


def chat_call(model: str = MODEL, api_key: str | None = KEY) -> ProviderCall:
    body = {"model": f"gemini/{model}", "messages": [{"role": "user", "content": "hi"}]}
    return ProviderCall(RequestType.CHAT_COMPLETION, model, body, api_key=api_key)


# --- Google's error bodies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    status: int
    body: dict[str, Any]
    error_type: str
    retryable: bool
    code: str = ""
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None


TEMPERATURE = "* GenerateContentRequest.generation_config.temperature: must be in the range [0.0, 2.0]\n"
UNKNOWN_FIELD = 'Invalid JSON payload received. Unknown name "foo": Cannot find field.'
LOCATION = "User location is not supported for the API use."
QUOTA = error_body(429, QUOTA_MESSAGE, quota_failure(), retry_info("7s"))
ERROR_CASES = {
    "400_field_violation": ErrorCase(
        400,
        error_body(400, TEMPERATURE, bad_request(TEMPERATURE, "generation_config.temperature")),
        "INVALID_ARGUMENT",
        False,
        param="generation_config.temperature",
    ),
    "400_violation_without_field": ErrorCase(
        400, error_body(400, UNKNOWN_FIELD, bad_request(UNKNOWN_FIELD)), "INVALID_ARGUMENT", False
    ),
    "400_failed_precondition": ErrorCase(
        400, error_body(400, LOCATION, status="FAILED_PRECONDITION"), "FAILED_PRECONDITION", False
    ),
    "403_permission_denied": ErrorCase(403, DEFAULT_ERRORS[403], "PERMISSION_DENIED", False),
    "404_not_found": ErrorCase(404, DEFAULT_ERRORS[404], "NOT_FOUND", False),
    "429_retry_info": ErrorCase(429, QUOTA, "RESOURCE_EXHAUSTED", True, retry_after_s=7.0),
    "429_retry_info_wins_over_header": ErrorCase(
        429, QUOTA, "RESOURCE_EXHAUSTED", True, headers={"Retry-After": "30"}, retry_after_s=7.0
    ),
    "429_fractional_retry_info": ErrorCase(
        429, error_body(429, "Quota exceeded.", retry_info("0.250s")), "RESOURCE_EXHAUSTED", True, retry_after_s=0.25
    ),
    "429_retry_after_header": ErrorCase(
        429,
        error_body(429, "Resource has been exhausted (e.g. check quota)."),
        "RESOURCE_EXHAUSTED",
        True,
        headers={"Retry-After": "20"},
        retry_after_s=20.0,
    ),
    "500_internal": ErrorCase(500, DEFAULT_ERRORS[500], "INTERNAL", True),
    "503_unavailable": ErrorCase(
        503, DEFAULT_ERRORS[503], "UNAVAILABLE", True, headers={"Retry-After": "3"}, retry_after_s=3.0
    ),
    "504_deadline_exceeded": ErrorCase(504, DEFAULT_ERRORS[504], "DEADLINE_EXCEEDED", True),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=list(ERROR_CASES))
def test_google_error_body_maps_to_provider_error_fields(fake: GeminiFake, provider: Provider, case: ErrorCase) -> None:
    fake.script_error(GENERATE, case.status, case.body, case.headers)

    error = invoke_failing(provider, chat_call())

    assert (error.status, error.error_type, error.code, error.param) == (
        case.status,
        case.error_type,
        case.code,
        case.param,
    )
    assert error.message == case.body["error"]["message"]
    assert error.retry_after_s == case.retry_after_s
    assert error.retryable is case.retryable
    assert error.is_bifrost_error is False


def test_job_error_body_carries_google_status_as_type_and_omits_empty_fields(
    fake: GeminiFake, provider: Provider
) -> None:
    fake.script_error(GENERATE, 503)

    body = invoke_failing(provider, chat_call()).to_body("evt-1", {"provider": "gemini"})

    assert (body["status_code"], body["type"], body["is_bifrost_error"]) == (503, "UNAVAILABLE", False)
    assert body["error"] == {
        "type": "UNAVAILABLE",
        "message": DEFAULT_ERRORS[503]["error"]["message"],
        "event_id": "evt-1",
    }


def test_unknown_model_is_404_not_found(fake: GeminiFake, provider: Provider) -> None:
    error = invoke_failing(provider, chat_call(MISSING_MODEL))

    assert (error.status, error.error_type, error.retryable) == (404, "NOT_FOUND", False)
    assert MISSING_MODEL in error.message


def test_embedding_errors_map_the_same_way(fake: GeminiFake, provider: Provider) -> None:
    fake.script_error(batch_embed_path("text-embedding-004"), 429, QUOTA)
    call = ProviderCall(RequestType.EMBEDDING, "text-embedding-004", {"input": ["a", "b"]}, api_key=KEY)

    error = invoke_failing(provider, call)

    assert (error.status, error.error_type, error.retry_after_s, error.retryable) == (
        429,
        "RESOURCE_EXHAUSTED",
        7.0,
        True,
    )


@pytest.mark.parametrize("status", [400, 403, 404, 409, 429, 500, 502, 503, 504])
def test_retryable_follows_the_status(fake: GeminiFake, provider: Provider, status: int) -> None:
    fake.script_error(GENERATE, status)

    error = invoke_failing(provider, chat_call())

    assert error.status == status
    assert error.retryable is (status in (408, 409, 429) or status >= 500)


def test_an_error_wrapped_in_a_json_array_is_still_read(fake: GeminiFake, provider: Provider) -> None:
    fake.script_json(GENERATE, 503, [error_body(503, "The model is overloaded.")])

    error = invoke_failing(provider, chat_call())

    assert (error.status, error.error_type, error.message) == (503, "UNAVAILABLE", "The model is overloaded.")


def test_non_json_error_body_keeps_the_status_and_a_default_type(fake: GeminiFake, provider: Provider) -> None:
    fake.script_raw(GENERATE, 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", headers={"Retry-After": "4"})

    error = invoke_failing(provider, chat_call())

    assert (error.status, error.error_type, error.code, error.param) == (502, "server_error", "", None)
    assert error.message
    assert (error.retry_after_s, error.retryable) == (4.0, True)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"<html>OK</html>", "text/html"),
        (b"[]", "application/json"),
        (b"", "application/json"),
        (b'{"candidates": "none"}', "application/json"),
        (b'{"candidates": [{"content": {"parts": ["text"]}}]}', "application/json"),
        (b'{"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]}', "application/json"),
        (b'{"usageMetadata": {"promptTokenCount": 3}}', "application/json"),
    ],
    ids=["html", "json_array", "empty", "candidates_not_list", "part_not_object", "call_without_name", "no_candidates"],
)
def test_success_status_with_unusable_body_is_502_invalid_response(
    fake: GeminiFake, provider: Provider, content: bytes, content_type: str
) -> None:
    fake.script_raw(GENERATE, 200, content, content_type)

    error = invoke_failing(provider, chat_call())

    assert (error.status, error.code, error.retryable) == (502, "invalid_response", True)


@pytest.mark.parametrize(
    "reply",
    [{"embeddings": [{"values": [0.1]}]}, {"embeddings": [{"values": "x"}, {}]}, {"embedding": {}}],
    ids=["too_few", "no_values", "wrong_shape"],
)
def test_unusable_embedding_reply_is_502_invalid_response(
    fake: GeminiFake, provider: Provider, reply: dict[str, Any]
) -> None:
    fake.script_json(batch_embed_path("text-embedding-004"), 200, reply)
    call = ProviderCall(RequestType.EMBEDDING, "text-embedding-004", {"input": ["a", "b"]}, api_key=KEY)

    error = invoke_failing(provider, call)

    assert (error.status, error.code) == (502, "invalid_response")


# --- credentials -----------------------------------------------------------------------------------------------


def test_wrong_key_is_google_400_api_key_invalid_without_leaking_the_key(fake: GeminiFake, provider: Provider) -> None:
    wrong = "AIzaSyWrong-7d3e0b9c1a2f4e68"

    error = invoke_failing(provider, chat_call(api_key=wrong))

    assert (error.status, error.error_type, error.code) == (400, "INVALID_ARGUMENT", "API_KEY_INVALID")
    assert error.retryable is False
    [sent] = fake.requests
    assert sent.headers["x-goog-api-key"] == wrong
    assert dict(sent.query) == {}


def test_no_key_sends_no_key_header_and_maps_google_403(fake: GeminiFake, provider: Provider) -> None:
    error = invoke_failing(provider, chat_call(api_key=None))

    assert (error.status, error.error_type, error.code) == (403, "PERMISSION_DENIED", "CONSUMER_INVALID")
    assert "x-goog-api-key" not in fake.requests[0].headers


def test_a_key_echoed_in_the_message_is_redacted(fake: GeminiFake, provider: Provider) -> None:
    fake.script_error(GENERATE, 400, error_body(400, f"API key {KEY} expired.", error_info("API_KEY_EXPIRED")))

    error = invoke_failing(provider, chat_call())

    assert (error.code, error.message) == ("API_KEY_EXPIRED", "API key [redacted] expired.")


def test_spec_names_gemini_keys_types_and_requires_a_key() -> None:
    assert gemini.SPEC.name == "gemini"
    assert gemini.SPEC.key_variables == ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    assert gemini.SPEC.request_types == {RequestType.CHAT_COMPLETION, RequestType.RESPONSES, RequestType.EMBEDDING}
    assert gemini.SPEC.key_required(None) is True  # type: ignore[arg-type]


# --- failures to get an answer at all ------------------------------------------------------------------------


def test_read_timeout_is_504_provider_timeout(fake: GeminiFake) -> None:
    fake.script_delay(GENERATE, 5.0)
    provider = gemini_provider(fake.environ(), HttpTransport(1.0, 0.2))

    error = invoke_failing(provider, chat_call())

    assert (error.status, error.error_type, error.code, error.retryable) == (
        504,
        "timeout_error",
        "provider_timeout",
        True,
    )


def test_connection_refused_is_502_provider_unreachable() -> None:
    provider = gemini_provider({"GEMINI_BASE_URL": f"http://127.0.0.1:{closed_port()}"})

    error = invoke_failing(provider, chat_call())

    assert (error.status, error.code, error.retryable) == (502, "provider_unreachable", True)


# --- base URL and paths ----------------------------------------------------------------------------------------


class RecordingTransport(HttpTransport):
    """Answers a canned Gemini reply without any network, recording the URLs asked for."""

    def __init__(self) -> None:
        super().__init__(1.0, 1.0)
        self.urls: list[str] = []

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
        self.urls.append(url)
        return HttpResponse(200, {}, b'{"candidates": [{"content": {"parts": [{"text": "ok"}]}}]}')


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"),
        (
            {"GEMINI_BASE_URL": "https://proxy.example/gemini/v1beta/"},
            "https://proxy.example/gemini/v1beta/models/gemini-2.0-flash:generateContent",
        ),
        (
            {"GEMINI_BASE_URL": " "},
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
        ),
    ],
    ids=["default", "version_given_is_not_doubled", "blank"],
)
def test_base_url_is_the_root_without_version_and_the_key_is_never_in_the_url(
    environ: dict[str, str], url: str
) -> None:
    transport = RecordingTransport()

    result = gemini_provider(environ, transport).invoke(chat_call())

    assert transport.urls == [url]
    assert KEY not in transport.urls[0]
    assert result["choices"][0]["message"]["content"] == "ok"


def test_trailing_slash_in_base_url_does_not_double_the_separator(fake: GeminiFake) -> None:
    gemini_provider({"GEMINI_BASE_URL": fake.base_url + "/"}).invoke(chat_call())

    assert [r.path for r in fake.requests] == [GENERATE]


def test_a_tuned_model_is_addressed_by_its_own_resource_name(fake: GeminiFake, provider: Provider) -> None:
    provider.invoke(chat_call("tunedModels/my-tuned-7"))

    assert [r.path for r in fake.requests] == ["/v1beta/tunedModels/my-tuned-7:generateContent"]
