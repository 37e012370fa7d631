"""The Anthropic adapter through the real transport against a fake Anthropic API on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import anthropic
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv
from chalicelib.providers.transport import HttpTransport
from tests.fakes import FakeClock
from tests.support.anthropic_fake import FILES_BETA, AnthropicFake, error_body, message_id
from tests.support.fake_http import RecordedRequest, closed_port

API_KEY = "sk-ant-api03-test-4f1c9a7e2b6d8035"
MODEL = "claude-sonnet-4-5"
MESSAGES = "/messages"
NOW = 1_795_600_000
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture
def fake() -> Iterator[AnthropicFake]:
    with AnthropicFake(api_key=API_KEY) as server:
        yield server


def build(base_url: str, read_timeout_s: float = 2.0) -> Provider:
    env = ProviderEnv(Settings(), {"ANTHROPIC_BASE_URL": base_url}, HttpTransport(1.0, read_timeout_s), FakeClock())
    return anthropic.SPEC.build(env)


def call(
    body: dict[str, Any], kind: RequestType = RequestType.CHAT_COMPLETION, key: str | None = API_KEY
) -> ProviderCall:
    return ProviderCall(kind, MODEL, {"model": f"anthropic/{MODEL}", **body}, api_key=key)


def chat(fake: AnthropicFake, body: dict[str, Any]) -> dict[str, Any]:
    return build(fake.base_url).invoke(call(body))


def only_request(fake: AnthropicFake) -> RecordedRequest:
    [request] = fake.requests
    return request


def sent_payload(fake: AnthropicFake, body: dict[str, Any]) -> dict[str, Any]:
    """What the adapter posts for ``body`` (the fake's reply is scripted, so any payload goes)."""
    fake.script_json(MESSAGES, 200, message([{"type": "text", "text": "ok"}]))
    chat(fake, body)
    payload: dict[str, Any] = only_request(fake).json
    return payload


def message(content: list[dict[str, Any]], stop_reason: str | None = "end_turn", **usage: int) -> dict[str, Any]:
    """A Messages API reply as Anthropic documents it."""
    counts = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {**counts, **usage, "service_tier": "standard"},
    }


