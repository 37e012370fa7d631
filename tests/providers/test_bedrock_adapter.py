"""The Bedrock adapter through boto3 against a fake Bedrock Runtime on 127.0.0.1 (REST-JSON, SigV4)."""

from __future__ import annotations

import base64
import itertools
import json
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import bedrock, bedrock_chat, shapes
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv
from chalicelib.providers.transport import HttpTransport
from tests.fakes import FakeClock
from tests.support.bedrock_fake import (
    BedrockFake,
    converse_path,
    credential_scope,
    invoke_path,
    request_id,
)
from tests.support.fake_http import RecordedRequest, closed_port
from tests.support.openai_fake import PNG_PIXEL, embedding_vector

ACCESS_KEY = "test-bedrock-access-key"
SECRET_KEY = "fake/secret+key/bedrock0000000000000000"
CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "us.amazon.nova-lite-v1:0"
TITAN_V2 = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
NOW = 1_795_600_000
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG_PIXEL).decode()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},  # type: ignore[index]
    }
}


@pytest.fixture
def fake() -> Iterator[BedrockFake]:
    with BedrockFake(access_key_id=ACCESS_KEY, region="eu-west-3") as server:
        yield server


def environ(fake: BedrockFake, **extra: str) -> dict[str, str]:
    return {**fake.environ(), "AWS_SECRET_ACCESS_KEY": SECRET_KEY, **extra}


def build(environ: Mapping[str, str], read_timeout_s: float = 5.0) -> Provider:
    settings = Settings(provider_connect_timeout_s=1.0, provider_read_timeout_s=read_timeout_s)
    return bedrock.SPEC.build(ProviderEnv(settings, dict(environ), HttpTransport(1.0, 2.0), FakeClock(NOW)))


def chat(model: str, messages: list[dict[str, Any]], **extra: Any) -> ProviderCall:
    return ProviderCall(
        RequestType.CHAT_COMPLETION, model, {"model": f"bedrock/{model}", "messages": messages, **extra}
    )


def invoke_failing(provider: Provider, call: ProviderCall) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.invoke(call)
    error = caught.value
    body = json.dumps(error.to_body("evt-1", {"provider": "bedrock", "model_requested": call.model}))
    for secret in (SECRET_KEY, ACCESS_KEY):
        assert secret not in str(error)
        assert secret not in body
    assert error.is_bifrost_error is False
    return error


def converse_reply(content: list[dict[str, Any]], stop_reason: str = "end_turn", used: int = 11, made: int = 7) -> Any:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": used, "outputTokens": made, "totalTokens": used + made},
        "metrics": {"latencyMs": 120},
    }


def assert_signed_for_bedrock(sent: RecordedRequest, region: str = "eu-west-3") -> None:
    scope = credential_scope(sent)
    assert scope is not None
    assert (scope["key"], scope["region"], scope["service"]) == (ACCESS_KEY, region, "bedrock")
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert "x-amz-date" in sent.headers


# --- chat: the Converse request sent and the chat.completion returned ---------------------------------------


