"""Mistral AI adapter: chat, responses (over chat), embeddings and OCR.

Owns the requests sent to ``/v1/chat/completions``, ``/v1/embeddings`` and ``/v1/ocr``
below ``MISTRAL_BASE_URL`` (the API root, without ``/v1``), the normalisation of
Mistral's replies into the contract's shapes, and Mistral's error bodies
(``{"object": "error", "message", "type", "param", "code"}`` and the validation
``{"detail": [{"loc", "msg", "type"}]}`` forms) as ``ProviderError``.

Mistral's API is OpenAI-like but strict: unknown fields are refused (422
``extra_forbidden``) and tool-call ids must be nine letters or digits. So only the
fields Mistral documents are sent, and other ids are mapped, deterministically, to
valid ones. Pure builders and parsers plus a thin class; no HTTP except through
``env.transport``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import string
from collections.abc import Mapping
from typing import Any

from chalicelib.clock import Clock
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import shapes
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv, ProviderSpec
from chalicelib.providers.http_api import JsonApi, Operation, dispatch
from chalicelib.providers.transport import HttpResponse, HttpTransport

DEFAULT_BASE_URL = "https://api.mistral.ai"

PATHS: dict[RequestType, str] = {
    RequestType.CHAT_COMPLETION: "/v1/chat/completions",
    RequestType.RESPONSES: "/v1/chat/completions",
    RequestType.EMBEDDING: "/v1/embeddings",
    RequestType.OCR: "/v1/ocr",
}

# Chat request fields Mistral documents and takes under the same name as OpenAI.
CHAT_FIELDS = (
    "temperature",
    "top_p",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "parallel_tool_calls",
    "prediction",
    "prompt_mode",
    "safe_prompt",
)
# Message fields Mistral accepts, per role.
MESSAGE_FIELDS = {
    "system": ("content",),
    "user": ("content",),
    "assistant": ("content", "tool_calls", "prefix"),
    "tool": ("content", "tool_call_id", "name"),
}
OCR_FIELDS = (
    "pages",
    "include_image_base64",
    "image_limit",
    "image_min_size",
    "bbox_annotation_format",
    "document_annotation_format",
)
FINISH_REASONS = {"stop": "stop", "length": "length", "model_length": "length", "tool_calls": "tool_calls"}

_VALID_CALL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ID_ALPHABET = string.ascii_letters + string.digits


# --- chat ------------------------------------------------------------------------------------


def build_chat_payload(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Mistral's chat body: documented fields only, ``max_tokens`` and ``random_seed`` renamed."""
    payload: dict[str, Any] = {"model": model, "messages": mistral_messages(body.get("messages"))}
    limit = shapes.max_tokens(body)
    if limit is not None:
        payload["max_tokens"] = limit
    for name in CHAT_FIELDS:
        if body.get(name) is not None:
            payload[name] = body[name]
    if payload.get("tool_choice") == "required":
        payload["tool_choice"] = "any"
    seed = body.get("seed")
    if "random_seed" not in payload and isinstance(seed, int) and not isinstance(seed, bool):
        payload["random_seed"] = seed
    return payload


