"""The Mistral AI adapter through the real transport against a (strict) fake Mistral server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import string
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import mistral
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv
from chalicelib.providers.transport import HttpTransport
from tests.fakes import FakeClock
from tests.support.fake_http import RecordedRequest
from tests.support.mistral_fake import (
    MESSAGE_FIELDS,
    PAGE_DIMENSIONS,
    MistralFake,
    answer_id,
    embedding_vector,
    error_body,
    extra_forbidden,
    validation_error,
)

API_KEY = "ms-live-5e0b7c93d1a2f846"
NOW = int(FakeClock().now())
CHAT = "/chat/completions"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def fake() -> Iterator[MistralFake]:
    with MistralFake(api_key=API_KEY) as server:
        yield server


def build(base_url: str, read_timeout_s: float = 2.0) -> Provider:
    environ = {"MISTRAL_BASE_URL": base_url, "MISTRAL_API_KEY": API_KEY}
    return mistral.SPEC.build(ProviderEnv(Settings(), environ, HttpTransport(1.0, read_timeout_s), FakeClock()))


def call_of(request_type: RequestType, body: dict[str, Any], api_key: str | None = API_KEY) -> ProviderCall:
    return ProviderCall(request_type, str(body["model"]).removeprefix("mistral/"), body, api_key=api_key)


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "mistral/mistral-large-latest", "messages": [{"role": "user", "content": "hi there"}], **extra}


def chat(provider: Provider, body: dict[str, Any]) -> dict[str, Any]:
    return provider.invoke(call_of(RequestType.CHAT_COMPLETION, body))


def only_request(fake: MistralFake, path: str = "/v1/chat/completions") -> RecordedRequest:
    [sent] = fake.requests
    assert (sent.method, sent.path, dict(sent.query)) == ("POST", path, {})
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["accept"] == "application/json"
    return sent


def invoke_failing(provider: Provider, call: ProviderCall, secret: str = API_KEY) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.invoke(call)
    error = caught.value
    body = json.dumps(error.to_body("evt-1", {"provider": "mistral", "model_requested": call.model}))
    assert secret not in str(error)
    assert secret not in body
    return error


def completion(
    reply_id: str,
    content: str | None,
    finish: str,
    usage: tuple[int, int],
    *,
    created: int,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "mistral-large-latest",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]},
    }


def mistral_reply(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    reply = {
        "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "chat.completion",
        "created": 1795600123,
        "model": "mistral-large-2411",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 90, "completion_tokens": 25, "total_tokens": 115},
    }
    return {**reply, **extra}


# --- chat: the request sent -------------------------------------------------------------------------------


def test_chat_sends_only_documented_fields_with_renamed_limits_and_returns_chat_completion(fake: MistralFake) -> None:
    body = chat_body(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Hello there", "name": "ann"},
            {"role": "assistant", "content": "Hi!", "refusal": None, "annotations": []},
            {"role": "user", "content": "Tell me a joke about cats"},
        ],
        max_completion_tokens=64,
        temperature=0.2,
        top_p=0.95,
        seed=42,
        stop=["\n\n"],
        presence_penalty=0.1,
        frequency_penalty=0.2,
        response_format={"type": "json_object"},
        n=1,
        user="user-42",
        store=False,
        logit_bias={"50256": -100},
        metadata={"ticket": "T-1"},
        stream=False,
    )

    result = chat(build(fake.base_url), body)

    sent = only_request(fake)
    assert sent.json == {
        "model": "mistral-large-latest",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Tell me a joke about cats"},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.95,
        "stop": ["\n\n"],
        "response_format": {"type": "json_object"},
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "n": 1,
        "random_seed": 42,
    }
    assert abs(result["created"] - time.time()) < 60
    expected = completion(
        answer_id("cmpl", sent.json), "Tell me a joke about cats", "stop", (11, 6), created=result["created"]
    )
    assert result == expected


def test_images_as_data_urls_and_http_urls_are_passed_through(fake: MistralFake) -> None:
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": "https://images.example.com/cat.jpg"},
    ]

    result = chat(
        build(fake.base_url),
        chat_body(model="mistral/pixtral-large-latest", messages=[{"role": "user", "content": content}]),
    )

    assert only_request(fake).json["messages"] == [{"role": "user", "content": content}]
    assert result["choices"][0]["message"]["content"] == "What is in these images?"


@pytest.mark.parametrize(
    ("tool_choice", "sent_choice"),
    [
        ("required", "any"),
        ("auto", "auto"),
        ("none", "none"),
        ("any", "any"),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
    ids=["required", "auto", "none", "any", "named"],
)
def test_tools_and_tool_choice_are_sent_as_mistral_takes_them(
    fake: MistralFake, tool_choice: Any, sent_choice: Any
) -> None:
    chat(build(fake.base_url), chat_body(tools=[WEATHER_TOOL], tool_choice=tool_choice, parallel_tool_calls=False))

    sent = only_request(fake).json
    assert (sent["tools"], sent["tool_choice"], sent["parallel_tool_calls"]) == ([WEATHER_TOOL], sent_choice, False)


def test_tool_history_ids_are_made_valid_for_mistral_and_a_tool_call_reply_is_normalised(fake: MistralFake) -> None:
    openai_id = "call_Xk2abc9DefGhiJkl0MnoPqr"
    fake.script_chat(
        mistral_reply(
            {
                "content": "",
                "tool_calls": [
                    {
                        "id": "D681PevKs",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        "index": 0,
                    },
                    {
                        "id": "a1B2c3D4e",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": {"city": "Rome"}},
                    },
                ],
                "prefix": False,
            },
            finish="tool_calls",
        )
    )
    body = chat_body(
        messages=[
            {"role": "user", "content": "Weather in Oslo and Bergen?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": openai_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "Q9w8E7r6T",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Bergen"}'},
                        "index": 1,
                    },
                ],
            },
            {"role": "tool", "tool_call_id": openai_id, "content": "4C, snow"},
            {"role": "tool", "tool_call_id": "Q9w8E7r6T", "content": "7C, rain", "name": "get_weather"},
        ],
        tools=[WEATHER_TOOL],
    )

    result = chat(build(fake.base_url), body)

    mapped = mistral.mistral_call_id(openai_id)
    assert re.fullmatch(r"[A-Za-z0-9]{9}", mapped)
    assert only_request(fake).json["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": mapped, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                {
                    "id": "Q9w8E7r6T",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Bergen"}'},
                },
            ],
        },
        {"role": "tool", "content": "4C, snow", "tool_call_id": mapped},
        {"role": "tool", "content": "7C, rain", "tool_call_id": "Q9w8E7r6T", "name": "get_weather"},
    ]
    calls = [
        {"id": "D681PevKs", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "a1B2c3D4e", "type": "function", "function": {"name": "get_time", "arguments": '{"city":"Rome"}'}},
    ]
    expected = completion(
        "cmpl-e5cc70bb28c444948073e77776eb30ef",
        None,
        "tool_calls",
        (90, 25),
        created=1795600123,
        tool_calls=calls,
        model="mistral-large-2411",
    )
    assert result == expected


def test_the_strict_fake_refuses_an_untranslated_openai_body_as_mistral_does(fake: MistralFake) -> None:
    """Why the adapter renames, drops and maps: Mistral refuses OpenAI's own fields and call ids."""
    transport, url, headers = (
        HttpTransport(1.0, 2.0),
        fake.base_url + "/v1/chat/completions",
        {"Authorization": f"Bearer {API_KEY}"},
    )
    user = {"role": "user", "content": "hi"}
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    history = [
        user,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "x"},
    ]

    extra = mistral.parse_error(
        transport.post(url, headers=headers, json_body={**chat_body(), "max_completion_tokens": 5})
    )
    bad_id = mistral.parse_error(transport.post(url, headers=headers, json_body={**chat_body(), "messages": history}))

    assert (extra.status, extra.param, extra.message) == (
        422,
        "max_completion_tokens",
        "Extra inputs are not permitted",
    )
    assert (bad_id.status, bad_id.error_type, bad_id.code) == (400, "invalid_function_call", "3280")