def test_chat_sends_converse_with_system_and_inference_config_and_returns_chat_completion(fake: BedrockFake) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "developer", "content": [{"type": "text", "text": "Use British spelling."}]},
        {"role": "user", "content": "Say hello"},
    ]
    call = chat(CLAUDE, messages, max_completion_tokens=64, temperature=0.2, top_p=0.9, stop=["END"], user="u-1")

    result = build(environ(fake)).invoke(call)

    [sent] = fake.requests
    assert (sent.method, sent.path, sent.query) == (
        "POST",
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
        {},
    )
    assert sent.headers["content-type"] == "application/json"
    assert_signed_for_bedrock(sent)
    assert sent.json == {
        "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
        "system": [{"text": "Answer briefly."}, {"text": "Use British spelling."}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
    }
    used = len(json.dumps([sent.json["system"], sent.json["messages"]]).split())
    assert result == {
        "id": request_id(sent.body),
        "object": "chat.completion",
        "created": NOW,
        "model": CLAUDE,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Say hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": used, "completion_tokens": 2, "total_tokens": used + 2},
    }


def test_minimal_chat_sends_no_optional_sections_and_ignores_any_api_key(fake: BedrockFake) -> None:
    call = ProviderCall(RequestType.CHAT_COMPLETION, NOVA, {"messages": [{"role": "user", "content": "hi"}]}, 1, "k-9")

    build(environ(fake)).invoke(call)

    [sent] = fake.requests
    assert sent.path == "/model/us.amazon.nova-lite-v1%3A0/converse"
    assert sent.json == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    assert "k-9" not in json.dumps(dict(sent.headers))


def test_max_tokens_alias_and_single_stop_string_map_to_inference_config(fake: BedrockFake) -> None:
    build(environ(fake)).invoke(chat(NOVA, [{"role": "user", "content": "hi"}], max_tokens=5, stop="\n\n"))

    assert fake.requests[0].json["inferenceConfig"] == {"maxTokens": 5, "stopSequences": ["\n\n"]}


def test_multi_turn_tool_conversation_merges_same_role_turns_and_keeps_ids(fake: BedrockFake) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C clear"}]},
        {"role": "user", "content": "Which is warmer?"},
    ]
    call = chat(CLAUDE, messages, tools=[WEATHER_TOOL], tool_choice="auto")

    result = build(environ(fake)).invoke(call)

    assert fake.requests[0].json == {
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "Let me check."},
                    {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C sunny"}]}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "24C clear"}]}},
                    {"text": "Which is warmer?"},
                ],
            },
        ],
        "system": [{"text": "You are a weather bot."}],
        "toolConfig": {"tools": [WEATHER_SPEC], "toolChoice": {"auto": {}}},
    }
    assert result["choices"][0]["message"]["content"] == "Which is warmer?"


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, None),
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
    ],
    ids=["absent", "auto", "required", "named"],
)
def test_tool_choice_maps_to_converse_tool_choice(
    fake: BedrockFake, tool_choice: Any, expected: dict[str, Any] | None
) -> None:
    extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
    tool = {"type": "function", "function": {"name": "get_weather"}}  # no description, no parameters

    build(environ(fake)).invoke(chat(NOVA, [{"role": "user", "content": "weather?"}], tools=[tool], **extra))

    config = fake.requests[0].json["toolConfig"]
    spec = {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
    assert config == {"tools": [spec], **({"toolChoice": expected} if expected else {})}


def test_tool_choice_none_sends_no_tools(fake: BedrockFake) -> None:
    build(environ(fake)).invoke(
        chat(NOVA, [{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL], tool_choice="none")
    )

    assert "toolConfig" not in fake.requests[0].json


def test_tool_history_without_tools_declares_the_used_tools_as_bedrock_requires(fake: BedrockFake) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "tooluse_a", "type": "function", "function": {"name": "lookup", "arguments": ""}}],
        },
        {"role": "tool", "tool_call_id": "tooluse_a", "content": "-3C"},
    ]

    result = build(environ(fake)).invoke(chat(CLAUDE, messages))

    sent = fake.requests[0].json
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": [{"toolUse": {"toolUseId": "tooluse_a", "name": "lookup", "input": {}}}],
    }
    schema = {"type": "object", "properties": {}}
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": schema}}}]}
    assert result["choices"][0]["finish_reason"] == "stop"


