"""The Gemini adapter's chat completions through the real transport against a fake Gemini API.

Each test asserts the request sent (method, path, query, key header, JSON body) against the
Gemini API reference and the exact OpenAI-style result. Responses and embeddings:
test_gemini_responses_embeddings.py; errors: test_gemini_errors.py; the translation's
properties: test_gemini_chat_properties.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.contract import RequestType
from chalicelib.providers.base import Provider, ProviderCall
from tests.support.fake_http import RecordedRequest
from tests.support.gemini_fake import (
    GeminiFake,
    gemini_provider,
    generate_path,
    invoke_failing,
    only_request,
    response_id,
)

KEY = "AIzaSyTest-4f1c9a7e2b6d8035"
MODEL = "gemini-2.0-flash"
CREATED = 1_795_600_000  # FakeClock's start
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather forecast",
        "parameters": WEATHER_SCHEMA,
        "strict": True,
    },
}
WEATHER_ARGS = {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}
NO_DETAILS = {"prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}


@pytest.fixture
def fake() -> Iterator[GeminiFake]:
    with GeminiFake(api_key=KEY) as server:
        yield server


@pytest.fixture
def provider(fake: GeminiFake) -> Provider:
    return gemini_provider(fake.environ())


def chat(provider: Provider, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"model": f"gemini/{MODEL}", "messages": messages, **extra}
    return provider.invoke(ProviderCall(RequestType.CHAT_COMPLETION, MODEL, body, api_key=KEY))


def sent_generate(fake: GeminiFake) -> RecordedRequest:
    return only_request(fake, generate_path(MODEL), KEY)


def completion(sent: RecordedRequest, choices: list[dict[str, Any]], prompt: int, made: int) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": made, "total_tokens": prompt + made, **NO_DETAILS}
    return {
        "id": response_id(sent.body),
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": choices,
        "usage": usage,
    }


def choice(content: str | None, finish: str = "stop", index: int = 0, **message: Any) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": content, "refusal": None, **message},
        "logprobs": None,
        "finish_reason": finish,
    }


def reply(*parts: dict[str, Any], finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    """A scripted ``GenerateContentResponse`` with one candidate."""
    candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash-001", **extra}


# --- chat: messages, settings, result -------------------------------------------------------------------


def test_chat_sends_system_prompt_turns_and_settings_and_returns_the_chat_completion(
    fake: GeminiFake, provider: Provider
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": [{"type": "text", "text": "And of Spain?"}]},
    ]
    settings = {"max_completion_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "seed": 7}
    settings |= {"presence_penalty": 0.1, "frequency_penalty": 0.3, "user": "user-42", "metadata": {"t": "1"}}

    result = chat(provider, messages, **settings)

    sent = sent_generate(fake)
    assert sent.json == {
        "contents": [
            {"role": "user", "parts": [{"text": "What is the capital of France?"}]},
            {"role": "model", "parts": [{"text": "Paris."}]},
            {"role": "user", "parts": [{"text": "And of Spain?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in English."}]},
        "generationConfig": {
            "maxOutputTokens": 64,
            "temperature": 0.2,
            "topP": 0.9,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.3,
            "stopSequences": ["END"],
            "seed": 7,
        },
    }
    assert result == completion(sent, [choice("And of Spain?")], prompt=16, made=3)


@pytest.mark.parametrize(
    ("settings", "config"),
    [
        ({"max_tokens": 5}, {"maxOutputTokens": 5}),
        ({"max_completion_tokens": 9, "max_tokens": 5}, {"maxOutputTokens": 9}),
        ({"stop": "END"}, {"stopSequences": ["END"]}),
        ({"temperature": 0, "top_p": 1}, {"temperature": 0, "topP": 1}),
        ({"response_format": {"type": "text"}}, None),
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
    ],
    ids=["max_tokens", "max_completion_tokens_wins", "stop_string", "zero_values", "text_format", "json_object"],
)
def test_chat_settings_map_to_generation_config(
    fake: GeminiFake, provider: Provider, settings: dict[str, Any], config: dict[str, Any] | None
) -> None:
    chat(provider, [{"role": "user", "content": "hi"}], **settings)

    assert sent_generate(fake).json.get("generationConfig") == config


def test_json_schema_response_format_sends_the_schema_as_json_schema(fake: GeminiFake, provider: Provider) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "echo", "schema": schema, "strict": True}}

    result = chat(provider, [{"role": "user", "content": "ping"}], response_format=response_format)

    config = sent_generate(fake).json["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert json.loads(result["choices"][0]["message"]["content"]) == {"echo": "ping"}


def test_n_asks_for_that_many_candidates_and_returns_a_choice_for_each(fake: GeminiFake, provider: Provider) -> None:
    result = chat(provider, [{"role": "user", "content": "two words"}], n=2)

    sent = sent_generate(fake)
    assert sent.json["generationConfig"] == {"candidateCount": 2}
    assert result == completion(sent, [choice("two words"), choice("two words", index=1)], prompt=2, made=4)


# --- tools ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_choice", "config"),
    [
        (None, None),
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
    ids=["absent", "auto", "none", "required", "named"],
)
def test_tools_and_tool_choice_map_to_function_declarations_and_calling_config(
    fake: GeminiFake, provider: Provider, tool_choice: Any, config: dict[str, Any] | None
) -> None:
    extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
    bare = {"type": "function", "function": {"name": "get_time"}}

    chat(provider, [{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL, bare], **extra)

    sent = sent_generate(fake).json
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_weather", "description": "Weather forecast", "parametersJsonSchema": WEATHER_SCHEMA},
                {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}},
            ]
        }
    ]
    assert sent.get("toolConfig") == ({"functionCallingConfig": config} if config else None)


def test_function_calls_in_the_reply_become_tool_calls_with_ids_json_arguments_and_signature(
    fake: GeminiFake, provider: Provider
) -> None:
    parts: list[dict[str, Any]] = [
        {"text": "Let me check. "},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": 2}}, "thoughtSignature": "c2lnLTE="},
        {"functionCall": {"name": "get_time"}},
    ]
    usage = {"promptTokenCount": 40, "candidatesTokenCount": 12, "thoughtsTokenCount": 30, "totalTokenCount": 86}
    usage |= {"cachedContentTokenCount": 8, "toolUsePromptTokenCount": 4}
    fake.script_reply(generate_path(MODEL), {**reply(*parts), "usageMetadata": usage, "responseId": "rsp-9"})

    result = chat(provider, [{"role": "user", "content": "Weather and time?"}], tools=[WEATHER_TOOL])

    weather = {"name": "get_weather", "arguments": '{"city":"Paris","days":2}'}
    calls = [
        {
            "id": "call_rsp-9_0",
            "type": "function",
            "function": weather,
            "extra_content": {"google": {"thought_signature": "c2lnLTE="}},
        },
        {"id": "call_rsp-9_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert result == {
        "id": "rsp-9",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gemini-2.0-flash-001",
        "choices": [choice("Let me check. ", "tool_calls", tool_calls=calls)],
        "usage": {
            "prompt_tokens": 44,
            "completion_tokens": 42,
            "total_tokens": 86,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }


def test_a_reply_with_only_function_calls_has_null_content_and_keeps_gemini_call_ids(
    fake: GeminiFake, provider: Provider
) -> None:
    fake.script_reply(generate_path(MODEL), reply({"functionCall": {"id": "fc-1", "name": "get_time", "args": {}}}))

    result = chat(provider, [{"role": "user", "content": "Time?"}], tools=[WEATHER_TOOL])

    call = {"id": "fc-1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    assert result["choices"] == [choice(None, "tool_calls", tool_calls=[call])]


def test_tool_history_sends_function_calls_with_signatures_and_merged_named_function_responses(
    fake: GeminiFake, provider: Provider
) -> None:
    signed = {"google": {"thought_signature": "c2lnLTE="}}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": WEATHER_ARGS, "extra_content": signed},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "14:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": '{"temp": 21}'}]},
        {"role": "user", "content": "Thanks! Summarize."},
    ]

    result = chat(provider, messages, tools=[WEATHER_TOOL])

    assert sent_generate(fake).json["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and the time?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": 2}},
                    "thoughtSignature": "c2lnLTE=",
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"output": "14:00"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"text": "Thanks! Summarize."},
            ],
        },
    ]
    assert result["choices"][0]["message"]["content"] == "Thanks! Summarize."


def test_a_reused_tool_call_id_answers_the_latest_call_with_that_id(fake: GeminiFake, provider: Provider) -> None:
    def turn(name: str) -> list[dict[str, Any]]:
        call = {"id": "call_0", "type": "function", "function": {"name": name, "arguments": "{}"}}
        return [
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": "ok"},
        ]

    chat(provider, [{"role": "user", "content": "go"}, *turn("first"), *turn("second")])

    contents = sent_generate(fake).json["contents"]
    assert [part["functionResponse"]["name"] for part in contents[2]["parts"] + contents[4]["parts"]] == [
        "first",
        "second",
    ]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "tool", "tool_call_id": "call_x", "content": "42"}], "messages[0].tool_call_id"),
        ([{"role": "user", "content": [{"type": "video_url", "video_url": "x"}]}], "messages[0].content[0]"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}], None),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,@@"}]}], None),
        ([{"role": "critic", "content": "no"}], "messages[0].role"),
    ],
    ids=["unanswered_tool_call", "unknown_part", "ftp_image", "bad_data_url", "unknown_role"],
)
def test_requests_gemini_cannot_express_are_400_before_any_http_call(
    fake: GeminiFake, provider: Provider, messages: list[dict[str, Any]], param: str | None
) -> None:
    body = {"model": MODEL, "messages": messages}

    error = invoke_failing(provider, ProviderCall(RequestType.CHAT_COMPLETION, MODEL, body, api_key=KEY))

    assert (error.status, error.retryable, error.is_bifrost_error) == (400, False, False)
    assert error.param == (param or "messages[0].content[0].image_url")
    assert fake.requests == []


# --- images and other media ---------------------------------------------------------------------------------


def test_images_audio_and_files_become_inline_data_or_file_data(fake: GeminiFake, provider: Provider) -> None:
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.WEBP?size=2"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "b.pdf"}},
    ]

    chat(provider, [{"role": "user", "content": content}])

    assert sent_generate(fake).json["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Compare these."},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.WEBP?size=2"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            ],
        }
    ]


# --- stop reasons, usage, refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gemini_reason", "finish_reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reason_maps_to_openai_finish_reason(
    fake: GeminiFake, provider: Provider, gemini_reason: str | None, finish_reason: str
) -> None:
    fake.script_reply(generate_path(MODEL), reply({"text": "Partial"}, finish=gemini_reason))

    result = chat(provider, [{"role": "user", "content": "hi"}])

    assert result["choices"] == [choice("Partial", finish_reason)]
    assert result["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, **NO_DETAILS}


def test_max_output_tokens_cut_by_gemini_is_length(fake: GeminiFake, provider: Provider) -> None:
    result = chat(provider, [{"role": "user", "content": "one two three four"}], max_tokens=2)

    assert result["choices"] == [choice("one two", "length")]


def test_a_candidate_filtered_without_content_has_empty_text_and_content_filter(
    fake: GeminiFake, provider: Provider
) -> None:
    blocked = {"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": []}], "responseId": "r1"}
    fake.script_reply(generate_path(MODEL), blocked)

    result = chat(provider, [{"role": "user", "content": "hi"}])

    assert result["choices"] == [choice("", "content_filter")]
    assert result["usage"]["total_tokens"] == 0


def test_thought_parts_are_not_content(fake: GeminiFake, provider: Provider) -> None:
    fake.script_reply(generate_path(MODEL), reply({"text": "Let me think", "thought": True}, {"text": "Answer"}))

    result = chat(provider, [{"role": "user", "content": "hi"}])

    assert result["choices"][0]["message"]["content"] == "Answer"


def test_a_blocked_prompt_is_a_400_content_filter_error_with_gemini_reason(
    fake: GeminiFake, provider: Provider
) -> None:
    feedback = {"blockReason": "PROHIBITED_CONTENT", "blockReasonMessage": "Prompt was blocked."}
    fake.script_reply(generate_path(MODEL), {"promptFeedback": feedback, "usageMetadata": {"promptTokenCount": 9}})

    call = ProviderCall(RequestType.CHAT_COMPLETION, MODEL, {"messages": [{"role": "user", "content": "x"}]}, 1, KEY)
    error = invoke_failing(provider, call)

    assert (error.status, error.error_type, error.code, error.param) == (
        400,
        "invalid_request_error",
        "content_filter",
        "messages",
    )
    assert "PROHIBITED_CONTENT" in error.message
    assert error.retryable is False
