"""The Gemini adapter's Responses and embeddings through the real transport against a fake Gemini API.

Responses are served by ``generateContent`` (translated through a chat request); embeddings
by ``embedContent`` (one text) or ``batchEmbedContents`` (lists, in batches of 100).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.contract import RequestType
from chalicelib.providers.base import Provider, ProviderCall
from tests.fakes import FakeClock
from tests.support.fake_http import RecordedRequest
from tests.support.gemini_fake import (
    GeminiFake,
    batch_embed_path,
    embed_path,
    embedding_vector,
    gemini_provider,
    generate_path,
    invoke_failing,
    only_request,
    response_id,
)

KEY = "AIzaSyTest-4f1c9a7e2b6d8035"
MODEL = "gemini-2.0-flash"
EMBEDDER = "text-embedding-004"
CREATED = int(FakeClock().now())
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture
def fake() -> Iterator[GeminiFake]:
    with GeminiFake(api_key=KEY) as server:
        yield server


@pytest.fixture
def provider(fake: GeminiFake) -> Provider:
    return gemini_provider(fake.environ())


def sent_generate(fake: GeminiFake) -> RecordedRequest:
    return only_request(fake, generate_path(MODEL), KEY)


# --- responses ------------------------------------------------------------------------------------------------


def responses(provider: Provider, body: dict[str, Any]) -> dict[str, Any]:
    return provider.invoke(ProviderCall(RequestType.RESPONSES, MODEL, {"model": MODEL, **body}, api_key=KEY))


def test_responses_request_is_served_through_generate_content(fake: GeminiFake, provider: Provider) -> None:
    body = {
        "instructions": "Be poetic.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Write a haiku"}]}],
        "max_output_tokens": 50,
        "temperature": 0.5,
        "store": False,
    }

    result = responses(provider, body)

    sent = sent_generate(fake)
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "Write a haiku"}]}],
        "systemInstruction": {"parts": [{"text": "Be poetic."}]},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.5},
    }
    rid = response_id(sent.body)
    text = {"type": "output_text", "text": "Write a haiku", "annotations": []}
    assert result == {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "incomplete_details": None,
        "error": None,
        "model": MODEL,
        "output": [
            {"type": "message", "id": f"msg_{rid}", "status": "completed", "role": "assistant", "content": [text]}
        ],
        "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
    }


def test_responses_cut_by_max_output_tokens_is_incomplete(fake: GeminiFake, provider: Provider) -> None:
    result = responses(provider, {"input": "one two three", "max_output_tokens": 1})

    assert (result["status"], result["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})


def test_responses_function_call_items_round_trip_as_function_parts(fake: GeminiFake, provider: Provider) -> None:
    body = {
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Forecast", "parameters": WEATHER_SCHEMA}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": WEATHER_SCHEMA, "strict": True}},
    }

    result = responses(provider, body)

    sent = sent_generate(fake)
    assert sent.json == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]},
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "get_weather", "description": "Forecast", "parametersJsonSchema": WEATHER_SCHEMA}
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": WEATHER_SCHEMA},
    }
    call_id = f"call_{response_id(sent.body)}_0"
    assert result["output"] == [
        {
            "type": "function_call",
            "id": f"fc_{call_id}",
            "call_id": call_id,
            "name": "get_weather",
            "arguments": "{}",
            "status": "completed",
        }
    ]


def test_responses_previous_response_id_is_refused_before_any_http_call(fake: GeminiFake, provider: Provider) -> None:
    body = {"model": MODEL, "input": "and then?", "previous_response_id": "resp_1"}

    error = invoke_failing(provider, ProviderCall(RequestType.RESPONSES, MODEL, body, api_key=KEY))

    assert (error.status, error.code, error.param) == (400, "unsupported_parameter", "previous_response_id")
    assert fake.requests == []


# --- embeddings -----------------------------------------------------------------------------------------------


def embed(provider: Provider, body: dict[str, Any], model: str = EMBEDDER) -> dict[str, Any]:
    return provider.invoke(ProviderCall(RequestType.EMBEDDING, model, {"model": model, **body}, api_key=KEY))


def test_a_single_input_is_sent_to_embed_content(fake: GeminiFake, provider: Provider) -> None:
    result = embed(provider, {"input": "hello world", "encoding_format": "float"})

    sent = only_request(fake, embed_path(EMBEDDER), KEY)
    assert sent.json == {"content": {"parts": [{"text": "hello world"}]}}
    assert result == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": embedding_vector("hello world")}],
        "model": EMBEDDER,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


def test_a_list_input_is_sent_to_batch_embed_contents_with_dimensions_and_task_type(
    fake: GeminiFake, provider: Provider
) -> None:
    result = embed(provider, {"input": ["first", "second"], "dimensions": 4, "task_type": "RETRIEVAL_QUERY"})

    sent = only_request(fake, batch_embed_path(EMBEDDER), KEY)
    options = {"outputDimensionality": 4, "taskType": "RETRIEVAL_QUERY"}
    assert sent.json == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "first"}]}, **options},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "second"}]}, **options},
        ]
    }
    assert result["data"] == [
        {"object": "embedding", "index": 0, "embedding": embedding_vector("first", 4)},
        {"object": "embedding", "index": 1, "embedding": embedding_vector("second", 4)},
    ]
    assert result["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


def test_more_than_100_inputs_are_sent_in_batches_of_100_and_returned_in_order(
    fake: GeminiFake, provider: Provider
) -> None:
    texts = [f"text {i}" for i in range(205)]

    result = embed(provider, {"input": texts})

    assert [r.path for r in fake.requests] == [batch_embed_path(EMBEDDER)] * 3
    assert [len(r.json["requests"]) for r in fake.requests] == [100, 100, 5]
    assert [r.json["requests"][0]["content"]["parts"][0]["text"] for r in fake.requests] == [
        "text 0",
        "text 100",
        "text 200",
    ]
    assert [item["index"] for item in result["data"]] == list(range(205))
    assert result["data"][204]["embedding"] == embedding_vector("text 204")


def test_base64_encoding_format_packs_float32_like_openai(fake: GeminiFake, provider: Provider) -> None:
    result = embed(provider, {"input": ["a"], "encoding_format": "base64", "dimensions": 3})

    packed = base64.b64decode(result["data"][0]["embedding"])
    assert struct.unpack("<3f", packed) == pytest.approx(embedding_vector("a", 3), abs=1e-6)


@pytest.mark.parametrize("given", [[[1, 2, 3]], [], [1, 2]], ids=["token_arrays", "empty", "tokens"])
def test_embedding_input_gemini_cannot_take_is_400_before_any_http_call(
    fake: GeminiFake, provider: Provider, given: Any
) -> None:
    call = ProviderCall(RequestType.EMBEDDING, EMBEDDER, {"input": given}, api_key=KEY)

    error = invoke_failing(provider, call)

    assert (error.status, error.param) == (400, "input")
    assert fake.requests == []