def test_tool_use_reply_becomes_tool_calls_with_json_arguments(fake: BedrockFake) -> None:
    content: list[dict[str, Any]] = [
        {"text": "Checking the weather."},
        {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather", "input": {}}},
    ]
    fake.script_json(converse_path(CLAUDE), 200, converse_reply(content, "tool_use"), {"x-amzn-RequestId": "rid-7"})

    result = build(environ(fake)).invoke(chat(CLAUDE, [{"role": "user", "content": "Paris?"}], tools=[WEATHER_TOOL]))

    assert result["id"] == "rid-7"
    assert result["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "Checking the weather.",
            "refusal": None,
            "tool_calls": [
                {
                    "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "tooluse_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert result["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_tool_only_reply_has_null_content(fake: BedrockFake) -> None:
    call = chat(NOVA, [{"role": "user", "content": "go"}], tools=[WEATHER_TOOL], tool_choice="required")

    message = build(environ(fake)).invoke(call)["choices"][0]["message"]

    assert message["content"] is None
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather"]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reason_maps_to_finish_reason(fake: BedrockFake, stop_reason: str, finish_reason: str) -> None:
    fake.script_json(converse_path(NOVA), 200, converse_reply([{"text": "ok"}], stop_reason))

    result = build(environ(fake)).invoke(chat(NOVA, [{"role": "user", "content": "hi"}]))

    assert result["choices"][0]["finish_reason"] == finish_reason


def test_truncation_and_stop_sequences_reported_by_bedrock_reach_finish_reason(fake: BedrockFake) -> None:
    provider = build(environ(fake))

    cut = provider.invoke(chat(NOVA, [{"role": "user", "content": "one two three four"}], max_tokens=2))
    stopped = provider.invoke(chat(NOVA, [{"role": "user", "content": "alpha END beta"}], stop=["END"]))

    assert (cut["choices"][0]["message"]["content"], cut["choices"][0]["finish_reason"]) == ("one two", "length")
    assert (stopped["choices"][0]["message"]["content"], stopped["choices"][0]["finish_reason"]) == ("alpha ", "stop")


# --- images -----------------------------------------------------------------------------------------------------


def test_data_url_images_are_sent_as_image_bytes_with_their_format(fake: BedrockFake) -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": "data:image/webp;base64,UklGRg=="},
    ]

    build(environ(fake)).invoke(chat(CLAUDE, [{"role": "user", "content": content}]))

    assert fake.requests[0].json["messages"][0]["content"] == [
        {"text": "What is in these?"},
        {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG_PIXEL).decode()}}},
        {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
        {"image": {"format": "webp", "source": {"bytes": "UklGRg=="}}},
    ]


@pytest.mark.parametrize(
    "url",
    ["https://example.com/cat.png", "data:image/bmp;base64,Qk0=", "data:image/png;base64,%%%"],
    ids=["http_url", "unsupported_format", "bad_base64"],
)
def test_images_bedrock_cannot_take_are_400_unsupported_input_without_a_call(fake: BedrockFake, url: str) -> None:
    content = [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": url}}]

    error = invoke_failing(build(environ(fake)), chat(CLAUDE, [{"role": "user", "content": content}]))

    assert (error.status, error.code, error.param) == (400, "unsupported_input", "messages")
    assert error.retryable is False
    assert fake.requests == []


@pytest.mark.parametrize(
    "message",
    [
        {"role": "function", "name": "f", "content": "x"},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]},
    ],
    ids=["function_role", "audio_part"],
)
def test_messages_converse_cannot_carry_are_400_unsupported_input(fake: BedrockFake, message: dict[str, Any]) -> None:
    error = invoke_failing(build(environ(fake)), chat(CLAUDE, [{"role": "user", "content": "hi"}, message]))

    assert (error.status, error.code) == (400, "unsupported_input")
    assert fake.requests == []


# --- responses ----------------------------------------------------------------------------------------------------


def test_responses_request_goes_through_converse_and_returns_a_response_object(fake: BedrockFake) -> None:
    body = {
        "model": f"bedrock/{CLAUDE}",
        "instructions": "Be poetic.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": '{"city":"Nice"}'},
            {"type": "function_call_output", "call_id": "call_9", "output": "sunny"},
            {"role": "user", "content": "Write a haiku about it"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}],  # type: ignore[index]
        "max_output_tokens": 50,
    }

    result = build(environ(fake)).invoke(ProviderCall(RequestType.RESPONSES, CLAUDE, body))

    [sent] = fake.requests
    assert sent.path == converse_path(CLAUDE)
    spec = {"toolSpec": {"name": "get_weather", "inputSchema": {"json": body["tools"][0]["parameters"]}}}  # type: ignore[index]
    assert sent.json == {
        "messages": [
            {"role": "user", "content": [{"text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "call_9", "name": "get_weather", "input": {"city": "Nice"}}}],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "call_9", "content": [{"text": "sunny"}]}},
                    {"text": "Write a haiku about it"},
                ],
            },
        ],
        "system": [{"text": "Be poetic."}],
        "inferenceConfig": {"maxTokens": 50},
        "toolConfig": {"tools": [spec]},
    }
    rid = request_id(sent.body)
    assert {k: result[k] for k in ("id", "object", "created_at", "status", "model")} == {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": NOW,
        "status": "completed",
        "model": CLAUDE,
    }
    assert result["output"] == [
        {
            "type": "message",
            "id": f"msg_{rid}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Write a haiku about it", "annotations": []}],
        }
    ]
    assert result["usage"]["output_tokens"] == 5


