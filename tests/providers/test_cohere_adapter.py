"""The Cohere (API v2) adapter through the real transport against a fake Cohere server on 127.0.0.1."""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import cohere, shapes
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv
from chalicelib.providers.transport import HttpTransport
from tests.fakes import FakeClock
from tests.support.cohere_fake import CohereFake, answer_id, chat_reply, embedding_vector, relevance
from tests.support.fake_http import RecordedRequest

API_KEY = "co-live-8c41d7a2e9b35f06"
NOW = int(FakeClock().now())
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.fixture
def fake() -> Iterator[CohereFake]:
    with CohereFake(api_key=API_KEY) as server:
        yield server


def build(base_url: str, read_timeout_s: float = 2.0, extra: dict[str, str] | None = None) -> Provider:
    environ = {"COHERE_BASE_URL": base_url, "COHERE_API_KEY": API_KEY, **(extra or {})}
    return cohere.SPEC.build(ProviderEnv(Settings(), environ, HttpTransport(1.0, read_timeout_s), FakeClock()))


def chat(provider: Provider, body: dict[str, Any], api_key: str | None = API_KEY) -> dict[str, Any]:
    model = str(body["model"]).removeprefix("cohere/")
    return provider.invoke(ProviderCall(RequestType.CHAT_COMPLETION, model, body, api_key=api_key))


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "cohere/command-a-03-2025", "messages": [{"role": "user", "content": "hi there"}], **extra}


def only_request(fake: CohereFake, path: str = "/v2/chat") -> RecordedRequest:
    [sent] = fake.requests
    assert (sent.method, sent.path, dict(sent.query)) == ("POST", path, {})
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["accept"] == "application/json"
    return sent


def invoke_failing(provider: Provider, call: ProviderCall) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.invoke(call)
    error = caught.value
    body = json.dumps(error.to_body("evt-1", {"provider": "cohere", "model_requested": call.model}))
    assert API_KEY not in str(error)
    assert API_KEY not in body
    return error


def chat_call(**extra: Any) -> ProviderCall:
    return ProviderCall(RequestType.CHAT_COMPLETION, "command-a-03-2025", chat_body(**extra), api_key=API_KEY)


def completion(
    reply_id: str,
    content: str | None,
    finish: str,
    usage: tuple[int, int],
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "command-a-03-2025",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": NOW,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]},
    }


# --- chat: the request sent -------------------------------------------------------------------------------


def test_chat_sends_v2_messages_and_mapped_parameters_and_returns_chat_completion(fake: CohereFake) -> None:
    body = chat_body(
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": [{"type": "text", "text": "And of "}, {"type": "text", "text": "Italy?"}]},
        ],
        temperature=0.3,
        top_p=0.9,
        max_completion_tokens=50,
        stop="###",
        seed=7,
        frequency_penalty=0.1,
        presence_penalty=0.2,
        user="user-42",
        stream=False,
    )

    result = chat(build(fake.base_url), body)

    sent = only_request(fake)
    assert sent.json == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": [{"type": "text", "text": "And of "}, {"type": "text", "text": "Italy?"}]},
        ],
        "stream": False,
        "max_tokens": 50,
        "temperature": 0.3,
        "p": 0.9,
        "seed": 7,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "stop_sequences": ["###"],
    }
    # usage.tokens (12 billed + 7 system tokens) is preferred over billed_units
    assert result == completion(answer_id(sent.json), "And of Italy?", "stop", (19, 3))


def test_developer_message_is_sent_as_system_and_list_content_as_its_text(fake: CohereFake) -> None:
    body = chat_body(
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "kind."}]},
            {"role": "user", "content": "hello"},
        ]
    )

    chat(build(fake.base_url), body)

    assert only_request(fake).json["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hello"},
    ]


