"""The HTTP transport against a real loopback server, and the ``Retry-After`` parsing rule."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import pytest

from chalicelib.errors import ProviderError
from chalicelib.providers.transport import HttpResponse, HttpTransport, retry_after_seconds
from tests.support.fake_http import closed_port
from tests.support.openai_fake import OpenAIFake, error_body

SECRET = "sk-secret-90b1c2d3e4f5"


@pytest.fixture
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake(api_key=None) as server:
        yield server


@pytest.fixture
def transport() -> HttpTransport:
    return HttpTransport(connect_timeout_s=1.0, read_timeout_s=2.0)


def failing(transport: HttpTransport, url: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        transport.post(url, headers={"Authorization": f"Bearer {SECRET}"}, json_body={"model": "m"})
    error = caught.value
    assert SECRET not in str(error) and SECRET not in repr(error.to_body("evt-1"))
    assert error.__cause__ is None and error.__suppress_context__
    return error


# --- retry_after_seconds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": " 3 "}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "10"}, 0.25),
        ({"retry-after-ms": "-20", "retry-after": "10"}, 0.0),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "", "retry-after": "3"}, 3.0),
    ],
)
def test_retry_after_in_seconds_or_milliseconds(headers: dict[str, str], expected: float) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_http_date_is_seconds_from_now() -> None:
    in_two_minutes = email.utils.formatdate(time.time() + 120, usegmt=True)

    waited = retry_after_seconds({"retry-after": in_two_minutes})

    assert waited is not None and 115 <= waited <= 121


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


@pytest.mark.parametrize(
    "headers",
    [{}, {"retry-after": ""}, {"retry-after": "soon"}, {"retry-after": "0x10"}, {"retry-after": "Mon, 99 Foo 2015"}],
)
def test_retry_after_absent_or_garbage_is_none(headers: dict[str, str]) -> None:
    assert retry_after_seconds(headers) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"retry-after": "inf"}, None),
        pytest.param({"retry-after": "1e999"}, None),
        pytest.param({"retry-after": "nan"}, None),
        pytest.param({"retry-after-ms": "inf", "retry-after": "2"}, 2.0),
    ],
    ids=["inf", "overflow", "nan", "ms_inf_falls_back"],
)
def test_retry_after_non_finite_is_garbage(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


# --- HttpResponse ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "ok"), [(199, False), (200, True), (204, True), (299, True), (300, False)])
def test_response_ok_means_2xx(status: int, ok: bool) -> None:
    assert HttpResponse(status, {}, b"").ok is ok


def test_response_json_of_a_non_json_body_raises_value_error() -> None:
    with pytest.raises(ValueError):
        HttpResponse(200, {}, b"<html></html>").json()


# --- HttpTransport --------------------------------------------------------------------------------------------


def test_post_sends_json_and_headers_and_returns_status_headers_and_bytes(
    fake: OpenAIFake, transport: HttpTransport
) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "héllo"}]}

    response = transport.post(fake.base_url + "/chat/completions", headers={"X-Trace": "t-1"}, json_body=body)

    [sent] = fake.requests
    assert (sent.method, sent.path, sent.json) == ("POST", "/v1/chat/completions", body)
    assert sent.headers["x-trace"] == "t-1"
    assert sent.headers["content-type"] == "application/json"
    assert response.status == 200 and response.ok
    assert response.headers["Content-Type"] == response.headers["content-type"] == "application/json"
    assert response.headers["X-Request-Id"].startswith("req_")
    assert response.json()["model"] == "gpt-4o-mini"


def test_error_status_is_returned_not_raised_and_not_retried(fake: OpenAIFake, transport: HttpTransport) -> None:
    fake.script_error("/embeddings", 503, error_body("Overloaded.", "server_error"), {"Retry-After": "2"})

    response = transport.post(fake.base_url + "/embeddings", headers={}, json_body={"model": "m", "input": "x"})

    assert (response.status, response.ok) == (503, False)
    assert response.json()["error"]["type"] == "server_error"
    assert response.retry_after_s() == 2.0
    assert len(fake.requests) == 1


def test_redirect_is_returned_not_followed(fake: OpenAIFake, transport: HttpTransport) -> None:
    fake.script_raw("/completions", 307, b"", headers={"Location": "/v1/chat/completions"})

    response = transport.post(fake.base_url + "/completions", headers={}, json_body={"model": "m", "prompt": "x"})

    assert response.status == 307
    assert [r.path for r in fake.requests] == ["/v1/completions"]


def test_request_sends_the_given_method(fake: OpenAIFake, transport: HttpTransport) -> None:
    response = transport.request("GET", fake.base_url + "/models", headers={"Accept": "application/json"})

    assert response.status == 404
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v1/models")]


def test_multipart_post_sends_form_fields_and_file(fake: OpenAIFake, transport: HttpTransport) -> None:
    audio = b"RIFF\x00\x00WAVEfmt "

    transport.post(
        fake.base_url + "/audio/transcriptions",
        headers={},
        data={"model": "whisper-1"},
        files={"file": ("clip.wav", audio, "audio/wav")},
    )

    [sent] = fake.requests
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.json is None
    assert b'name="model"' in sent.body and b"whisper-1" in sent.body and audio in sent.body


def test_sequential_requests_reuse_one_pooled_connection(fake: OpenAIFake, transport: HttpTransport) -> None:
    for _ in range(3):
        transport.post(fake.base_url + "/completions", headers={}, json_body={"model": "m", "prompt": "x"})

    assert len({r.client_port for r in fake.requests}) == 1


def test_read_timeout_is_504_provider_timeout(fake: OpenAIFake) -> None:
    fake.script_delay("/chat/completions", 5.0)

    error = failing(HttpTransport(connect_timeout_s=1.0, read_timeout_s=0.2), fake.base_url + "/chat/completions")

    assert (error.status, error.error_type, error.code) == (504, "timeout_error", "provider_timeout")
    assert error.retryable is True


def test_refused_connection_is_502_provider_unreachable(transport: HttpTransport) -> None:
    error = failing(transport, f"http://127.0.0.1:{closed_port()}/v1/chat/completions?key={SECRET}")

    assert (error.status, error.code) == (502, "provider_unreachable")
    assert error.retryable is True
    assert "127.0.0.1" not in error.message


def test_unusable_url_is_502_provider_request_failed(transport: HttpTransport) -> None:
    error = failing(transport, f"ftp://127.0.0.1/v1/chat/completions?key={SECRET}")

    assert (error.status, error.code) == (502, "provider_request_failed")