def test_responses_string_input_with_truncation_is_incomplete(fake: BedrockFake) -> None:
    body = {"model": f"bedrock/{NOVA}", "input": "one two three", "max_output_tokens": 1}

    result = build(environ(fake)).invoke(ProviderCall(RequestType.RESPONSES, NOVA, body))

    assert fake.requests[0].json == {
        "messages": [{"role": "user", "content": [{"text": "one two three"}]}],
        "inferenceConfig": {"maxTokens": 1},
    }
    assert (result["status"], result["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})


# --- embeddings ---------------------------------------------------------------------------------------------------


def test_titan_v2_embeddings_call_invoke_model_once_per_input(fake: BedrockFake) -> None:
    body = {"model": f"bedrock/{TITAN_V2}", "input": ["first text", "second"], "dimensions": 4}

    result = build(environ(fake)).invoke(ProviderCall(RequestType.EMBEDDING, TITAN_V2, body))

    sent = fake.requests
    assert [(r.method, r.path, r.query) for r in sent] == [
        ("POST", "/model/amazon.titan-embed-text-v2%3A0/invoke", {})
    ] * 2
    assert [r.json for r in sent] == [
        {"inputText": "first text", "normalize": True, "dimensions": 4},
        {"inputText": "second", "normalize": True, "dimensions": 4},
    ]
    for request in sent:
        assert (request.headers["content-type"], request.headers["accept"]) == ("application/json", "application/json")
        assert_signed_for_bedrock(request)
    assert result == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": embedding_vector("first text", 4)},
            {"object": "embedding", "index": 1, "embedding": embedding_vector("second", 4)},
        ],
        "model": TITAN_V2,
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def test_titan_g1_text_embeddings_send_the_text_only(fake: BedrockFake) -> None:
    body = {"model": "bedrock/amazon.titan-embed-text-v1", "input": "hello world"}

    result = build(environ(fake)).invoke(ProviderCall(RequestType.EMBEDDING, "amazon.titan-embed-text-v1", body))

    assert [r.json for r in fake.requests] == [{"inputText": "hello world"}]
    assert result["data"][0]["embedding"] == embedding_vector("hello world", 8)
    assert result["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_cohere_embeddings_send_one_batch_and_count_tokens_from_bedrock_header(fake: BedrockFake) -> None:
    body = {"model": f"bedrock/{COHERE}", "input": ["alpha beta", "gamma"]}

    result = build(environ(fake)).invoke(ProviderCall(RequestType.EMBEDDING, COHERE, body))

    [sent] = fake.requests
    assert sent.path == "/model/cohere.embed-english-v3/invoke"
    assert sent.json == {
        "texts": ["alpha beta", "gamma"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    assert [item["embedding"] for item in result["data"]] == [embedding_vector("alpha beta"), embedding_vector("gamma")]
    assert result["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_cohere_embeddings_are_batched_by_96_and_keep_input_order(fake: BedrockFake) -> None:
    texts = [f"text {i}" for i in range(100)]

    result = build(environ(fake)).invoke(ProviderCall(RequestType.EMBEDDING, COHERE, {"input": texts}))

    assert [len(r.json["texts"]) for r in fake.requests] == [96, 4]
    assert [item["index"] for item in result["data"]] == list(range(100))
    assert result["data"][99]["embedding"] == embedding_vector("text 99")


def test_cohere_plain_list_reply_and_base64_encoding_format(fake: BedrockFake) -> None:
    reply = {"id": "e-1", "texts": ["a"], "embeddings": [[0.5, -0.25]], "response_type": "embeddings_floats"}
    fake.script_json(invoke_path(COHERE), 200, reply)

    result = build(environ(fake)).invoke(
        ProviderCall(RequestType.EMBEDDING, COHERE, {"input": "a", "encoding_format": "base64"})
    )

    assert struct.unpack("<2f", base64.b64decode(result["data"][0]["embedding"])) == (0.5, -0.25)
    assert result["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize(
    ("model", "value", "code"),
    [
        ("amazon.nova-lite-v1:0", "hi", "unsupported_model"),
        ("amazon.titan-embed-text-v2:0", [1, 2, 3], "unsupported_input"),
    ],
    ids=["not_an_embedding_family", "token_input"],
)
def test_embeddings_bedrock_cannot_serve_are_400_without_a_call(
    fake: BedrockFake, model: str, value: Any, code: str
) -> None:
    error = invoke_failing(build(environ(fake)), ProviderCall(RequestType.EMBEDDING, model, {"input": value}))

    assert (error.status, error.code) == (400, code)
    assert fake.requests == []


# --- errors Bedrock answers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "ValidationException", "The provided model identifier is invalid."),
        (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
        (404, "ResourceNotFoundException", "Model not found."),
        (408, "ModelTimeoutException", "Model has timed out in processing the request."),
        (424, "ModelErrorException", "The model returned an error."),
        (429, "ThrottlingException", "Too many requests, please wait before trying again."),
        (429, "ModelNotReadyException", "Model is not ready for inference."),
        (500, "InternalServerException", "The server encountered an internal error."),
        (503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
    ],
)
def test_bedrock_errors_map_to_status_type_and_code(fake: BedrockFake, status: int, code: str, message: str) -> None:
    fake.script_error(converse_path(NOVA), status, code, message)

    error = invoke_failing(build(environ(fake)), chat(NOVA, [{"role": "user", "content": "hi"}]))

    assert (error.status, error.error_type, error.code, error.message) == (status, code, code, message)
    assert error.retryable is (status in (408, 429) or status >= 500)
    assert error.retry_after_s is None
    assert len(fake.requests) == 1  # botocore made no retry of its own


def test_throttling_with_retry_after_header_carries_the_hint(fake: BedrockFake) -> None:
    fake.script_error(converse_path(NOVA), 429, "ThrottlingException", "Too many requests", {"Retry-After": "7"})

    error = invoke_failing(build(environ(fake)), chat(NOVA, [{"role": "user", "content": "hi"}]))

    assert (error.status, error.code, error.retry_after_s, error.retryable) == (429, "ThrottlingException", 7.0, True)


def test_validation_error_on_embeddings_maps_like_chat(fake: BedrockFake) -> None:
    fake.script_error(invoke_path(TITAN_V2), 400, "ValidationException", "Malformed input request")

    error = invoke_failing(build(environ(fake)), ProviderCall(RequestType.EMBEDDING, TITAN_V2, {"input": "x"}))

    assert (error.status, error.error_type, error.message) == (400, "ValidationException", "Malformed input request")


def test_fake_validation_of_a_bad_model_body_reaches_the_caller(fake: BedrockFake) -> None:
    """Bedrock's own checks (here: conversation must start with a user turn) come back as ValidationException."""
    error = invoke_failing(build(environ(fake)), chat(NOVA, [{"role": "assistant", "content": "I start"}]))

    assert (error.status, error.code) == (400, "ValidationException")


def test_wrong_credentials_are_403_unrecognized_client(fake: BedrockFake) -> None:
    error = invoke_failing(
        build(environ(fake, AWS_ACCESS_KEY_ID="test-other-access-key")), chat(NOVA, [{"role": "user", "content": "x"}])
    )

    assert (error.status, error.code, error.retryable) == (403, "UnrecognizedClientException", False)


def test_non_json_error_body_keeps_the_status_and_a_default_type(fake: BedrockFake) -> None:
    fake.script_raw(converse_path(NOVA), 502, b"<html><h1>502 Bad Gateway</h1></html>", headers={"Retry-After": "4"})

    error = invoke_failing(build(environ(fake)), chat(NOVA, [{"role": "user", "content": "x"}]))

    assert (error.status, error.error_type, error.code) == (502, "server_error", "")
    assert error.message
    assert (error.retry_after_s, error.retryable) == (4.0, True)


@pytest.mark.parametrize(
    ("path", "request_type", "content"),
    [
        (converse_path(NOVA), RequestType.CHAT_COMPLETION, b"<html>OK</html>"),
        (converse_path(NOVA), RequestType.CHAT_COMPLETION, b"[1, 2]"),
        (converse_path(NOVA), RequestType.CHAT_COMPLETION, b'{"output": {}}'),
        (invoke_path(TITAN_V2), RequestType.EMBEDDING, b"<html>OK</html>"),
        (invoke_path(TITAN_V2), RequestType.EMBEDDING, b'{"embedding": "nope"}'),
    ],
    ids=["chat_html", "chat_array", "chat_no_message", "embed_html", "embed_not_numbers"],
)
def test_success_status_with_unusable_body_is_502_invalid_response(
    fake: BedrockFake, path: str, request_type: RequestType, content: bytes
) -> None:
    fake.script_raw(path, 200, content, "application/json")
    body = {"messages": [{"role": "user", "content": "x"}], "input": "x"}
    model = NOVA if request_type is RequestType.CHAT_COMPLETION else TITAN_V2

    error = invoke_failing(build(environ(fake)), ProviderCall(request_type, model, body))

    assert (error.status, error.code) == (502, "invalid_response")


def test_request_botocore_refuses_is_400_invalid_request_without_a_call(fake: BedrockFake) -> None:
    error = invoke_failing(build(environ(fake)), chat(NOVA, [{"role": "user", "content": "x"}], max_tokens=0))

    assert (error.status, error.code) == (400, "invalid_request")
    assert fake.requests == []


# --- failures to get an answer at all, credentials, client ---------------------------------------------------------


def test_read_timeout_is_504_provider_timeout_after_one_attempt(fake: BedrockFake) -> None:
    fake.script_delay(converse_path(NOVA), 5.0)

    error = invoke_failing(build(environ(fake), read_timeout_s=0.3), chat(NOVA, [{"role": "user", "content": "x"}]))

    assert (error.status, error.error_type, error.code, error.retryable) == (
        504,
        "timeout_error",
        "provider_timeout",
        True,
    )
    assert len(fake.requests) == 1


def test_connection_refused_is_502_provider_unreachable(fake: BedrockFake) -> None:
    provider = build(environ(fake, BEDROCK_BASE_URL=f"http://127.0.0.1:{closed_port()}"))

    error = invoke_failing(provider, chat(NOVA, [{"role": "user", "content": "x"}]))

    assert (error.status, error.code, error.retryable) == (502, "provider_unreachable", True)


def test_no_credentials_anywhere_is_401_missing_credentials(
    fake: BedrockFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = build({"BEDROCK_BASE_URL": fake.root_url})

    error = invoke_failing(provider, chat(NOVA, [{"role": "user", "content": "x"}]))

    assert (error.status, error.error_type, error.code) == (401, "authentication_error", "missing_credentials")
    assert error.retryable is False
    assert fake.requests == []


def test_bedrock_base_url_wins_over_aws_endpoint_url(fake: BedrockFake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack points boto3 at moto with AWS_ENDPOINT_URL; Bedrock calls must still reach the fake."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")

    result = build(environ(fake)).invoke(chat(NOVA, [{"role": "user", "content": "x"}]))

    assert result["choices"][0]["message"]["content"] == "x"
    assert len(fake.requests) == 1


def test_session_token_from_the_environment_is_sent(fake: BedrockFake) -> None:
    build(environ(fake, AWS_SESSION_TOKEN="role-session-token")).invoke(chat(NOVA, [{"role": "user", "content": "x"}]))

    assert fake.requests[0].headers["x-amz-security-token"] == "role-session-token"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"BEDROCK_REGION": "eu-west-3", "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-3"),
        ({"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ap-south-1"}, "us-west-2"),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({}, "us-east-1"),
    ],
    ids=["bedrock_region", "aws_region", "aws_default_region", "default"],
)
def test_region_is_chosen_from_the_environment(fake: BedrockFake, variables: dict[str, str], expected: str) -> None:
    env = {k: v for k, v in environ(fake).items() if k != "BEDROCK_REGION"} | variables

    build(env).invoke(chat(NOVA, [{"role": "user", "content": "x"}]))

    assert_signed_for_bedrock(fake.requests[0], region=expected)


def test_client_is_built_lazily_once_per_provider(fake: BedrockFake) -> None:
    provider = build(environ(fake))
    assert isinstance(provider, bedrock.BedrockProvider)
    assert fake.requests == []

    first = provider.client()
    provider.invoke(chat(NOVA, [{"role": "user", "content": "a"}]))
    provider.invoke(chat(NOVA, [{"role": "user", "content": "b"}]))

    assert provider.client() is first
    assert len(fake.requests) == 2


def test_spec_serves_chat_responses_and_embeddings_without_a_key() -> None:
    env = ProviderEnv(Settings(), {}, HttpTransport(1.0, 2.0), FakeClock())

    assert bedrock.SPEC.name == "bedrock"
    assert bedrock.SPEC.request_types == {RequestType.CHAT_COMPLETION, RequestType.RESPONSES, RequestType.EMBEDDING}
    assert bedrock.SPEC.key_required(env) is False


# --- property: the Converse translation loses nothing ----------------------------------------------------------------

_texts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ids, inner, max_size=3),
    max_leaves=6,
)
_arguments = st.dictionaries(_ids, _json_values, max_size=3)


@st.composite
def _tool_call(draw: st.DrawFn) -> dict[str, Any]:
    arguments = draw(_arguments)
    return {"id": draw(_ids), "type": "function", "function": {"name": draw(_ids), "arguments": json.dumps(arguments)}}


def _content(text: str, as_parts: bool) -> Any:
    return [{"type": "text", "text": text}] if as_parts else text


@st.composite
def _message(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["system", "user", "assistant", "tool"]))
    text = draw(_texts)
    content = _content(text, draw(st.booleans()))
    if role == "assistant":
        calls = draw(st.lists(_tool_call(), max_size=3))
        without_text = draw(st.booleans())
        if calls and without_text:
            return {"role": role, "content": None, "tool_calls": calls}
        return {"role": role, "content": content, **({"tool_calls": calls} if calls else {})}
    if role == "tool":
        return {"role": role, "tool_call_id": draw(_ids), "content": content}
    return {"role": role, "content": content}


