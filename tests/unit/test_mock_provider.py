"""The offline mock provider: OpenAI-shaped results per request type, determinism, behaviours by model."""

from __future__ import annotations

import base64
import io
import math
import struct
import wave
import zlib
from typing import Any

import pytest

from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers.base import ProviderCall
from chalicelib.providers.mock import MockProvider
from tests.fakes import FakeClock

CHAT_BODY: dict[str, Any] = {
    "model": "mock/echo",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello there, world"}],
}
BODIES: dict[RequestType, dict[str, Any]] = {
    RequestType.TEXT_COMPLETION: {"prompt": "Say this is a test"},
    RequestType.CHAT_COMPLETION: CHAT_BODY,
    RequestType.RESPONSES: {"input": "Tell me a story"},
    RequestType.EMBEDDING: {"input": ["first text", "second text"]},
    RequestType.SPEECH: {"input": "Hello", "voice": "alloy"},
    RequestType.IMAGE_GENERATION: {"prompt": "a red square", "size": "16x8", "n": 2},
    RequestType.RERANK: {"query": "cat", "documents": ["the cat sat", "dogs bark", {"text": "cat"}]},
    RequestType.OCR: {"document": {"type": "document_url", "document_url": "https://example.com/a.pdf"}},
}


def invoke(
    request_type: RequestType,
    body: dict[str, Any],
    model: str = "echo",
    attempt: int = 1,
    clock: FakeClock | None = None,
) -> dict[str, Any]:
    provider = MockProvider(clock or FakeClock())
    return provider.invoke(ProviderCall(request_type, model, body, attempt))


def failure(model: str, attempt: int = 1) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        invoke(RequestType.CHAT_COMPLETION, CHAT_BODY, model, attempt)
    return caught.value