# --- chat: the reply ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("stop", "stop"), ("length", "length"), ("model_length", "length"), ("tool_calls", "tool_calls"), (None, "stop")],
)
def test_finish_reason_maps_to_openai_finish_reason(
    fake: MistralFake, finish_reason: str | None, expected: str
) -> None:
    fake.script_chat(mistral_reply({"content": "Bonjour"}, finish=finish_reason))

    result = chat(build(fake.base_url), chat_body())

    assert result["choices"][0]["finish_reason"] == expected
    assert result["choices"][0]["message"]["content"] == "Bonjour"


def test_max_tokens_reached_is_length(fake: MistralFake) -> None:
    body = chat_body(messages=[{"role": "user", "content": "one two three four five"}], max_tokens=2)

    result = chat(build(fake.base_url), body)

    assert only_request(fake).json["max_tokens"] == 2
    assert (result["choices"][0]["message"]["content"], result["choices"][0]["finish_reason"]) == ("one two", "length")


def test_error_finish_reason_is_a_retryable_502(fake: MistralFake) -> None:
    fake.script_chat(mistral_reply({"content": "partial"}, finish="error"))

    error = invoke_failing(build(fake.base_url), call_of(RequestType.CHAT_COMPLETION, chat_body()))

    assert (error.status, error.error_type, error.code, error.retryable) == (
        502,
        "server_error",
        "generation_error",
        True,
    )