def test_images_as_data_urls_and_http_urls_are_sent_as_image_url_parts(fake: CohereFake) -> None:
    content = [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://images.example.com/cat.jpg"}},
    ]

    result = chat(
        build(fake.base_url),
        chat_body(model="cohere/command-a-vision-07-2025", messages=[{"role": "user", "content": content}]),
    )

    assert only_request(fake).json["messages"] == [{"role": "user", "content": content}]
    assert result["choices"][0]["message"]["content"] == "Compare these"


def test_content_cohere_cannot_take_is_a_400_without_any_call(fake: CohereFake) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    call = chat_call(messages=[{"role": "user", "content": [audio]}])

    error = invoke_failing(build(fake.base_url), call)

    assert (error.status, error.code, error.param, error.retryable) == (400, "unsupported_content", "messages", False)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("tool_choice", "tools", "sent_choice"),
    [
        (None, [WEATHER_TOOL, TIME_TOOL], None),
        ("auto", [WEATHER_TOOL, TIME_TOOL], None),
        ("required", [WEATHER_TOOL, TIME_TOOL], "REQUIRED"),
        ("none", [WEATHER_TOOL, TIME_TOOL], "NONE"),
        ({"type": "function", "function": {"name": "get_time"}}, [TIME_TOOL], "REQUIRED"),
    ],
    ids=["absent", "auto", "required", "none", "named"],
)
def test_tool_definitions_and_tool_choice_are_sent_in_v2_form(
    fake: CohereFake, tool_choice: Any, tools: list[dict[str, Any]], sent_choice: str | None
) -> None:
    extra = {"tool_choice": tool_choice} if tool_choice is not None else {}

    chat(build(fake.base_url), chat_body(tools=[WEATHER_TOOL, TIME_TOOL], **extra))

    sent = only_request(fake).json
    expected_tools = [{"type": "function", "function": {"description": "", **tool["function"]}} for tool in tools]
    assert sent["tools"] == expected_tools
    assert sent.get("tool_choice") == sent_choice


def test_tool_calls_and_tool_results_in_history_and_a_tool_call_reply(fake: CohereFake) -> None:
    paris = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    rome = {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}
    asked = {
        "id": "get_time_x7k2p9",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"city":"Paris"}'},
    }
    fake.script_chat(
        chat_reply(
            reply_id="7b1d3c2a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            finish_reason="TOOL_CALL",
            tool_plan="I will check the time in Paris.",
            tool_calls=[asked],
            tokens=(120, 24),
        )
    )
    body = chat_body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome? And the time in Paris?"},
            {"role": "assistant", "content": "I will look both up.", "tool_calls": [paris, rome]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C, cloudy"}]},
        ],
        tools=[WEATHER_TOOL, TIME_TOOL],
    )

    result = chat(build(fake.base_url), body)

    assert only_request(fake).json["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome? And the time in Paris?"},
        {"role": "assistant", "tool_calls": [paris, rome], "tool_plan": "I will look both up."},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "21C, cloudy"},
    ]
    expected = completion(
        "7b1d3c2a-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "I will check the time in Paris.", "tool_calls", (120, 24), [asked]
    )
    assert result == expected


def test_assistant_tool_plan_given_by_the_client_is_kept_beside_its_text(fake: CohereFake) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": {"city": "Oslo"}}}
    body = chat_body(
        messages=[
            {"role": "user", "content": "Time in Oslo?"},
            {"role": "assistant", "content": "Checking.", "tool_plan": "Call get_time.", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": None},
        ]
    )

    chat(build(fake.base_url), body)

    sent = only_request(fake).json["messages"]
    assert sent[1] == {
        "role": "assistant",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": '{"city":"Oslo"}'}}
        ],
        "tool_plan": "Call get_time.",
        "content": "Checking.",
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": ""}


@pytest.mark.parametrize(
    ("response_format", "sent"),
    [
        ({"type": "text"}, {"type": "text"}),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {"type": "object"}}},
            {"type": "json_object", "json_schema": {"type": "object"}},
        ),
    ],
    ids=["text", "json_object", "json_schema"],
)
def test_response_format_is_sent_in_cohere_form(
    fake: CohereFake, response_format: dict[str, Any], sent: dict[str, Any]
) -> None:
    chat(build(fake.base_url), chat_body(response_format=response_format))

    assert only_request(fake).json["response_format"] == sent