def png_size(data: bytes) -> tuple[int, int]:
    """Parse a PNG, checking signature, every chunk's CRC and the pixel data length."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) & 0xFFFFFFFF == crc
        chunks[kind] = payload
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert b"IEND" in chunks
    return width, height


def test_chat_result_is_a_chat_completion_echoing_the_last_user_message() -> None:
    clock = FakeClock()
    result = invoke(RequestType.CHAT_COMPLETION, CHAT_BODY, clock=clock)

    assert result["object"] == "chat.completion"
    assert result["id"].startswith("chatcmpl-")
    assert result["created"] == int(clock.now())
    assert result["model"] == "echo"
    (choice,) = result["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Hello there, world"
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] > 0


def test_text_completion_result_echoes_the_prompt() -> None:
    result = invoke(RequestType.TEXT_COMPLETION, BODIES[RequestType.TEXT_COMPLETION])

    assert result["object"] == "text_completion"
    assert result["id"].startswith("cmpl-")
    assert result["choices"][0]["text"] == "Say this is a test"
    assert result["choices"][0]["finish_reason"] == "stop"
    assert set(result["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_responses_result_is_a_completed_response_object() -> None:
    result = invoke(RequestType.RESPONSES, BODIES[RequestType.RESPONSES])

    assert result["object"] == "response"
    assert result["status"] == "completed"
    assert result["id"].startswith("resp_")
    (message,) = result["output"]
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["content"][0] == {"type": "output_text", "text": "Tell me a story", "annotations": []}
    usage = result["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.parametrize(("dimensions", "expected"), [(None, 8), (3, 3), (64, 64)])
def test_embeddings_are_unit_vectors_of_the_requested_dimensions(dimensions: int | None, expected: int) -> None:
    body = {**BODIES[RequestType.EMBEDDING], "dimensions": dimensions}

    result = invoke(RequestType.EMBEDDING, body)

    assert result["object"] == "list"
    assert result["model"] == "echo"
    assert [item["index"] for item in result["data"]] == [0, 1]
    for item in result["data"]:
        assert item["object"] == "embedding"
        assert len(item["embedding"]) == expected
        assert math.sqrt(sum(v * v for v in item["embedding"])) == pytest.approx(1.0, abs=1e-4)
    assert result["data"][0]["embedding"] != result["data"][1]["embedding"]
    assert set(result["usage"]) == {"prompt_tokens", "total_tokens"}


def test_single_string_embedding_input_gives_one_vector() -> None:
    result = invoke(RequestType.EMBEDDING, {"input": "just one"})

    assert len(result["data"]) == 1


def test_speech_result_is_base64_of_a_valid_wav() -> None:
    result = invoke(RequestType.SPEECH, BODIES[RequestType.SPEECH])

    audio = base64.b64decode(result["audio"], validate=True)
    assert audio[:4] == b"RIFF"
    assert audio[8:12] == b"WAVE"
    assert result["content_type"] == "audio/wav"
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getnframes() > 0


def test_images_are_base64_pngs_of_the_requested_size() -> None:
    result = invoke(RequestType.IMAGE_GENERATION, BODIES[RequestType.IMAGE_GENERATION])

    assert isinstance(result["created"], int)
    assert len(result["data"]) == 2
    images = [base64.b64decode(item["b64_json"], validate=True) for item in result["data"]]
    assert [png_size(image) for image in images] == [(16, 8), (16, 8)]
    assert images[0] != images[1]
    assert result["data"][0]["revised_prompt"] == "a red square"


def test_image_defaults_to_one_1024_square_and_url_format_gives_a_data_url() -> None:
    default = invoke(RequestType.IMAGE_GENERATION, {"prompt": "x"})
    as_url = invoke(RequestType.IMAGE_GENERATION, {"prompt": "x", "size": "4x4", "response_format": "url"})

    assert png_size(base64.b64decode(default["data"][0]["b64_json"])) == (1024, 1024)
    url = as_url["data"][0]["url"]
    assert url.startswith("data:image/png;base64,")
    assert png_size(base64.b64decode(url.split(",", 1)[1])) == (4, 4)


def test_rerank_results_are_sorted_by_relevance_descending() -> None:
    result = invoke(RequestType.RERANK, BODIES[RequestType.RERANK])

    scores = [entry["relevance_score"] for entry in result["results"]]
    assert [entry["index"] for entry in result["results"]] == [2, 0, 1]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all("document" not in entry for entry in result["results"])


def test_rerank_honours_top_n_and_return_documents() -> None:
    body = {**BODIES[RequestType.RERANK], "top_n": 2, "return_documents": True}

    result = invoke(RequestType.RERANK, body)

    assert [entry["index"] for entry in result["results"]] == [2, 0]
    assert [entry["document"] for entry in result["results"]] == [{"text": "cat"}, {"text": "the cat sat"}]


@pytest.mark.parametrize(
    "document",
    [
        {"type": "document_url", "document_url": "https://example.com/a.pdf"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.pdf"}},
    ],
)
def test_ocr_result_has_pages_naming_the_source(document: dict[str, Any]) -> None:
    result = invoke(RequestType.OCR, {"document": document})

    (page,) = result["pages"]
    assert page["index"] == 0
    assert "https://example.com/a.pdf" in page["markdown"]
    assert set(page["dimensions"]) == {"dpi", "height", "width"}
    assert result["usage_info"]["pages_processed"] == 1


@pytest.mark.parametrize("request_type", list(BODIES))
def test_same_input_gives_the_same_output(request_type: RequestType) -> None:
    clock = FakeClock()

    first = invoke(request_type, BODIES[request_type], clock=clock)
    second = invoke(request_type, BODIES[request_type], clock=clock)

    assert first == second


@pytest.mark.parametrize("request_type", [RequestType.CHAT_COMPLETION, RequestType.TEXT_COMPLETION])
def test_different_input_gives_a_different_id(request_type: RequestType) -> None:
    body = BODIES[request_type]
    other = {**body, "temperature": 0.5}

    assert invoke(request_type, body)["id"] != invoke(request_type, other)["id"]


@pytest.mark.parametrize(("model", "seconds"), [("sleep-250ms", 0.25), ("sleep-3s", 3.0), ("sleep-0ms", None)])
def test_sleep_models_wait_on_the_clock_then_echo(model: str, seconds: float | None) -> None:
    clock = FakeClock()
    start = clock.now()

    result = invoke(RequestType.CHAT_COMPLETION, CHAT_BODY, model, clock=clock)

    assert clock.sleeps == ([] if seconds is None else [seconds])
    assert clock.now() - start == pytest.approx(seconds or 0.0)
    assert result["choices"][0]["message"]["content"] == "Hello there, world"


def test_sleep_is_capped() -> None:
    clock = FakeClock()

    invoke(RequestType.CHAT_COMPLETION, CHAT_BODY, "sleep-9999999s", clock=clock)

    assert clock.sleeps == [900.0]


@pytest.mark.parametrize(
    ("model", "status", "retryable"),
    [
        ("fail-400", 400, False),
        ("fail-401", 401, False),
        ("fail-404", 404, False),
        ("fail-418", 418, False),
        ("fail-429", 429, True),
        ("fail-500", 500, True),
        ("fail-503", 503, True),
    ],
)
def test_fail_models_raise_provider_errors_on_every_attempt(model: str, status: int, retryable: bool) -> None:
    for attempt in (1, 2, 50):
        error = failure(model, attempt)

        assert error.status == status
        assert error.retryable is retryable
        assert error.is_bifrost_error is False
        assert error.message


def test_rate_limit_failure_carries_a_retry_after_hint() -> None:
    error = failure("fail-429")

    assert (error.error_type, error.code) == ("rate_limit_error", "rate_limit_exceeded")
    assert error.retry_after_s is not None
    assert error.retry_after_s > 0


@pytest.mark.parametrize("failing", [1, 2, 5])
def test_flaky_model_fails_the_first_n_attempts_with_503_then_echoes(failing: int) -> None:
    for attempt in range(1, failing + 1):
        error = failure(f"flaky-{failing}", attempt)
        assert (error.status, error.retryable) == (503, True)

    result = invoke(RequestType.CHAT_COMPLETION, CHAT_BODY, f"flaky-{failing}", failing + 1)

    assert result["choices"][0]["message"]["content"] == "Hello there, world"


def test_flaky_zero_never_fails() -> None:
    result = invoke(RequestType.CHAT_COMPLETION, CHAT_BODY, "flaky-0", 1)

    assert result["object"] == "chat.completion"


@pytest.mark.parametrize("model", ["gpt-4o", "anything", "fail-999", "fail-abc", "flaky-x", "sleep-fast", "sleep-5m"])
def test_any_other_model_name_behaves_like_echo(model: str) -> None:
    clock = FakeClock()
    echo = invoke(RequestType.CHAT_COMPLETION, CHAT_BODY, "echo", clock=clock)

    result = invoke(RequestType.CHAT_COMPLETION, CHAT_BODY, model, clock=clock)

    assert clock.sleeps == []
    assert result["model"] == model
    assert {**result, "model": "echo"} == echo