def test_reply_missing_optional_fields_is_filled_in(fake: MistralFake) -> None:
    fake.script_chat({"id": "cmpl-min", "choices": [{"message": {"content": "ok"}}]})

    result = chat(build(fake.base_url), chat_body())

    assert result == completion("cmpl-min", "ok", "stop", (0, 0), created=NOW)


def test_content_chunks_keep_text_and_leave_out_thinking(fake: MistralFake) -> None:
    chunks = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "Let me add them."}]},
        {"type": "text", "text": "The answer "},
        {"type": "text", "text": "is 42."},
    ]
    fake.script_chat(mistral_reply({"content": chunks}))

    result = chat(build(fake.base_url), chat_body(model="mistral/magistral-medium-latest"))

    assert result["choices"][0]["message"]["content"] == "The answer is 42."


def test_several_choices_are_each_normalised(fake: MistralFake) -> None:
    reply = mistral_reply({"content": "A"})
    reply["choices"].append({"index": 1, "message": {"role": "assistant", "content": "B"}, "finish_reason": "length"})
    fake.script_chat(reply)

    result = chat(build(fake.base_url), chat_body(n=2))

    assert only_request(fake).json["n"] == 2
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "A", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "B", "refusal": None},
            "logprobs": None,
            "finish_reason": "length",
        },
    ]


# --- responses over chat -------------------------------------------------------------------------------


def test_responses_request_is_served_through_chat(fake: MistralFake) -> None:
    fake.script_chat(mistral_reply({"content": "Hello Bob"}))
    body = {
        "model": "mistral/mistral-small-latest",
        "instructions": "Be terse.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Greet Bob"}]},
            {"type": "function_call", "call_id": "call_greet_1", "name": "greet", "arguments": '{"name":"Bob"}'},
            {"type": "function_call_output", "call_id": "call_greet_1", "output": "done"},
        ],
        "max_output_tokens": 20,
        "metadata": {"ticket": "T-1"},
        "store": False,
    }

    result = build(fake.base_url).invoke(call_of(RequestType.RESPONSES, body))

    mapped = mistral.mistral_call_id("call_greet_1")
    assert only_request(fake).json == {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "Greet Bob"}]},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": mapped, "type": "function", "function": {"name": "greet", "arguments": '{"name":"Bob"}'}}
                ],
            },
            {"role": "tool", "content": "done", "tool_call_id": mapped},
        ],
        "max_tokens": 20,
    }
    assert result == {
        "id": "resp_cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "response",
        "created_at": 1795600123,
        "status": "completed",
        "incomplete_details": None,
        "error": None,
        "model": "mistral-large-2411",
        "output": [
            {
                "type": "message",
                "id": "msg_cmpl-e5cc70bb28c444948073e77776eb30ef",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello Bob", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 90, "output_tokens": 25, "total_tokens": 115},
    }


# --- embeddings -------------------------------------------------------------------------------------------


def test_embedding_request_and_result(fake: MistralFake) -> None:
    body = {
        "model": "mistral/mistral-embed",
        "input": ["first doc", "second doc here"],
        "dimensions": 4,
        "encoding_format": "float",
        "user": "user-42",
    }

    result = build(fake.base_url).invoke(call_of(RequestType.EMBEDDING, body))

    assert only_request(fake, "/v1/embeddings").json == {
        "model": "mistral-embed",
        "input": ["first doc", "second doc here"],
        "output_dimension": 4,
    }
    assert result == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": embedding_vector("first doc", 4)},
            {"object": "embedding", "index": 1, "embedding": embedding_vector("second doc here", 4)},
        ],
        "model": "mistral-embed",
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
    }