# --- chat: the reply ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("SOMETHING_NEW", "stop")],
)
def test_finish_reason_maps_to_openai_finish_reason(fake: CohereFake, finish_reason: str, expected: str) -> None:
    fake.script_chat(chat_reply(reply_id="r-1", text="Bonjour", finish_reason=finish_reason))

    result = chat(build(fake.base_url), chat_body())

    assert result == completion("r-1", "Bonjour", expected, (12, 3))


def test_max_tokens_reached_is_length_and_stop_sequence_is_stop(fake: CohereFake) -> None:
    provider = build(fake.base_url)
    long_text = [{"role": "user", "content": "one two three four five. six"}]

    limited = chat(provider, chat_body(messages=long_text, max_tokens=2))
    stopped = chat(provider, chat_body(messages=long_text, stop=["."]))

    assert fake.requests[0].json["max_tokens"] == 2
    assert fake.requests[1].json["stop_sequences"] == ["."]
    assert (limited["choices"][0]["message"]["content"], limited["choices"][0]["finish_reason"]) == (
        "one two",
        "length",
    )
    assert (stopped["choices"][0]["message"]["content"], stopped["choices"][0]["finish_reason"]) == (
        "one two three four five",
        "stop",
    )


def test_usage_falls_back_to_billed_units_and_then_to_zero(fake: CohereFake) -> None:
    fake.script_chat(chat_reply(reply_id="r-2", text="ok", billed=(9, 4), tokens=None), times=1)
    fake.script_chat({"id": "r-3", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": []}})
    provider = build(fake.base_url)

    billed = chat(provider, chat_body())
    nothing = chat(provider, chat_body())

    assert billed["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    assert nothing == completion("r-3", None, "stop", (0, 0))


def test_error_finish_reason_is_a_retryable_502(fake: CohereFake) -> None:
    fake.script_chat(chat_reply(text="partial", finish_reason="ERROR"))

    error = invoke_failing(build(fake.base_url), chat_call())

    assert (error.status, error.error_type, error.code, error.retryable) == (
        502,
        "server_error",
        "generation_error",
        True,
    )


# --- responses over chat -------------------------------------------------------------------------------


def test_responses_request_is_served_through_v2_chat(fake: CohereFake) -> None:
    body = {
        "model": "cohere/command-a-03-2025",
        "instructions": "Be terse.",
        "input": "Say hi to Bob",
        "max_output_tokens": 20,
        "temperature": 0.5,
        "tools": [{"type": "function", "name": "greet", "description": "Greets", "parameters": {"type": "object"}}],
        "store": False,
    }

    result = build(fake.base_url).invoke(
        ProviderCall(RequestType.RESPONSES, "command-a-03-2025", body, api_key=API_KEY)
    )

    sent = only_request(fake).json
    assert sent == {
        "model": "command-a-03-2025",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi to Bob"}],
        "stream": False,
        "tools": [
            {
                "type": "function",
                "function": {"name": "greet", "description": "Greets", "parameters": {"type": "object"}},
            }
        ],
        "max_tokens": 20,
        "temperature": 0.5,
    }
    suffix = answer_id(sent)
    assert result == {
        "id": f"resp_{suffix}",
        "object": "response",
        "created_at": NOW,
        "status": "completed",
        "incomplete_details": None,
        "error": None,
        "model": "command-a-03-2025",
        "output": [
            {
                "type": "message",
                "id": f"msg_{suffix}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Say hi to Bob", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 13, "output_tokens": 4, "total_tokens": 17},
    }


def test_responses_function_call_items_round_trip_through_cohere_tool_calls(fake: CohereFake) -> None:
    asked = {"id": "greet_2", "type": "function", "function": {"name": "greet", "arguments": '{"name":"Ann"}'}}
    fake.script_chat(chat_reply(reply_id="r-9", finish_reason="TOOL_CALL", tool_calls=[asked], tokens=(30, 9)))
    body = {
        "model": "cohere/command-a-03-2025",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Greet Bob, then Ann"}]},
            {"type": "function_call", "call_id": "greet_1", "name": "greet", "arguments": '{"name":"Bob"}'},
            {"type": "function_call_output", "call_id": "greet_1", "output": "Hello Bob"},
        ],
    }

    result = build(fake.base_url).invoke(
        ProviderCall(RequestType.RESPONSES, "command-a-03-2025", body, api_key=API_KEY)
    )

    assert only_request(fake).json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Greet Bob, then Ann"}]},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "greet_1", "type": "function", "function": {"name": "greet", "arguments": '{"name":"Bob"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "greet_1", "content": "Hello Bob"},
    ]
    assert result["output"] == [
        {
            "type": "function_call",
            "id": "fc_greet_2",
            "call_id": "greet_2",
            "name": "greet",
            "arguments": '{"name":"Ann"}',
            "status": "completed",
        }
    ]
    assert result["usage"] == {"input_tokens": 30, "output_tokens": 9, "total_tokens": 39}


# --- embeddings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "input_type"),
    [({}, "search_document"), ({"input_type": "search_query"}, "search_query")],
    ids=["default_input_type", "client_input_type"],
)
def test_embedding_request_and_result(fake: CohereFake, extra: dict[str, Any], input_type: str) -> None:
    body = {"model": "cohere/embed-v4.0", "input": ["first doc", "second doc here"], "dimensions": 4, **extra}

    result = build(fake.base_url).invoke(ProviderCall(RequestType.EMBEDDING, "embed-v4.0", body, api_key=API_KEY))

    assert only_request(fake, "/v2/embed").json == {
        "model": "embed-v4.0",
        "texts": ["first doc", "second doc here"],
        "input_type": input_type,
        "embedding_types": ["float"],
        "output_dimension": 4,
    }
    assert result == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": embedding_vector("first doc", 4)},
            {"object": "embedding", "index": 1, "embedding": embedding_vector("second doc here", 4)},
        ],
        "model": "embed-v4.0",
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
    }


