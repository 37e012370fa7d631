"""Body parsing and per-type validation (contract §1–2): fields, model form, fallbacks, streaming."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.contract import JSON_ENDPOINTS, RequestType
from chalicelib.errors import InvalidRequest
from chalicelib.validation import InferenceRequest, ModelRef, parse_json_body, validate
from tests.fakes import AllProviders

CATALOG = AllProviders("mock", "openai", "openrouter")
JSON_TYPES = [e.request_type for e in JSON_ENDPOINTS]

VALID: dict[RequestType, dict[str, Any]] = {
    RequestType.TEXT_COMPLETION: {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Say hi"},
    RequestType.CHAT_COMPLETION: {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    RequestType.RESPONSES: {"model": "openai/gpt-4o-mini", "input": "hi"},
    RequestType.EMBEDDING: {"model": "openai/text-embedding-3-small", "input": ["a", "b"]},
    RequestType.SPEECH: {"model": "openai/tts-1", "input": "hello", "voice": "alloy"},
    RequestType.IMAGE_GENERATION: {"model": "openai/dall-e-3", "prompt": "a cat"},
    RequestType.RERANK: {"model": "mock/echo", "query": "cats", "documents": ["a cat", {"text": "a dog"}]},
    RequestType.OCR: {"model": "mock/echo", "document": {"type": "document_url", "document_url": "https://x/a.pdf"}},
}
REQUIRED: list[tuple[RequestType, str]] = [
    (RequestType.TEXT_COMPLETION, "prompt"),
    (RequestType.CHAT_COMPLETION, "messages"),
    (RequestType.RESPONSES, "input"),
    (RequestType.EMBEDDING, "input"),
    (RequestType.SPEECH, "input"),
    (RequestType.SPEECH, "voice"),
    (RequestType.IMAGE_GENERATION, "prompt"),
    (RequestType.RERANK, "query"),
    (RequestType.RERANK, "documents"),
    (RequestType.OCR, "document"),
] + [(t, "model") for t in JSON_TYPES]


class ChatOnlyCatalog:
    def is_known(self, provider: str) -> bool:
        return provider == "chatty"

    def supports(self, provider: str, request_type: RequestType) -> bool:
        return request_type == RequestType.CHAT_COMPLETION


def body_for(request_type: RequestType, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID[request_type])
    body.update(changes)
    return body


def rejection(request_type: RequestType, body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        validate(request_type, body, CATALOG)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_content_types_are_accepted(content_type: str) -> None:
    assert parse_json_body(b'{"a": 1}', content_type) == {"a": 1}


def test_structured_json_suffix_is_accepted() -> None:
    assert parse_json_body(b"{}", "application/vnd.api+json") == {}


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "multipart/form-data; boundary=x", "application/xml"])
def test_non_json_content_type_is_rejected(content_type: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_body(b'{"a": 1}', content_type)
    assert caught.value.code == "invalid_content_type"


@pytest.mark.parametrize("raw", [None, b"", b"{", b"{'a': 1}", b"\xff\xfe\xfa", b"[1, 2]", b'"text"', b"3", b"null"])
def test_empty_malformed_or_non_object_bodies_are_invalid_json(raw: bytes | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_body(raw, "application/json")
    assert caught.value.code == "invalid_json"


def test_deeply_nested_body_is_rejected_as_invalid_json() -> None:
    with pytest.raises(InvalidRequest):
        parse_json_body(b"[" * 100_000 + b"]" * 100_000, "application/json")


@pytest.mark.parametrize("request_type", JSON_TYPES)
def test_valid_body_becomes_a_typed_request(request_type: RequestType) -> None:
    request = validate(request_type, VALID[request_type], CATALOG)

    assert isinstance(request, InferenceRequest)
    assert request.request_type == request_type
    assert str(request.model) == VALID[request_type]["model"]
    assert request.fallbacks == ()
    assert request.body == VALID[request_type]


@pytest.mark.parametrize(("request_type", "field"), REQUIRED)
def test_missing_required_field_names_the_field(request_type: RequestType, field: str) -> None:
    body = body_for(request_type)
    del body[field]

    error = rejection(request_type, body)

    assert (error.code, error.param) == ("missing_required_field", field)


@pytest.mark.parametrize(("request_type", "field"), REQUIRED)
def test_null_required_field_counts_as_missing(request_type: RequestType, field: str) -> None:
    error = rejection(request_type, body_for(request_type, **{field: None}))

    assert (error.code, error.param) == ("missing_required_field", field)


@pytest.mark.parametrize(
    ("request_type", "field", "value", "param"),
    [
        (RequestType.TEXT_COMPLETION, "prompt", 42, "prompt"),
        (RequestType.TEXT_COMPLETION, "prompt", [], "prompt"),
        (RequestType.CHAT_COMPLETION, "messages", [], "messages"),
        (RequestType.CHAT_COMPLETION, "messages", {"role": "user"}, "messages"),
        (RequestType.CHAT_COMPLETION, "messages", ["hi"], "messages[0]"),
        (RequestType.CHAT_COMPLETION, "messages", [{"role": "user"}, {"role": ""}], "messages[1].role"),
        (RequestType.CHAT_COMPLETION, "messages", [{"role": 7}], "messages[0].role"),
        (RequestType.RESPONSES, "input", {"text": "hi"}, "input"),
        (RequestType.EMBEDDING, "input", 3.5, "input"),
        (RequestType.EMBEDDING, "dimensions", 0, "dimensions"),
        (RequestType.EMBEDDING, "dimensions", True, "dimensions"),
        (RequestType.EMBEDDING, "dimensions", 16385, "dimensions"),
        (RequestType.SPEECH, "input", "   ", "input"),
        (RequestType.SPEECH, "voice", 3, "voice"),
        (RequestType.IMAGE_GENERATION, "prompt", "", "prompt"),
        (RequestType.IMAGE_GENERATION, "n", 0, "n"),
        (RequestType.IMAGE_GENERATION, "n", 11, "n"),
        (RequestType.IMAGE_GENERATION, "n", "2", "n"),
        (RequestType.RERANK, "query", 1, "query"),
        (RequestType.OCR, "document", "https://x/a.pdf", "document"),
    ],
)
def test_wrong_field_type_names_the_field(request_type: RequestType, field: str, value: Any, param: str) -> None:
    error = rejection(request_type, body_for(request_type, **{field: value}))

    assert (error.code, error.param) == ("invalid_field_type", param)


def test_chat_message_without_role_is_a_missing_field() -> None:
    body = body_for(RequestType.CHAT_COMPLETION, messages=[{"role": "system", "content": "x"}, {"content": "hi"}])

    error = rejection(RequestType.CHAT_COMPLETION, body)

    assert (error.code, error.param) == ("missing_required_field", "messages[1].role")


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"query": "   "}, "query"),
        ({"query": ""}, "query"),
        ({"documents": []}, "documents"),
        ({"documents": "a cat"}, "documents"),
        ({"documents": ["ok", {"title": "no text"}]}, "documents[1]"),
        ({"documents": [{"text": "  "}]}, "documents[0]"),
        ({"documents": [{"text": 5}]}, "documents[0]"),
        ({"documents": ["ok", 3]}, "documents[1]"),
        ({"documents": [""]}, "documents[0]"),
        ({"top_n": 0}, "top_n"),
        ({"top_n": -3}, "top_n"),
        ({"top_n": True}, "top_n"),
        ({"top_n": 1.5}, "top_n"),
        ({"top_n": "2"}, "top_n"),
    ],
)
def test_rerank_rules_reject_with_the_offending_param(changes: dict[str, Any], param: str) -> None:
    error = rejection(RequestType.RERANK, body_for(RequestType.RERANK, **changes))

    assert error.param == param


@pytest.mark.parametrize("top_n", [1, 2, 100, None])
def test_rerank_accepts_positive_or_absent_top_n(top_n: int | None) -> None:
    validate(RequestType.RERANK, body_for(RequestType.RERANK, top_n=top_n), CATALOG)


@pytest.mark.parametrize(
    "document",
    [
        {"type": "document_url", "document_url": "https://x/a.pdf"},
        {"type": "image_url", "image_url": "https://x/a.png"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ],
)
def test_ocr_accepts_url_documents(document: dict[str, Any]) -> None:
    validate(RequestType.OCR, body_for(RequestType.OCR, document=document), CATALOG)


@pytest.mark.parametrize(
    ("document", "code", "param"),
    [
        ({"document_url": "https://x/a.pdf"}, "invalid_field_type", "document.type"),
        ({"type": "pdf", "document_url": "https://x/a.pdf"}, "invalid_field_type", "document.type"),
        ({"type": "document_url"}, "missing_required_field", "document.document_url"),
        ({"type": "image_url", "document_url": "https://x/a.pdf"}, "missing_required_field", "document.image_url"),
        ({"type": "image_url", "image_url": {"url": "  "}}, "missing_required_field", "document.image_url"),
        ({"type": "document_url", "document_url": 42}, "missing_required_field", "document.document_url"),
    ],
)
def test_ocr_document_rules(document: dict[str, Any], code: str, param: str) -> None:
    error = rejection(RequestType.OCR, body_for(RequestType.OCR, document=document))

    assert (error.code, error.param) == (code, param)


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("gpt-4o-mini", "invalid_model"),
        ("/gpt-4o-mini", "invalid_model"),
        ("openai/", "invalid_model"),
        ("openai/   ", "invalid_model"),
        ("", "invalid_model"),
        (42, "invalid_field_type"),
        (["openai/gpt-4o"], "invalid_field_type"),
        ("nope/gpt-4o", "unsupported_provider"),
    ],
)
def test_model_must_be_a_known_provider_slash_model(model: Any, code: str) -> None:
    error = rejection(RequestType.CHAT_COMPLETION, body_for(RequestType.CHAT_COMPLETION, model=model))

    assert (error.code, error.param) == (code, "model")


def test_model_of_a_provider_that_does_not_serve_the_type_is_rejected() -> None:
    body = body_for(RequestType.EMBEDDING, model="chatty/model")

    with pytest.raises(InvalidRequest) as caught:
        validate(RequestType.EMBEDDING, body, ChatOnlyCatalog())

    assert (caught.value.code, caught.value.param) == ("unsupported_request_type", "model")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openrouter/anthropic/claude-3.5-sonnet", ModelRef("openrouter", "anthropic/claude-3.5-sonnet")),
        ("openrouter/a/b/c", ModelRef("openrouter", "a/b/c")),
        ("  openai/gpt-4o-mini  ", ModelRef("openai", "gpt-4o-mini")),
    ],
)
def test_model_keeps_everything_after_the_first_slash(model: str, expected: ModelRef) -> None:
    request = validate(RequestType.CHAT_COMPLETION, body_for(RequestType.CHAT_COMPLETION, model=model), CATALOG)

    assert request.model == expected


@pytest.mark.parametrize("fallbacks", [None, []])
def test_absent_or_empty_fallbacks_give_none(fallbacks: list[str] | None) -> None:
    body = body_for(RequestType.CHAT_COMPLETION, fallbacks=fallbacks)

    assert validate(RequestType.CHAT_COMPLETION, body, CATALOG).fallbacks == ()


def test_fallbacks_are_parsed_in_order() -> None:
    body = body_for(RequestType.CHAT_COMPLETION, fallbacks=["mock/echo", "openrouter/meta/llama-3"])

    request = validate(RequestType.CHAT_COMPLETION, body, CATALOG)

    assert request.fallbacks == (ModelRef("mock", "echo"), ModelRef("openrouter", "meta/llama-3"))


@pytest.mark.parametrize(
    ("fallbacks", "code"),
    [
        ("mock/echo", "invalid_field_type"),
        ({"model": "mock/echo"}, "invalid_field_type"),
        ([42], "invalid_field_type"),
        (["mock/echo", None], "missing_required_field"),
        (["echo"], "invalid_model"),
        (["nope/x"], "unsupported_provider"),
    ],
)
def test_invalid_fallbacks_are_rejected_with_param_fallbacks(fallbacks: Any, code: str) -> None:
    error = rejection(RequestType.CHAT_COMPLETION, body_for(RequestType.CHAT_COMPLETION, fallbacks=fallbacks))

    assert (error.code, error.param) == (code, "fallbacks")


@pytest.mark.parametrize(
    ("request_type", "flag", "message"),
    [
        (RequestType.TEXT_COMPLETION, {"stream": True}, "stream is not supported for async text completions"),
        (RequestType.CHAT_COMPLETION, {"stream": True}, "stream is not supported for async chat completions"),
        (RequestType.RESPONSES, {"stream": True}, "stream is not supported for async responses"),
        (RequestType.IMAGE_GENERATION, {"stream": True}, "stream is not supported for async image generations"),
        (RequestType.SPEECH, {"stream_format": "sse"}, "stream is not supported for async speech"),
    ],
)
def test_streaming_is_refused_with_the_contract_message(
    request_type: RequestType, flag: dict[str, Any], message: str
) -> None:
    error = rejection(request_type, body_for(request_type, **flag))

    assert error.code == "stream_not_supported"
    assert error.message == message
    assert error.param == next(iter(flag))


@pytest.mark.parametrize(
    ("request_type", "flag"),
    [
        (RequestType.CHAT_COMPLETION, {"stream": False}),
        (RequestType.TEXT_COMPLETION, {"stream": False}),
        (RequestType.SPEECH, {"stream_format": "audio"}),
    ],
)
def test_non_streaming_flags_are_accepted(request_type: RequestType, flag: dict[str, Any]) -> None:
    validate(request_type, body_for(request_type, **flag), CATALOG)


@pytest.mark.parametrize(
    ("request_type", "flag", "param"),
    [
        (RequestType.CHAT_COMPLETION, {"stream": "true"}, "stream"),
        (RequestType.CHAT_COMPLETION, {"stream": 1}, "stream"),
        (RequestType.SPEECH, {"stream_format": True}, "stream_format"),
    ],
)
def test_stream_flags_of_the_wrong_type_are_rejected(
    request_type: RequestType, flag: dict[str, Any], param: str
) -> None:
    error = rejection(request_type, body_for(request_type, **flag))

    assert (error.code, error.param) == ("invalid_field_type", param)


def test_field_errors_are_reported_before_the_stream_refusal() -> None:
    error = rejection(RequestType.CHAT_COMPLETION, {"model": "mock/echo", "stream": True})

    assert error.param == "messages"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = sorted({name for body in VALID.values() for name in body} | {"fallbacks", "stream", "top_n", "n"})
PLAUSIBLE = st.fixed_dictionaries(
    {},
    optional={
        **{name: JSON_VALUES for name in FIELD_NAMES},
        "model": st.sampled_from(["mock/echo", "openai/gpt-4o", "x", "mock/"]) | JSON_VALUES,
        "messages": st.lists(st.dictionaries(st.sampled_from(["role", "content"]), JSON_VALUES), max_size=3),
        "documents": st.lists(JSON_VALUES | st.fixed_dictionaries({"text": JSON_VALUES}), max_size=3),
        "document": st.fixed_dictionaries(
            {"type": st.sampled_from(["image_url", "document_url", "pdf"]) | JSON_VALUES},
            optional={"image_url": JSON_VALUES, "document_url": JSON_VALUES},
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(JSON_TYPES), st.dictionaries(st.text(max_size=10).filter(lambda k: k != "model"), JSON_VALUES))
def test_any_object_without_model_is_rejected_with_param_model(request_type: RequestType, body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate(request_type, body, CATALOG)

    assert caught.value.param == "model"


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(JSON_TYPES), PLAUSIBLE | st.dictionaries(st.text(max_size=10), JSON_VALUES))
def test_validation_raises_only_invalid_request(request_type: RequestType, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    try:
        validate(request_type, parse_json_body(raw, "application/json"), CATALOG)
    except InvalidRequest as error:
        assert error.status == 400
        assert error.message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_body_parsing_raises_only_invalid_request_for_arbitrary_bytes(raw: bytes) -> None:
    try:
        assert isinstance(parse_json_body(raw, "application/json"), dict)
    except InvalidRequest as error:
        assert error.code == "invalid_json"