def mistral_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI chat messages as Mistral takes them (``developer`` is a system message)."""
    return [_message(m) for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    role = "system" if message.get("role") == "developer" else message.get("role")
    if not isinstance(role, str) or role not in MESSAGE_FIELDS:
        raise ProviderError(
            f"Mistral does not accept chat messages with role {role!r}",
            status=400,
            code="unsupported_role",
            param="messages",
        )
    result: dict[str, Any] = {"role": role}
    for name in MESSAGE_FIELDS[role]:
        if message.get(name) is not None:
            result[name] = message[name]
    if role != "assistant" and "content" not in result:
        result["content"] = ""
    if role == "assistant" and isinstance(message.get("tool_calls"), list):
        calls = [_request_tool_call(call) for call in message["tool_calls"] if isinstance(call, dict)]
        if calls:
            result["tool_calls"] = calls
        else:
            result.pop("tool_calls", None)
    if role == "tool":
        result["tool_call_id"] = mistral_call_id(str(message.get("tool_call_id") or ""))
    return result


def _request_tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = _mapping(call.get("function"))
    arguments = function.get("arguments")
    return {
        "id": mistral_call_id(str(call.get("id") or "")),
        "type": "function",
        "function": {"name": str(function.get("name") or ""), "arguments": "{}" if arguments is None else arguments},
    }


def mistral_call_id(call_id: str) -> str:
    """A valid id unchanged; any other as nine letters and digits derived from it (stable)."""
    if _VALID_CALL_ID.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    letters = []
    for _ in range(9):
        number, digit = divmod(number, len(_ID_ALPHABET))
        letters.append(_ID_ALPHABET[digit])
    return "".join(letters)


def parse_chat_response(reply: Mapping[str, Any], model: str, created: int) -> dict[str, Any]:
    """Mistral's (OpenAI-like) reply as an exact ``chat.completion``, missing fields filled."""
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise _invalid("Mistral's chat reply has no choices")
    usage = _mapping(reply.get("usage"))
    served = _text(reply.get("model")) or model
    stamp = _count(reply.get("created")) or created
    normalised = []
    result: dict[str, Any] = {}
    for position, choice in enumerate(choices):
        content, calls, finish = _choice_parts(choice)
        built = shapes.chat_completion(
            id=str(reply.get("id") or ""),
            model=served,
            created=stamp,
            content=content,
            finish_reason=finish,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            tool_calls=calls,
        )
        entry = built["choices"][0]
        entry["index"] = choice["index"] if isinstance(choice.get("index"), int) else position
        normalised.append(entry)
        result = result or built
    result["choices"] = normalised
    return result


def _choice_parts(choice: Mapping[str, Any]) -> tuple[str | None, list[dict[str, Any]], str]:
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _invalid("Mistral's chat reply has a choice without a message")
    if choice.get("finish_reason") == "error":
        raise ProviderError(
            "Mistral stopped the generation with an error",
            status=502,
            error_type="server_error",
            code="generation_error",
        )
    calls = []
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        function = _mapping(call.get("function"))
        arguments = function.get("arguments")
        calls.append(
            shapes.tool_call(
                str(call.get("id") or ""), str(function.get("name") or ""), "{}" if arguments is None else arguments
            )
        )
    text = shapes.message_text(message.get("content"))  # text chunks only; "thinking" chunks are left out
    finish = FINISH_REASONS.get(str(choice.get("finish_reason")), "tool_calls" if calls else "stop")
    return (text if text or not calls else None), calls, finish


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- embeddings and OCR ----------------------------------------------------------------------


def build_embedding_payload(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "input": shapes.embedding_inputs(body.get("input"))}
    dimensions = body.get("dimensions", body.get("output_dimension"))
    if isinstance(dimensions, int) and not isinstance(dimensions, bool):
        payload["output_dimension"] = dimensions
    return payload


def parse_embedding_response(reply: Mapping[str, Any], model: str) -> dict[str, Any]:
    data = reply.get("data")
    if not isinstance(data, list) or not all(
        isinstance(item, dict) and isinstance(item.get("embedding"), list) for item in data
    ):
        raise _invalid("Mistral's embeddings reply has no embeddings")
    ordered = sorted(enumerate(data), key=lambda pair: (_count(pair[1].get("index", pair[0])), pair[0]))
    usage = _mapping(reply.get("usage"))
    served = _text(reply.get("model")) or model
    return shapes.embedding_list([item["embedding"] for _, item in ordered], served, _count(usage.get("prompt_tokens")))