def test_single_string_input_is_one_text_without_output_dimension(fake: CohereFake) -> None:
    body = {"model": "cohere/embed-english-v3.0", "input": "just one"}

    result = build(fake.base_url).invoke(
        ProviderCall(RequestType.EMBEDDING, "embed-english-v3.0", body, api_key=API_KEY)
    )

    assert only_request(fake, "/v2/embed").json == {
        "model": "embed-english-v3.0",
        "texts": ["just one"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    assert [item["embedding"] for item in result["data"]] == [embedding_vector("just one", 8)]


def test_token_array_embedding_input_is_a_400_without_any_call(fake: CohereFake) -> None:
    body = {"model": "cohere/embed-v4.0", "input": [[1, 2, 3]]}

    error = invoke_failing(
        build(fake.base_url), ProviderCall(RequestType.EMBEDDING, "embed-v4.0", body, api_key=API_KEY)
    )

    assert (error.status, error.code, error.param) == (400, "unsupported_input", "input")
    assert fake.requests == []


# --- rerank ---------------------------------------------------------------------------------------------

QUERY = "capital of France"
DOCUMENTS = ["Paris is the capital of France", "Berlin is in Germany", "The capital of Italy is Rome"]


@pytest.mark.parametrize("return_documents", [True, False])
def test_rerank_sends_documents_as_strings_and_returns_ranked_results(fake: CohereFake, return_documents: bool) -> None:
    body = {
        "model": "cohere/rerank-v3.5",
        "query": QUERY,
        "documents": [DOCUMENTS[0], {"text": DOCUMENTS[1]}, DOCUMENTS[2]],
        "top_n": 2,
        "max_tokens_per_doc": 512,
        "return_documents": return_documents,
    }

    result = build(fake.base_url).invoke(ProviderCall(RequestType.RERANK, "rerank-v3.5", body, api_key=API_KEY))

    sent = only_request(fake, "/v2/rerank").json
    assert sent == {
        "model": "rerank-v3.5",
        "query": QUERY,
        "documents": DOCUMENTS,
        "top_n": 2,
        "max_tokens_per_doc": 512,
    }
    ranked: list[dict[str, Any]] = [{"index": i, "relevance_score": relevance(QUERY, DOCUMENTS[i])} for i in (0, 2)]
    if return_documents:
        ranked = [{**entry, "document": {"text": DOCUMENTS[entry["index"]]}} for entry in ranked]
    assert result == {"id": answer_id(sent), "results": ranked, "model": "rerank-v3.5", "usage": {"search_units": 1}}


# --- errors the provider answers -------------------------------------------------------------------------

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    498: "authentication_error",
    499: "request_cancelled",
    500: "server_error",
    503: "server_error",
    504: "server_error",
}


@pytest.mark.parametrize("status", list(ERROR_TYPES))
def test_cohere_error_body_maps_to_provider_error(fake: CohereFake, status: int) -> None:
    fake.script_error("/chat", status, f"the message for {status}", headers={"retry-after": "3"})

    error = invoke_failing(build(fake.base_url), chat_call())

    assert (error.status, error.error_type, error.message) == (status, ERROR_TYPES[status], f"the message for {status}")
    assert (error.code, error.param) == ("", None)
    assert error.retry_after_s == 3.0
    assert error.retryable is (status == 429 or status >= 500)
    assert error.is_bifrost_error is False


@pytest.mark.parametrize("path", ["/embed", "/rerank"])
def test_errors_of_embed_and_rerank_map_the_same_way(fake: CohereFake, path: str) -> None:
    fake.script_error(path, 429, headers={"Retry-After": "11"})
    calls = {
        "/embed": ProviderCall(RequestType.EMBEDDING, "embed-v4.0", {"input": "x"}, api_key=API_KEY),
        "/rerank": ProviderCall(RequestType.RERANK, "rerank-v3.5", {"query": "q", "documents": ["d"]}, api_key=API_KEY),
    }

    error = invoke_failing(build(fake.base_url), calls[path])

    assert (error.status, error.error_type, error.retry_after_s, error.retryable) == (
        429,
        "rate_limit_error",
        11.0,
        True,
    )


def test_wrong_or_missing_key_is_cohere_401_without_leaking_the_key(fake: CohereFake) -> None:
    provider = build(fake.base_url)
    wrong = ProviderCall(RequestType.CHAT_COMPLETION, "command-a-03-2025", chat_body(), api_key="co-wrong-key-000")
    missing = ProviderCall(RequestType.CHAT_COMPLETION, "command-a-03-2025", chat_body(), api_key=None)

    bad = invoke_failing(provider, wrong)
    absent = invoke_failing(provider, missing)

    assert (bad.status, bad.error_type, bad.message, bad.retryable) == (
        401,
        "authentication_error",
        "invalid api token",
        False,
    )
    assert (absent.status, absent.message) == (401, "no api key supplied")
    assert "authorization" not in fake.requests[1].headers


def test_key_echoed_in_an_error_message_is_redacted(fake: CohereFake) -> None:
    fake.script_error("/chat", 401, f"invalid api token {API_KEY}")

    error = invoke_failing(build(fake.base_url), chat_call())

    assert error.message == "invalid api token [redacted]"


def test_non_json_error_body_keeps_status_and_retry_after(fake: CohereFake) -> None:
    fake.script_raw(
        "/chat", 503, b"<html><h1>503 Service Temporarily Unavailable</h1></html>", headers={"Retry-After": "4"}
    )

    error = invoke_failing(build(fake.base_url), chat_call())

    assert (error.status, error.error_type, error.code, error.retry_after_s, error.retryable) == (
        503,
        "server_error",
        "",
        4.0,
        True,
    )
    assert error.message == "Cohere answered HTTP 503"


@pytest.mark.parametrize(
    ("path", "call", "content"),
    [
        ("/chat", chat_call(), b"<html>OK</html>"),
        ("/chat", chat_call(), b'[{"message": {}}]'),
        ("/chat", chat_call(), b'{"id": "r-1", "finish_reason": "COMPLETE"}'),
        ("/embed", ProviderCall(RequestType.EMBEDDING, "embed-v4.0", {"input": "x"}), b'{"id": "e", "embeddings": {}}'),
        (
            "/rerank",
            ProviderCall(RequestType.RERANK, "rerank-v3.5", {"query": "q", "documents": ["d"]}),
            b'{"id": "r", "results": [{"index": "0"}]}',
        ),
    ],
    ids=["html", "json_array", "chat_without_message", "embed_without_floats", "rerank_malformed"],
)
def test_success_status_with_unusable_body_is_502_invalid_response(
    fake: CohereFake, path: str, call: ProviderCall, content: bytes
) -> None:
    fake.script_raw(path, 200, content, "application/json")

    error = invoke_failing(
        build(fake.base_url), ProviderCall(call.request_type, call.model, call.body, api_key=API_KEY)
    )

    assert (error.status, error.code, error.retryable) == (502, "invalid_response", True)


def test_read_timeout_is_504_provider_timeout(fake: CohereFake) -> None:
    fake.script_delay("/chat", 3.0)

    error = invoke_failing(build(fake.base_url, read_timeout_s=0.2), chat_call())

    assert (error.status, error.code, error.retryable) == (504, "provider_timeout", True)


# --- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/", "/v2", "/v2/"])
def test_base_url_is_the_api_root_and_a_version_suffix_is_dropped(fake: CohereFake, suffix: str) -> None:
    chat(build(fake.base_url + suffix), chat_body())

    assert [r.path for r in fake.requests] == ["/v2/chat"]


def test_spec_names_cohere_key_variables_and_request_types() -> None:
    assert cohere.SPEC.name == "cohere"
    assert cohere.SPEC.key_variables == ("COHERE_API_KEY", "CO_API_KEY")
    assert cohere.SPEC.request_types == {
        RequestType.CHAT_COMPLETION,
        RequestType.RESPONSES,
        RequestType.EMBEDDING,
        RequestType.RERANK,
    }


def test_fake_environ_points_the_adapter_at_the_fake(fake: CohereFake) -> None:
    env = ProviderEnv(Settings(), fake.environ(), HttpTransport(1.0, 2.0), FakeClock())

    cohere.SPEC.build(env).invoke(chat_call())

    assert fake.environ() == {"COHERE_BASE_URL": fake.base_url, "COHERE_API_KEY": API_KEY}
    assert len(fake.requests_to("/chat")) == 1


# --- property: the chat translation loses nothing --------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
_CONTENT = st.one_of(_TEXT, st.lists(_TEXT.map(lambda text: {"type": "text", "text": text}), max_size=3))
_IDS = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=30)
_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
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
        st.dictionaries(st.text(max_size=6), _JSON, max_size=3),
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


def _calls(message: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls", [])
    ]


@settings(max_examples=200, deadline=None)
@given(_MESSAGES)
def test_chat_translation_keeps_every_message_role_text_and_tool_call(messages: list[dict[str, Any]]) -> None:
    payload = cohere.build_chat_payload(
        "command-a-03-2025", {"model": "cohere/command-a-03-2025", "messages": messages}
    )

    assert json.loads(json.dumps(payload)) == payload
    translated = payload["messages"]
    assert len(translated) == len(messages)
    for original, sent in zip(messages, translated, strict=True):
        role = "system" if original["role"] == "developer" else original["role"]
        text = shapes.message_text(original.get("content"))
        assert sent["role"] == role
        assert _calls(sent) == _calls(original)
        if role == "assistant" and original.get("tool_calls"):
            assert sent.get("tool_plan", "") == text
        elif role == "tool":
            assert (sent["tool_call_id"], sent["content"]) == (original["tool_call_id"], text)
        else:
            assert shapes.message_text(sent["content"]) == text