def test_embeddings_answered_out_of_order_are_returned_in_input_order(fake: MistralFake) -> None:
    data = [
        {"object": "embedding", "embedding": [0.2], "index": 1},
        {"object": "embedding", "embedding": [0.1], "index": 0},
    ]
    fake.script_json("/embeddings", 200, {"id": "embd-1", "object": "list", "data": data, "model": "mistral-embed"})

    result = build(fake.base_url).invoke(call_of(RequestType.EMBEDDING, {"model": "mistral-embed", "input": "x"}))

    assert [item["embedding"] for item in result["data"]] == [[0.1], [0.2]]
    assert result["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


# --- OCR --------------------------------------------------------------------------------------------------


def test_ocr_of_a_document_url_sends_mistral_body_and_returns_the_reply_as_is(fake: MistralFake) -> None:
    body = {
        "model": "mistral/mistral-ocr-latest",
        "document": {
            "type": "document_url",
            "document_url": "https://arxiv.org/pdf/2201.04234",
            "document_name": "paper",
        },
        "pages": [0, 2],
        "include_image_base64": True,
        "image_limit": 4,
    }

    result = build(fake.base_url).invoke(call_of(RequestType.OCR, body))

    sent = only_request(fake, "/v1/ocr").json
    assert sent == {**body, "model": "mistral-ocr-latest"}
    assert [page["index"] for page in result["pages"]] == [0, 2]
    assert result["pages"][0]["dimensions"] == PAGE_DIMENSIONS
    assert result["pages"][0]["images"][0]["image_base64"].startswith("data:image/jpeg;base64,")
    assert (result["model"], result["usage_info"]) == (
        "mistral-ocr-latest",
        {"pages_processed": 2, "doc_size_bytes": None},
    )
    assert result["document_annotation"] is None


def test_ocr_of_an_image_data_url_is_returned_exactly_as_mistral_answers(fake: MistralFake) -> None:
    reply = {
        "pages": [
            {
                "index": 0,
                "markdown": "# Receipt\n\n| item | price |\n|---|---|\n| tea | 3.50 |",
                "images": [],
                "dimensions": {"dpi": 200, "height": 800, "width": 600},
            }
        ],
        "model": "mistral-ocr-2505",
        "document_annotation": None,
        "usage_info": {"pages_processed": 1, "doc_size_bytes": 5},
    }
    fake.script_json("/ocr", 200, reply)
    body = {
        "model": "mistral/mistral-ocr-latest",
        "document": {"type": "image_url", "image_url": "data:image/png;base64,aGVsbG8="},
    }

    result = build(fake.base_url).invoke(call_of(RequestType.OCR, body))

    assert only_request(fake, "/v1/ocr").json == {"model": "mistral-ocr-latest", "document": body["document"]}
    assert result == reply


@pytest.mark.parametrize(
    "document",
    [None, {"type": "file", "file_id": "f-1"}, {"type": "image_url"}, {"type": "document_url", "image_url": "x"}],
    ids=["absent", "unknown_type", "no_url", "mismatched_field"],
)
def test_ocr_without_a_usable_document_is_a_400_without_any_call(fake: MistralFake, document: Any) -> None:
    body = {"model": "mistral-ocr-latest", "document": document}

    error = invoke_failing(build(fake.base_url), call_of(RequestType.OCR, body))

    assert (error.status, error.code, error.param) == (400, "invalid_document", "document")
    assert fake.requests == []


# --- errors the provider answers -------------------------------------------------------------------------

DETAIL = [
    extra_forbidden(["body", "messages", 0, "user", "tool_calls"], None),
    {"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": None},
]
ERROR_CASES: dict[str, tuple[int, dict[str, Any], tuple[str, str, str | None, str]]] = {
    # name: (status, body, (error_type, code, param, message))
    "400_invalid_model": (
        400,
        error_body("Invalid model: mistral-nope", "invalid_model", "model", "1500"),
        ("invalid_model", "1500", "model", "Invalid model: mistral-nope"),
    ),
    "401_unauthorized": (
        401,
        {"message": "Unauthorized", "request_id": "c61f2f15feca71626a990e3740f99245"},
        ("authentication_error", "", None, "Unauthorized"),
    ),
    "401_detail": (401, {"detail": "Unauthorized"}, ("authentication_error", "", None, "Unauthorized")),
    "403": (
        403,
        error_body("You do not have access to this model.", "forbidden", code="3003"),
        ("forbidden", "3003", None, "You do not have access to this model."),
    ),
    "404": (404, {"detail": "Not Found"}, ("not_found_error", "", None, "Not Found")),
    "422_message_object": (
        422,
        validation_error(*DETAIL),
        ("invalid_request_error", "", "tool_calls", "Extra inputs are not permitted"),
    ),
    "422_top_level_detail": (
        422,
        {"detail": DETAIL[1:]},
        ("invalid_request_error", "", "model", "Field required"),
    ),
    "422_message_list_and_int_code": (
        422,
        {"object": "Error", "detail": DETAIL, "message": DETAIL, "type": "invalid_request_error", "code": 3001},
        ("invalid_request_error", "3001", "tool_calls", "Extra inputs are not permitted"),
    ),
    "422_message_json_text": (
        422,
        {
            "object": "error",
            "message": json.dumps({"detail": DETAIL[1:]}),
            "type": "internal_error_proxy",
            "code": "1000",
        },
        ("internal_error_proxy", "1000", "model", "Field required"),
    ),
    "429": (
        429,
        error_body("Requests rate limit exceeded", "rate_limited", code="1300"),
        ("rate_limited", "1300", None, "Requests rate limit exceeded"),
    ),
    "500": (
        500,
        error_body("Internal server error", "internal_server_error", code="1000"),
        ("internal_server_error", "1000", None, "Internal server error"),
    ),
    "503": (
        503,
        error_body("Service unavailable, please try again later.", "service_unavailable", code="1000"),
        ("service_unavailable", "1000", None, "Service unavailable, please try again later."),
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=list(ERROR_CASES))
def test_mistral_error_bodies_map_to_provider_error(
    fake: MistralFake, case: tuple[int, dict[str, Any], tuple[str, str, str | None, str]]
) -> None:
    status, body, (error_type, code, param, message) = case
    fake.script_error(CHAT, status, body, headers={"retry-after": "2"})

    error = invoke_failing(build(fake.base_url), call_of(RequestType.CHAT_COMPLETION, chat_body()))

    assert (error.status, error.error_type, error.code, error.param, error.message) == (
        status,
        error_type,
        code,
        param,
        message,
    )
    assert error.retry_after_s == 2.0
    assert error.retryable is (status == 429 or status >= 500)
    assert error.is_bifrost_error is False


@pytest.mark.parametrize("path", ["/embeddings", "/ocr"])
def test_errors_of_embeddings_and_ocr_map_the_same_way(fake: MistralFake, path: str) -> None:
    fake.script_error(path, 429, headers={"Retry-After": "9"})
    calls = {
        "/embeddings": call_of(RequestType.EMBEDDING, {"model": "mistral-embed", "input": "x"}),
        "/ocr": call_of(
            RequestType.OCR,
            {"model": "mistral-ocr-latest", "document": {"type": "image_url", "image_url": "https://e.x/a.png"}},
        ),
    }

    error = invoke_failing(build(fake.base_url), calls[path])

    assert (error.status, error.error_type, error.code, error.retry_after_s) == (429, "rate_limited", "1300", 9.0)


def test_wrong_key_is_mistral_401_without_leaking_the_key(fake: MistralFake) -> None:
    wrong = "ms-wrong-0f9e8d7c6b5a"

    error = invoke_failing(
        build(fake.base_url), call_of(RequestType.CHAT_COMPLETION, chat_body(), api_key=wrong), secret=wrong
    )

    assert (error.status, error.error_type, error.message, error.retryable) == (
        401,
        "authentication_error",
        "Unauthorized",
        False,
    )
    assert fake.requests[0].headers["authorization"] == f"Bearer {wrong}"


def test_key_echoed_in_an_error_message_is_redacted(fake: MistralFake) -> None:
    fake.script_error(CHAT, 401, error_body(f"Invalid API key {API_KEY}", "authentication_error"))

    error = invoke_failing(build(fake.base_url), call_of(RequestType.CHAT_COMPLETION, chat_body()))

    assert error.message == "Invalid API key [redacted]"


def test_non_json_error_body_keeps_status_and_retry_after(fake: MistralFake) -> None:
    fake.script_raw(CHAT, 502, b"<html><center>502 Bad Gateway</center></html>", headers={"Retry-After": "4"})

    error = invoke_failing(build(fake.base_url), call_of(RequestType.CHAT_COMPLETION, chat_body()))

    assert (error.status, error.error_type, error.code, error.param) == (502, "server_error", "", None)
    assert (error.message, error.retry_after_s, error.retryable) == ("Mistral answered HTTP 502", 4.0, True)


@pytest.mark.parametrize(
    ("path", "request_type", "body", "content"),
    [
        (CHAT, RequestType.CHAT_COMPLETION, chat_body(), b"<html>OK</html>"),
        (CHAT, RequestType.CHAT_COMPLETION, chat_body(), b'{"id": "cmpl-1", "choices": []}'),
        (CHAT, RequestType.CHAT_COMPLETION, chat_body(), b'{"id": "cmpl-1", "choices": [{"finish_reason": "stop"}]}'),
        ("/embeddings", RequestType.EMBEDDING, {"model": "mistral-embed", "input": "x"}, b'{"data": [{"index": 0}]}'),
        (
            "/ocr",
            RequestType.OCR,
            {"model": "mistral-ocr-latest", "document": {"type": "image_url", "image_url": "https://e.x/a.png"}},
            b'{"model": "mistral-ocr-latest"}',
        ),
    ],
    ids=["html", "no_choices", "choice_without_message", "embedding_without_vector", "ocr_without_pages"],
)
def test_success_status_with_unusable_body_is_502_invalid_response(
    fake: MistralFake, path: str, request_type: RequestType, body: dict[str, Any], content: bytes
) -> None:
    fake.script_raw(path, 200, content, "application/json")

    error = invoke_failing(build(fake.base_url), call_of(request_type, body))

    assert (error.status, error.code, error.retryable) == (502, "invalid_response", True)


def test_read_timeout_is_504_provider_timeout(fake: MistralFake) -> None:
    fake.script_delay(CHAT, 3.0)

    error = invoke_failing(build(fake.base_url, read_timeout_s=0.2), call_of(RequestType.CHAT_COMPLETION, chat_body()))

    assert (error.status, error.code, error.retryable) == (504, "provider_timeout", True)


# --- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_is_the_api_root_and_a_version_suffix_is_dropped(fake: MistralFake, suffix: str) -> None:
    chat(build(fake.base_url + suffix), chat_body())

    assert [r.path for r in fake.requests] == ["/v1/chat/completions"]


def test_spec_names_mistral_key_variable_and_request_types() -> None:
    assert (mistral.SPEC.name, mistral.SPEC.key_variables) == ("mistral", ("MISTRAL_API_KEY",))
    assert mistral.SPEC.request_types == {
        RequestType.CHAT_COMPLETION,
        RequestType.RESPONSES,
        RequestType.EMBEDDING,
        RequestType.OCR,
    }


def test_fake_environ_points_the_adapter_at_the_fake(fake: MistralFake) -> None:
    env = ProviderEnv(Settings(), fake.environ(), HttpTransport(1.0, 2.0), FakeClock())

    mistral.SPEC.build(env).invoke(call_of(RequestType.CHAT_COMPLETION, chat_body()))

    assert fake.environ() == {"MISTRAL_BASE_URL": fake.base_url, "MISTRAL_API_KEY": API_KEY}
    assert len(fake.requests_to(CHAT)) == 1


# --- property: the chat translation loses nothing --------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
_CONTENT = st.one_of(_TEXT, st.lists(_TEXT.map(lambda text: {"type": "text", "text": text}), max_size=3))
_IDS = st.one_of(
    st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=30),
    st.text(string.ascii_letters + string.digits, min_size=9, max_size=9),
)
_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
_ARGS = st.dictionaries(
    st.text(max_size=6), st.none() | st.booleans() | st.integers() | st.text(max_size=8), max_size=3
)
_CALLS = st.lists(
    st.builds(
        lambda call_id, name, args: {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        },
        _IDS,
        _NAMES,
        _ARGS,
    ),
    min_size=1,
    max_size=3,
)
_MESSAGES = st.lists(
    st.one_of(
        st.builds(
            lambda role, content: {"role": role, "content": content}, st.sampled_from(["system", "developer"]), _CONTENT
        ),
        st.builds(lambda content: {"role": "user", "content": content}, _CONTENT),
        st.builds(lambda content: {"role": "assistant", "content": content}, _CONTENT),
        st.builds(
            lambda content, calls: {"role": "assistant", "content": content, "tool_calls": calls},
            st.one_of(st.none(), _TEXT),
            _CALLS,
        ),
        st.builds(
            lambda call_id, content: {"role": "tool", "tool_call_id": call_id, "content": content}, _IDS, _CONTENT
        ),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(_MESSAGES)
def test_chat_translation_keeps_every_message_role_text_and_tool_call(messages: list[dict[str, Any]]) -> None:
    payload = mistral.build_chat_payload(
        "mistral-large-latest", {"model": "mistral/mistral-large-latest", "messages": messages}
    )

    assert json.loads(json.dumps(payload)) == payload
    translated = payload["messages"]
    assert len(translated) == len(messages)
    originals: set[str] = set()
    for original, sent in zip(messages, translated, strict=True):
        role = "system" if original["role"] == "developer" else original["role"]
        assert sent["role"] == role
        assert set(sent) <= MESSAGE_FIELDS[role]  # nothing Mistral would refuse as extra_forbidden
        assert sent.get("content") == (
            original["content"] if original["content"] is not None or role == "assistant" else ""
        )
        calls = original.get("tool_calls", [])
        ids = [call["id"] for call in calls] + ([original["tool_call_id"]] if role == "tool" else [])
        sent_ids = [call["id"] for call in sent.get("tool_calls", [])] + (
            [sent["tool_call_id"]] if role == "tool" else []
        )
        assert sent_ids == [mistral.mistral_call_id(call_id) for call_id in ids]
        assert all(re.fullmatch(r"[A-Za-z0-9]{9}", call_id) for call_id in sent_ids)
        assert all(new == old for old, new in zip(ids, sent_ids, strict=True) if re.fullmatch(r"[A-Za-z0-9]{9}", old))
        assert [
            (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in sent.get("tool_calls", [])
        ] == [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]
        originals.update(ids)
    assert len({mistral.mistral_call_id(call_id) for call_id in originals}) == len(originals)