def _expected_blocks(messages: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, Any]]]:
    system: list[str] = []
    blocks: list[tuple[str, Any]] = []
    for message in messages:
        text = shapes.message_text(message.get("content"))
        if message["role"] == "system":
            system.append(text)
        elif message["role"] == "tool":
            blocks.append(("user", {"toolResult": {"toolUseId": message["tool_call_id"], "content": [{"text": text}]}}))
        else:
            if text:
                blocks.append((message["role"], {"text": text}))
            for call in message.get("tool_calls", []):
                use = {"toolUseId": call["id"], "name": call["function"]["name"]}
                blocks.append(("assistant", {"toolUse": {**use, "input": json.loads(call["function"]["arguments"])}}))
    return system, blocks


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(_message(), min_size=1, max_size=8), with_tools=st.booleans())
def test_converse_translation_keeps_messages_roles_text_and_tool_calls(
    messages: list[dict[str, Any]], with_tools: bool
) -> None:
    body: dict[str, Any] = {"messages": messages}
    if with_tools:
        body["tools"] = [WEATHER_TOOL]

    request = bedrock_chat.converse_request("m", body)

    system, blocks = _expected_blocks(messages)
    assert [block["text"] for block in request.get("system", [])] == system
    turns = request["messages"]
    assert [(turn["role"], block) for turn in turns for block in turn["content"]] == blocks
    assert all(turn["content"] for turn in turns)
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(turns))
    names_used = {block["toolUse"]["name"] for _, block in blocks if "toolUse" in block}
    declared = {tool["toolSpec"]["name"] for tool in request.get("toolConfig", {}).get("tools", [])}
    assert names_used <= declared or with_tools
    assert bool(request.get("toolConfig")) is (with_tools or bool(names_used))


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            _texts.map(lambda text: {"text": text}),
            st.tuples(_ids, _ids, _arguments).map(
                lambda t: {"toolUse": {"toolUseId": t[0], "name": t[1], "input": t[2]}}
            ),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_converse_reply_translation_keeps_text_and_tool_call_ids(parts: list[dict[str, Any]]) -> None:
    reply = converse_reply(parts, "tool_use") | {"ResponseMetadata": {"RequestId": "rid"}}

    message = bedrock_chat.chat_from_converse(reply, "m", NOW)["choices"][0]["message"]

    texts = "".join(part["text"] for part in parts if "text" in part)
    uses = [part["toolUse"] for part in parts if "toolUse" in part]
    assert message["content"] == (texts if texts or not uses else None)
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls", [])
    ] == [(use["toolUseId"], use["name"], use["input"]) for use in uses]