def completion(id: str, content: str | None, finish: str, prompt: int, output: int, **extra: Any) -> dict[str, Any]:
    """The exact ``chat.completion`` the adapter must return."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": NOW,
        "model": extra.pop("model", MODEL),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, **extra},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output},
    }


def failing(provider: Provider, provider_call: ProviderCall, secret: str = API_KEY) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.invoke(provider_call)
    error = caught.value
    assert secret not in str(error)
    assert secret not in json.dumps(error.to_body("evt-1", {"provider": "anthropic", "model_requested": MODEL}))
    return error


# --- chat: the request sent --------------------------------------------------------------------------------


def test_chat_posts_a_messages_request_with_anthropic_headers_and_returns_a_chat_completion(
    fake: AnthropicFake,
) -> None:
    body = {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello"}]}
    result = chat(fake, {**body, "temperature": 0.2, "max_completion_tokens": 64, "stream": False})

    sent = only_request(fake)
    assert (sent.method, sent.path, dict(sent.query)) == ("POST", "/v1/messages", {})
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": MODEL,
        "max_tokens": 64,
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "temperature": 0.2,
    }
    assert result == completion(message_id(sent.body), "Say hello", "stop", 4, 2)


def test_system_and_developer_messages_join_the_system_prompt_and_same_role_turns_merge(fake: AnthropicFake) -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "first"},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "third"}]},
        {"role": "assistant", "content": "answer one"},
        {"role": "assistant", "content": [{"type": "text", "text": "answer two"}]},
        {"role": "user", "content": "follow-up"},
    ]
    payload = sent_payload(fake, {"messages": messages})

    assert payload["system"] == [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Use metric units."}]
    assert payload["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": t} for t in ("first", "second", "third")]},
        {"role": "assistant", "content": [{"type": "text", "text": t} for t in ("answer one", "answer two")]},
        {"role": "user", "content": [{"type": "text", "text": "follow-up"}]},
    ]


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time"}},
]


@pytest.mark.parametrize(
    ("extra", "tool_choice"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}, {"type": "tool", "name": "get_time"}),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"tool_choice": "required", "parallel_tool_calls": False}, {"type": "any", "disable_parallel_tool_use": True}),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
    ],
)
def test_tools_map_to_input_schema_and_tool_choice_to_anthropic_types(
    fake: AnthropicFake, extra: dict[str, Any], tool_choice: dict[str, Any] | None
) -> None:
    payload = sent_payload(fake, {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS, **extra})

    assert payload["tools"] == [
        {"name": "get_weather", "description": "Weather by city", "input_schema": WEATHER},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert payload.get("tool_choice") == tool_choice


def test_tool_calls_become_tool_use_blocks_and_tool_messages_one_user_turn_of_tool_results(fake: AnthropicFake) -> None:
    calls = [
        {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": ""}},
    ]
    messages = [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C and sunny"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": [{"type": "text", "text": "14:05"}]},
        {"role": "user", "content": "Thanks"},
    ]
    result = chat(fake, {"messages": messages, "tools": TOOLS})

    sent = only_request(fake)
    assert sent.json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C and sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "14:05"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]
    assert result["choices"][0]["message"]["content"] == "Thanks"


def test_image_parts_become_base64_or_url_image_blocks(fake: AnthropicFake) -> None:
    content = [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    result = chat(fake, {"messages": [{"role": "user", "content": content}]})

    assert only_request(fake).json["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert result["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("extra", "max_tokens", "rest"),
    [
        ({}, 4096, {}),
        ({"max_tokens": 100}, 100, {}),
        ({"max_completion_tokens": 50, "max_tokens": 100}, 50, {}),
        ({"stop": "END"}, 4096, {"stop_sequences": ["END"]}),
        (
            {"stop": ["END", "###"], "top_p": 0.9, "top_k": 40},
            4096,
            {"stop_sequences": ["END", "###"], "top_p": 0.9, "top_k": 40},
        ),
        ({"user": "user-42", "temperature": 1}, 4096, {"temperature": 1, "metadata": {"user_id": "user-42"}}),
        ({"response_format": {"type": "text"}, "seed": 7, "presence_penalty": 0.5, "metadata": {"a": "b"}}, 4096, {}),
    ],
    ids=["default", "max_tokens", "max_completion_tokens_wins", "stop_string", "stop_list", "user", "unmapped"],
)
def test_limits_and_sampling_parameters_map_to_messages_fields(
    fake: AnthropicFake, extra: dict[str, Any], max_tokens: int, rest: dict[str, Any]
) -> None:
    user = [{"role": "user", "content": "hi"}]
    payload = sent_payload(fake, {"messages": user, "stream": False, "n": 1, **extra})

    expected = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert payload == {**expected, **rest}


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]},
            "invalid_image_url",
            "messages[0].content[0].image_url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}],
                    }
                ]
            },
            "invalid_image_url",
            "messages[0].content[0].image_url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}],
                    }
                ]
            },
            "unsupported_content",
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "unsupported_role", "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "invalid_request", "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "unsupported_parameter", "n"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "sometimes"},
            "invalid_request",
            "tool_choice",
        ),
    ],
    ids=["ftp_image", "bad_base64", "audio", "function_role", "tool_without_id", "n_2", "tool_choice"],
)
def test_requests_the_messages_api_cannot_express_are_refused_before_any_http_call(
    fake: AnthropicFake, body: dict[str, Any], code: str, param: str
) -> None:
    error = failing(build(fake.base_url), call(body))

    assert (error.status, error.error_type, error.code, error.param) == (400, "invalid_request_error", code, param)
    assert fake.requests == []


# --- chat: the reply translated ------------------------------------------------------------------------------


def test_tool_use_reply_becomes_tool_calls_with_json_arguments(fake: AnthropicFake) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_01T", "name": "get_weather", "input": {"city": "Paris", "days": 2}}
    fake.script_json(MESSAGES, 200, message([{"type": "text", "text": "Let me look."}, tool_use], "tool_use"))

    result = chat(fake, {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS})

    tool_call = {
        "id": "toolu_01T",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris","days":2}'},
    }
    model = "claude-sonnet-4-5-20250929"
    expected = completion(
        "msg_01XFDUDYJgAACzvnptvVoYEL", "Let me look.", "tool_calls", 10, 5, model=model, tool_calls=[tool_call]
    )
    assert result == expected


def test_reply_of_only_tool_use_has_null_content(fake: AnthropicFake) -> None:
    forced = {"tool_choice": {"type": "function", "function": {"name": "get_time"}}}
    result = chat(fake, {"messages": [{"role": "user", "content": "time?"}], "tools": TOOLS, **forced})

    reply = result["choices"][0]
    assert (reply["message"]["content"], reply["finish_reason"]) == (None, "tool_calls")
    [tool_call] = reply["message"]["tool_calls"]
    assert tool_call["function"] == {"name": "get_time", "arguments": "{}"}
    assert tool_call["id"].startswith("toolu_")


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_stop_reason_maps_to_finish_reason(fake: AnthropicFake, stop_reason: str | None, finish_reason: str) -> None:
    fake.script_json(MESSAGES, 200, message([{"type": "text", "text": "partial"}], stop_reason))

    result = chat(fake, {"messages": [{"role": "user", "content": "hi"}]})

    assert result["choices"][0]["finish_reason"] == finish_reason


def test_usage_counts_cache_reads_and_writes_as_prompt_tokens(fake: AnthropicFake) -> None:
    reply = message([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], input_tokens=12, output_tokens=7)
    fake.script_json(
        MESSAGES,
        200,
        {**reply, "usage": {**reply["usage"], "cache_creation_input_tokens": 300, "cache_read_input_tokens": 2000}},
    )

    result = chat(fake, {"messages": [{"role": "user", "content": "hi"}]})

    assert result["usage"] == {"prompt_tokens": 2312, "completion_tokens": 7, "total_tokens": 2319}
    assert result["choices"][0]["message"]["content"] == "ab"


@pytest.mark.parametrize(
    ("extra", "content", "finish_reason"),
    [({"stop": ["three"]}, "one two ", "stop"), ({"max_tokens": 2}, "one two", "length")],
    ids=["stop_sequence", "max_tokens"],
)
def test_fake_stops_as_anthropic_does_and_the_finish_reason_follows(
    fake: AnthropicFake, extra: dict[str, Any], content: str, finish_reason: str
) -> None:
    result = chat(fake, {"messages": [{"role": "user", "content": "one two three four"}], **extra})

    assert (result["choices"][0]["message"]["content"], result["choices"][0]["finish_reason"]) == (
        content,
        finish_reason,
    )


# --- responses -------------------------------------------------------------------------------------------------


def test_responses_request_is_sent_as_messages_and_answered_as_a_response(fake: AnthropicFake) -> None:
    body = {
        "instructions": "Be helpful.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather in Paris?"},
                    {"type": "input_image", "image_url": "https://example.com/p.png"},
                ],
            },
            {"type": "function_call", "call_id": "toolu_01W", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "toolu_01W", "output": "18C"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather by city", "parameters": WEATHER}],
        "tool_choice": "auto",
        "max_output_tokens": 200,
        "temperature": 0.5,
    }
    result = build(fake.base_url).invoke(call(body, RequestType.RESPONSES))

    sent = only_request(fake)
    assert (sent.path, sent.headers["x-api-key"], sent.headers["anthropic-version"]) == (
        "/v1/messages",
        API_KEY,
        "2023-06-01",
    )
    assert sent.json == {
        "model": MODEL,
        "max_tokens": 200,
        "system": "Be helpful.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/p.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_01W", "name": "get_weather", "input": {"city": "Paris"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01W", "content": "18C"}]},
        ],
        "temperature": 0.5,
        "tools": [{"name": "get_weather", "description": "Weather by city", "input_schema": WEATHER}],
        "tool_choice": {"type": "auto"},
    }
    suffix = message_id(sent.body)
    assert result == {
        "id": f"resp_{suffix}",
        "object": "response",
        "created_at": NOW,
        "status": "completed",
        "incomplete_details": None,
        "error": None,
        "model": MODEL,
        "output": [
            {
                "type": "message",
                "id": f"msg_{suffix}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "18C", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 6, "output_tokens": 1, "total_tokens": 7},
    }


def test_responses_tool_use_reply_becomes_a_function_call_item(fake: AnthropicFake) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_01T", "name": "get_weather", "input": {"city": "Oslo"}}
    fake.script_json(MESSAGES, 200, message([tool_use], "tool_use"))

    result = build(fake.base_url).invoke(call({"input": "Weather in Oslo?"}, RequestType.RESPONSES))

    assert result["output"] == [
        {
            "type": "function_call",
            "id": "fc_toolu_01T",
            "call_id": "toolu_01T",
            "name": "get_weather",
            "arguments": '{"city":"Oslo"}',
            "status": "completed",
        }
    ]
    assert (result["id"], result["status"], result["model"]) == (
        "resp_msg_01XFDUDYJgAACzvnptvVoYEL",
        "completed",
        "claude-sonnet-4-5-20250929",
    )


def test_responses_cut_at_max_tokens_is_incomplete(fake: AnthropicFake) -> None:
    result = build(fake.base_url).invoke(
        call({"input": "one two three", "max_output_tokens": 1}, RequestType.RESPONSES)
    )

    assert (result["status"], result["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})


# --- errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "headers", "retry_after_s"),
    [
        (400, "invalid_request_error", {}, None),
        (401, "authentication_error", {}, None),
        (403, "permission_error", {}, None),
        (404, "not_found_error", {}, None),
        (413, "request_too_large", {}, None),
        (429, "rate_limit_error", {"retry-after": "17"}, 17.0),
        (500, "api_error", {}, None),
        (529, "overloaded_error", {}, None),
        (529, "overloaded_error", {"retry-after": "3"}, 3.0),
    ],
)
def test_anthropic_error_body_maps_to_provider_error(
    fake: AnthropicFake, status: int, error_type: str, headers: dict[str, str], retry_after_s: float | None
) -> None:
    fake.script_error(MESSAGES, status, error_type, f"{error_type} happened", headers)

    error = failing(build(fake.base_url), call({"messages": [{"role": "user", "content": "hi"}]}))

    assert (error.status, error.error_type, error.message) == (status, error_type, f"{error_type} happened")
    assert (error.code, error.param, error.retry_after_s) == ("", None, retry_after_s)
    assert error.retryable is (status in (429, 500, 529))
    assert error.is_bifrost_error is False


def test_request_anthropic_refuses_comes_back_as_its_400(fake: AnthropicFake) -> None:
    error = failing(build(fake.base_url), call({"messages": [{"role": "user", "content": "hi"}], "temperature": 1.7}))

    assert (error.status, error.error_type, error.retryable) == (400, "invalid_request_error", False)
    assert error.message.startswith("temperature:")


@pytest.mark.parametrize(
    ("key", "status", "error_type"),
    [
        ("sk-ant-wrong-7d3e0b9c1a2f4e68", 401, "authentication_error"),
        ("sk-ant-readonly-0b9c1a2f", 403, "permission_error"),
    ],
)
def test_wrong_or_forbidden_key_maps_to_anthropic_auth_errors_without_leaking_it(
    key: str, status: int, error_type: str
) -> None:
    with AnthropicFake(api_key=API_KEY, forbidden_keys={"sk-ant-readonly-0b9c1a2f"}) as server:
        error = failing(
            build(server.base_url), call({"messages": [{"role": "user", "content": "hi"}]}, key=key), secret=key
        )

        assert only_request(server).headers["x-api-key"] == key
    assert (error.status, error.error_type, error.retryable) == (status, error_type, False)


def test_call_without_a_key_sends_no_x_api_key(fake: AnthropicFake) -> None:
    error = failing(build(fake.base_url), call({"messages": [{"role": "user", "content": "hi"}]}, key=None))

    assert "x-api-key" not in only_request(fake).headers
    assert (error.status, error.error_type, error.message) == (
        401,
        "authentication_error",
        "x-api-key header is required",
    )


def test_key_echoed_by_the_provider_is_redacted(fake: AnthropicFake) -> None:
    fake.script_json(MESSAGES, 401, error_body("authentication_error", f"invalid x-api-key {API_KEY}"))

    error = failing(build(fake.base_url), call({"messages": [{"role": "user", "content": "hi"}]}))

    assert (error.status, error.error_type) == (401, "authentication_error")


@pytest.mark.parametrize(("status", "error_type"), [(502, "server_error"), (413, "invalid_request_error")])
def test_non_json_error_body_keeps_the_status_and_a_default_type(
    fake: AnthropicFake, status: int, error_type: str
) -> None:
    fake.script_raw(MESSAGES, status, b"<html><body><h1>cloudflare</h1></body></html>", headers={"Retry-After": "4"})

    error = failing(build(fake.base_url), call({"messages": [{"role": "user", "content": "hi"}]}))

    assert (error.status, error.error_type, error.code, error.param) == (status, error_type, "", None)
    assert error.message
    assert error.retry_after_s == 4.0


@pytest.mark.parametrize(
    "content",
    [
        b"<html>OK</html>",
        b"[]",
        b"",
        json.dumps(error_body("api_error", "late")).encode(),
        b'{"type":"message","content":"x"}',
    ],
    ids=["html", "json_array", "empty", "error_body", "content_not_a_list"],
)
def test_success_status_with_an_unusable_body_is_502_invalid_response(fake: AnthropicFake, content: bytes) -> None:
    fake.script_raw(MESSAGES, 200, content, "application/json")

    error = failing(build(fake.base_url), call({"messages": [{"role": "user", "content": "hi"}]}))

    assert (error.status, error.code, error.retryable) == (502, "invalid_response", True)


# --- base URL, transport failures, spec ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_is_the_sdk_root_with_or_without_v1(fake: AnthropicFake, suffix: str) -> None:
    build(fake.base_url + suffix).invoke(call({"messages": [{"role": "user", "content": "hi"}]}))

    assert only_request(fake).path == "/v1/messages"


def test_read_timeout_is_504_and_refused_connection_502(fake: AnthropicFake) -> None:
    fake.script_delay(MESSAGES, 5.0)
    body = {"messages": [{"role": "user", "content": "hi"}]}

    timeout = failing(build(fake.base_url, read_timeout_s=0.2), call(body))
    refused = failing(build(f"http://127.0.0.1:{closed_port()}"), call(body))

    assert (timeout.status, timeout.code, refused.status, refused.code) == (
        504,
        "provider_timeout",
        502,
        "provider_unreachable",
    )


def test_spec_serves_chat_and_responses_with_the_anthropic_key_variable() -> None:
    spec = anthropic.SPEC
    assert (spec.name, spec.request_types) == (
        "anthropic",
        frozenset({RequestType.CHAT_COMPLETION, RequestType.RESPONSES}),
    )
    assert spec.key_variables == ("ANTHROPIC_API_KEY",)
    env = ProviderEnv(Settings(), {}, HttpTransport(1.0, 1.0), FakeClock())
    assert spec.key_required(env) is True


# --- the fake's Files API (served for the gateway's /anthropic/v1/files route) -------------------------------------


def files_headers(key: str = API_KEY, beta: str | None = FILES_BETA) -> dict[str, str]:
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {**headers, "anthropic-beta": beta} if beta else headers


def test_fake_files_api_records_the_upload_and_answers_the_file_object() -> None:
    content = b"%PDF-1.7\r\n\x00\xff--boundary-like\r\n\n%%EOF"
    with AnthropicFake(api_key=API_KEY, clock=lambda: 1_744_742_244.100435) as server:
        reply = requests.post(
            server.base_url + "/v1/files",
            headers=files_headers(beta=f"other-beta,{FILES_BETA}"),
            files={"file": ("report.pdf", content, "application/pdf")},
            data={"purpose": "assistants"},
            timeout=5,
        )
        [upload] = server.uploads
        lookup = requests.get(f"{server.base_url}/v1/files/{upload.id}", headers=files_headers(), timeout=5)

    assert reply.status_code == 200
    assert reply.headers["request-id"].startswith("req_")
    assert reply.json() == {
        "id": upload.id,
        "type": "file",
        "filename": "report.pdf",
        "mime_type": "application/pdf",
        "size_bytes": len(content),
        "created_at": "2025-04-15T18:37:24.100435Z",
        "downloadable": False,
    }
    assert upload.id.startswith("file_")
    assert (upload.content, upload.filename, dict(upload.fields)) == (content, "report.pdf", {"purpose": "assistants"})
    assert (lookup.status_code, lookup.json()) == (200, reply.json())


@pytest.mark.parametrize(
    ("headers", "files", "status", "error_type"),
    [
        (files_headers(beta=None), {"file": ("a.txt", b"hi")}, 400, "invalid_request_error"),
        (files_headers(), None, 400, "invalid_request_error"),
        (files_headers(key="sk-ant-wrong"), {"file": ("a.txt", b"hi")}, 401, "authentication_error"),
    ],
    ids=["no_beta_header", "no_file_part", "wrong_key"],
)
def test_fake_files_api_refuses_as_anthropic_does(
    headers: dict[str, str], files: dict[str, Any] | None, status: int, error_type: str
) -> None:
    with AnthropicFake(api_key=API_KEY) as server:
        reply = requests.post(
            server.base_url + "/v1/files", headers=headers, files=files, data={"purpose": "x"}, timeout=5
        )

        assert server.uploads == []
    assert reply.status_code == status
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == error_type


def test_fake_files_upload_without_content_type_guesses_it_and_each_upload_gets_its_own_id() -> None:
    with AnthropicFake(api_key=API_KEY) as server:
        url, upload = server.base_url + "/v1/files", {"file": ("notes.txt", b"a\nb")}
        replies = [requests.post(url, headers=files_headers(), files=upload, timeout=5) for _ in range(2)]

        assert [upload.id for upload in server.uploads] == [reply.json()["id"] for reply in replies]
    assert [(r.json()["mime_type"], r.json()["size_bytes"]) for r in replies] == [("text/plain", 3)] * 2
    assert replies[0].json()["id"] != replies[1].json()["id"]
