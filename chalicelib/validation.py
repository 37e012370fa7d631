"""Parse and validate submit bodies into typed requests (contract §1–2).

Owns the required-field rules per request type, the ``provider/model`` form, the
``fallbacks`` list and the streaming refusal. Pure: no I/O, no AWS, no HTTP framework.
Every failure is an ``InvalidRequest`` whose ``param`` names the offending field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.contract import BY_TYPE, RequestType
from chalicelib.errors import InvalidRequest


@dataclass(frozen=True)
class ModelRef:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """``provider/model`` (the model may hold more slashes); ``ValueError`` otherwise."""
        provider, sep, model = text.strip().partition("/")
        if not sep or not provider or not model.strip():
            raise ValueError(text)
        return cls(provider, model.strip())


@dataclass(frozen=True)
class InferenceRequest:
    request_type: RequestType
    model: ModelRef
    fallbacks: tuple[ModelRef, ...]
    body: Mapping[str, Any]


class ProviderCatalog(Protocol):
    def is_known(self, provider: str) -> bool: ...

    def supports(self, provider: str, request_type: RequestType) -> bool: ...


GATEWAY_FIELDS = frozenset({"fallbacks"})  # the gateway's own fields, never sent to a provider


def parse_json_body(raw: bytes | None, content_type: str | None) -> dict[str, Any]:
    """Decode a JSON object body; the content type must say JSON."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidRequest("Content-Type must be application/json", code="invalid_content_type")
    if not raw:
        raise InvalidRequest("request body is empty", code="invalid_json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    return body


def canonical_json(body: Mapping[str, Any]) -> str:
    """Compact JSON text of a validated body; text that is not valid Unicode is refused."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("request body contains an invalid Unicode escape", code="invalid_json") from None
    return text


def validate(request_type: RequestType, body: Mapping[str, Any], catalog: ProviderCatalog) -> InferenceRequest:
    """Check ``body`` for ``request_type``: fields, model, fallbacks, then streaming."""
    model = parse_model(body.get("model"), "model", request_type, catalog)
    _FIELD_RULES[request_type](body)
    fallbacks = parse_fallbacks(body.get("fallbacks"), request_type, catalog)
    _refuse_streaming(request_type, body)
    return InferenceRequest(request_type, model, fallbacks, body)


def parse_model(value: Any, param: str, request_type: RequestType, catalog: ProviderCatalog) -> ModelRef:
    if value is None:
        raise missing(param)
    if not isinstance(value, str):
        raise wrong_type(param, "a string")
    try:
        ref = ModelRef.parse(value)
    except ValueError:
        raise InvalidRequest(
            f"{param} must be in provider/model form, e.g. openai/gpt-4o-mini",
            param=param,
            code="invalid_model",
        ) from None
    provider = ref.provider
    if not catalog.is_known(provider):
        raise InvalidRequest(f"unsupported provider: {provider}", param=param, code="unsupported_provider")
    if not catalog.supports(provider, request_type):
        raise InvalidRequest(
            f"provider {provider} does not support {BY_TYPE[request_type].label}",
            param=param,
            code="unsupported_request_type",
        )
    return ref


def parse_fallbacks(value: Any, request_type: RequestType, catalog: ProviderCatalog) -> tuple[ModelRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise wrong_type("fallbacks", "an array of provider/model strings")
    return tuple(parse_model(item, "fallbacks", request_type, catalog) for item in value)


def stream_refused(request_type: RequestType, param: str = "stream") -> InvalidRequest:
    label = BY_TYPE[request_type].label
    return InvalidRequest(f"stream is not supported for async {label}", param=param, code="stream_not_supported")


def _refuse_streaming(request_type: RequestType, body: Mapping[str, Any]) -> None:
    if request_type == RequestType.SPEECH:
        fmt = body.get("stream_format")
        if fmt is not None and not isinstance(fmt, str):
            raise wrong_type("stream_format", "a string")
        streaming = fmt == "sse"
    else:
        flag = body.get("stream")
        if flag is not None and not isinstance(flag, bool):
            raise wrong_type("stream", "a boolean")
        streaming = flag is True and request_type in _STREAMABLE
    if streaming:
        raise stream_refused(request_type, "stream_format" if request_type == RequestType.SPEECH else "stream")


_STREAMABLE = frozenset(
    {
        RequestType.TEXT_COMPLETION,
        RequestType.CHAT_COMPLETION,
        RequestType.RESPONSES,
        RequestType.IMAGE_GENERATION,
        RequestType.TRANSCRIPTION,
        RequestType.IMAGE_EDIT,
    }
)


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"{param} is required", param=param, code="missing_required_field")


def wrong_type(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"{param} must be {expected}", param=param, code="invalid_field_type")


def _require(body: Mapping[str, Any], param: str, check: Callable[[Any], bool], expected: str) -> Any:
    value = body.get(param)
    if value is None:
        raise missing(param)
    if not check(value):
        raise wrong_type(param, expected)
    return value


def is_nonblank(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_text_or_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and len(value) > 0)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_completion(body: Mapping[str, Any]) -> None:
    _require(body, "prompt", _is_text_or_list, "a string or a non-empty array")


def _check_chat(body: Mapping[str, Any]) -> None:
    messages = _require(body, "messages", lambda v: isinstance(v, list) and len(v) > 0, "a non-empty array")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise wrong_type(param, "an object")
        role = message.get("role")
        if role is None:
            raise missing(f"{param}.role")
        if not is_nonblank(role):
            raise wrong_type(f"{param}.role", "a non-empty string")


def _check_responses(body: Mapping[str, Any]) -> None:
    _require(body, "input", _is_text_or_list, "a string or a non-empty array")


def _check_embedding(body: Mapping[str, Any]) -> None:
    _require(body, "input", _is_text_or_list, "a string or a non-empty array")
    dimensions = body.get("dimensions")
    if dimensions is not None and not (is_int(dimensions) and 1 <= dimensions <= 16384):
        raise wrong_type("dimensions", "an integer between 1 and 16384")


def _check_speech(body: Mapping[str, Any]) -> None:
    _require(body, "input", is_nonblank, "a non-empty string")
    _require(body, "voice", lambda v: is_nonblank(v) or isinstance(v, dict), "a string")


def _check_image_generation(body: Mapping[str, Any]) -> None:
    _require(body, "prompt", is_nonblank, "a non-empty string")
    count = body.get("n")
    if count is not None and not (is_int(count) and 1 <= count <= 10):
        raise wrong_type("n", "an integer between 1 and 10")


def _check_rerank(body: Mapping[str, Any]) -> None:
    _require(body, "query", is_nonblank, "a non-blank string")
    documents = _require(body, "documents", lambda v: isinstance(v, list) and len(v) > 0, "a non-empty array")
    for index, document in enumerate(documents):
        text = document.get("text") if isinstance(document, dict) else document
        if not is_nonblank(text):
            raise wrong_type(f"documents[{index}]", "a non-blank string or an object with non-blank text")
    top_n = body.get("top_n")
    if top_n is not None and not (is_int(top_n) and top_n >= 1):
        raise wrong_type("top_n", "an integer of at least 1")


def _check_ocr(body: Mapping[str, Any]) -> None:
    document = _require(body, "document", lambda v: isinstance(v, dict), "an object")
    kind = document.get("type")
    if kind not in ("image_url", "document_url"):
        raise InvalidRequest(
            "document.type must be image_url or document_url",
            param="document.type",
            code="invalid_field_type",
        )
    location = document.get(kind)
    if isinstance(location, dict):
        location = location.get("url")
    if not is_nonblank(location):
        raise missing(f"document.{kind}")


_FIELD_RULES: dict[RequestType, Callable[[Mapping[str, Any]], None]] = {
    RequestType.TEXT_COMPLETION: _check_completion,
    RequestType.CHAT_COMPLETION: _check_chat,
    RequestType.RESPONSES: _check_responses,
    RequestType.EMBEDDING: _check_embedding,
    RequestType.SPEECH: _check_speech,
    RequestType.IMAGE_GENERATION: _check_image_generation,
    RequestType.RERANK: _check_rerank,
    RequestType.OCR: _check_ocr,
}