def build_ocr_payload(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    document = body.get("document")
    kind = document.get("type") if isinstance(document, dict) else None
    if not isinstance(document, dict) or kind not in ("document_url", "image_url") or not document.get(kind):
        raise ProviderError(
            "document must have type document_url or image_url and the matching field",
            status=400,
            error_type="invalid_request_error",
            code="invalid_document",
            param="document",
        )
    sent: dict[str, Any] = {"type": kind, kind: document[kind]}
    if kind == "document_url" and isinstance(document.get("document_name"), str):
        sent["document_name"] = document["document_name"]
    payload: dict[str, Any] = {"model": model, "document": sent}
    for name in OCR_FIELDS:
        if body.get(name) is not None:
            payload[name] = body[name]
    return payload


def parse_ocr_response(reply: Mapping[str, Any]) -> dict[str, Any]:
    """Mistral's OCR reply is the contract's OCR result: returned as is once checked."""
    if not isinstance(reply.get("pages"), list):
        raise _invalid("Mistral's OCR reply has no pages")
    return dict(reply)


# --- errors ------------------------------------------------------------------------------------


def parse_error(response: HttpResponse, secret: str | None = None) -> ProviderError:
    """Mistral's error body (any of its forms) as a ``ProviderError``.

    Validation failures (422) carry ``detail: [{"loc", "msg", "type"}]``, at the top level
    or inside ``message`` (as an object, a list or JSON text): the first ``msg`` becomes
    the message and the last element of its ``loc`` the param.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    message = body.get("message")
    if isinstance(message, str) and message.lstrip().startswith(("{", "[")):
        with contextlib.suppress(ValueError):
            message = json.loads(message)
    details = _details(body.get("detail")) or _details(message)
    param = body.get("param") if isinstance(body.get("param"), str) and body.get("param") else None
    text = message if isinstance(message, str) and message.strip() else None
    if text is None and isinstance(body.get("detail"), str) and body["detail"].strip():
        text = body["detail"]
    if details:
        text = text or str(details[0].get("msg") or "") or None
        loc = details[0].get("loc")
        if param is None and isinstance(loc, list) and loc:
            param = str(loc[-1])
    code = body.get("code")
    return ProviderError(
        text or f"Mistral answered HTTP {response.status}",
        status=response.status,
        error_type=body.get("type") if isinstance(body.get("type"), str) and body.get("type") else None,
        code=str(code) if code not in (None, "") and not isinstance(code, dict | list) else None,
        param=param,
        retry_after_s=response.retry_after_s(),
        secret=secret,
    )


def _details(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        value = value.get("detail")
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _invalid(message: str) -> ProviderError:
    return ProviderError(message, status=502, code="invalid_response")


# --- the provider --------------------------------------------------------------------------------


class MistralProvider:
    def __init__(self, transport: HttpTransport, base_url: str, clock: Clock) -> None:
        self._api = JsonApi(transport, base_url, parse_error)
        self._clock = clock
        self._operations: dict[RequestType, Operation] = {
            RequestType.CHAT_COMPLETION: lambda call: self._chat(call.model, call.body, call.api_key),
            RequestType.RESPONSES: self._responses,
            RequestType.EMBEDDING: self._embed,
            RequestType.OCR: self._ocr,
        }

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        return dispatch("mistral", self._operations, call)

    def _chat(self, model: str, body: Mapping[str, Any], api_key: str | None) -> dict[str, Any]:
        reply = self._post(PATHS[RequestType.CHAT_COMPLETION], build_chat_payload(model, body), api_key)
        return parse_chat_response(reply, model, int(self._clock.now()))

    def _responses(self, call: ProviderCall) -> dict[str, Any]:
        chat = self._chat(call.model, shapes.chat_request_from_responses(call.body), call.api_key)
        return shapes.responses_from_chat(chat)

    def _embed(self, call: ProviderCall) -> dict[str, Any]:
        reply = self._post(PATHS[RequestType.EMBEDDING], build_embedding_payload(call.model, call.body), call.api_key)
        return parse_embedding_response(reply, call.model)

    def _ocr(self, call: ProviderCall) -> dict[str, Any]:
        reply = self._post(PATHS[RequestType.OCR], build_ocr_payload(call.model, call.body), call.api_key)
        return parse_ocr_response(reply)

    def _post(self, path: str, payload: Mapping[str, Any], api_key: str | None) -> dict[str, Any]:
        return self._api.post(path, payload, api_key).json_object()


def _build(env: ProviderEnv) -> Provider:
    return MistralProvider(env.transport, env.base_url("mistral", DEFAULT_BASE_URL, strip="/v1"), env.clock)


SPEC = ProviderSpec("mistral", frozenset(PATHS), _build, key_variables=("MISTRAL_API_KEY",))
