"""Cohere adapter (API v2): chat, responses (over chat), embeddings and rerank.

Owns the translation between the client's OpenAI-style requests and Cohere's v2 wire
format at ``/v2/chat``, ``/v2/embed`` and ``/v2/rerank`` below ``COHERE_BASE_URL`` (the
API root, without ``/v2``), the translation of Cohere's replies into the contract's
OpenAI-style results, and of Cohere's error body ``{"id", "message"}`` into
``ProviderError``. Pure builders and parsers plus a thin class: no retries, no key
choice, no HTTP except through ``env.transport``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chalicelib.clock import Clock
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import shapes
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv, ProviderSpec
from chalicelib.providers.http_api import JsonApi, Operation, dispatch
from chalicelib.providers.transport import HttpResponse, HttpTransport

DEFAULT_BASE_URL = "https://api.cohere.com"
DEFAULT_INPUT_TYPE = "search_document"

PATHS: dict[RequestType, str] = {
    RequestType.CHAT_COMPLETION: "/v2/chat",
    RequestType.RESPONSES: "/v2/chat",
    RequestType.EMBEDDING: "/v2/embed",
    RequestType.RERANK: "/v2/rerank",
}

FINISH_REASONS = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}

# Statuses Cohere documents beyond the errors module's defaults (which cover the rest).
ERROR_TYPES = {402: "billing_error", 498: "authentication_error", 499: "request_cancelled"}

# Sampling parameters: OpenAI name → Cohere v2 name.
CHAT_PARAMETERS = {
    "temperature": "temperature",
    "top_p": "p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}


# --- chat ------------------------------------------------------------------------------------


def build_chat_payload(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Cohere's v2 chat body for an OpenAI chat request."""
    messages = body.get("messages")
    payload: dict[str, Any] = {
        "model": model,
        "messages": [cohere_message(m) for m in messages if isinstance(m, dict)] if isinstance(messages, list) else [],
        "stream": False,
    }
    tools = shapes.function_tools(body.get("tools"))
    forced = _forced_function(body.get("tool_choice"))
    if forced and any(tool["name"] == forced for tool in tools):
        tools = [tool for tool in tools if tool["name"] == forced]
    if tools:
        payload["tools"] = [{"type": "function", "function": tool} for tool in tools]
        choice = "REQUIRED" if forced else _tool_choice(body.get("tool_choice"))
        if choice:
            payload["tool_choice"] = choice
    limit = shapes.max_tokens(body)
    if limit is not None:
        payload["max_tokens"] = limit
    for source, target in CHAT_PARAMETERS.items():
        if body.get(source) is not None:
            payload[target] = body[source]
    stops = shapes.stop_sequences(body.get("stop"))
    if stops:
        payload["stop_sequences"] = stops
    response_format = _response_format(body.get("response_format"))
    if response_format:
        payload["response_format"] = response_format
    return payload


def cohere_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """One OpenAI chat message as a Cohere v2 message (roles keep their names)."""
    role = message.get("role")
    if role in ("system", "developer"):
        return {"role": "system", "content": shapes.message_text(message.get("content"))}
    if role == "user":
        return {"role": "user", "content": _user_content(message.get("content"))}
    if role == "assistant":
        return _assistant_message(message)
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": str(message.get("tool_call_id") or ""),
            "content": _tool_content(message.get("content")),
        }
    raise ProviderError(
        f"Cohere does not accept chat messages with role {role!r}",
        status=400,
        code="unsupported_role",
        param="messages",
    )


def _user_content(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in shapes.content_parts(content):
        kind = part.get("type")
        url = shapes.image_url_of(part)
        if kind == "text":
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "image_url" and url:
            image: dict[str, Any] = {"url": url}
            nested = part.get("image_url")
            if isinstance(nested, dict) and isinstance(nested.get("detail"), str):
                image["detail"] = nested["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise ProviderError(
                f"Cohere does not accept {kind} content in user messages",
                status=400,
                code="unsupported_content",
                param="messages",
            )
    return parts


def _assistant_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """Text with tool calls becomes Cohere's ``tool_plan`` (a client may also send ``tool_plan``)."""
    text = shapes.message_text(message.get("content"))
    calls = [_tool_call(call) for call in message.get("tool_calls") or [] if isinstance(call, dict)]
    result: dict[str, Any] = {"role": "assistant"}
    if not calls:
        result["content"] = text
        return result
    result["tool_calls"] = calls
    plan = message.get("tool_plan")
    if isinstance(plan, str) and plan:
        result["tool_plan"] = plan
        if text:
            result["content"] = text
    elif text:
        result["tool_plan"] = text
    return result


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = _mapping(call.get("function"))
    arguments = function.get("arguments")
    return shapes.tool_call(
        str(call.get("id") or ""), str(function.get("name") or ""), "{}" if arguments is None else arguments
    )


def _tool_content(content: Any) -> str:
    if isinstance(content, str | list):
        return shapes.message_text(content)
    return "" if content is None else json.dumps(content)


def _forced_function(choice: Any) -> str | None:
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return name if isinstance(name, str) else None
    return None


def _tool_choice(choice: Any) -> str | None:
    """Cohere forces tool use on (``REQUIRED``) or off (``NONE``); ``auto`` is its default."""
    return {"required": "REQUIRED", "none": "NONE"}.get(choice) if isinstance(choice, str) else None


def _response_format(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return {"type": "json_object", **({"json_schema": schema} if isinstance(schema, dict) else {})}
    if kind in ("json_object", "text"):
        return {"type": kind}
    return None


def parse_chat_response(reply: Mapping[str, Any], model: str, created: int) -> dict[str, Any]:
    """Cohere's v2 chat reply as a ``chat.completion``; a ``tool_plan`` stands in for absent text."""
    message = reply.get("message")
    if not isinstance(message, dict):
        raise _invalid("Cohere's chat reply has no message")
    if reply.get("finish_reason") == "ERROR":
        raise ProviderError(
            "Cohere stopped the generation with an error",
            status=502,
            error_type="server_error",
            code="generation_error",
        )
    calls = [_tool_call(call) for call in message.get("tool_calls") or [] if isinstance(call, dict)]
    text = shapes.message_text(message.get("content"))
    if not text and calls and isinstance(message.get("tool_plan"), str):
        text = message["tool_plan"]
    prompt_tokens, completion_tokens = _usage(reply.get("usage"))
    return shapes.chat_completion(
        id=str(reply.get("id") or ""),
        model=model,
        created=created,
        content=text or None,
        finish_reason="tool_calls" if calls else FINISH_REASONS.get(str(reply.get("finish_reason")), "stop"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tool_calls=calls,
    )


def _usage(usage: Any) -> tuple[int, int]:
    """Input and output tokens: ``usage.tokens`` if given, else ``usage.billed_units``."""
    if isinstance(usage, dict):
        for key in ("tokens", "billed_units"):
            counts = usage.get(key)
            if isinstance(counts, dict) and ("input_tokens" in counts or "output_tokens" in counts):
                return _count(counts.get("input_tokens")), _count(counts.get("output_tokens"))
    return 0, 0


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- embeddings and rerank ---------------------------------------------------------------


def build_embed_payload(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    input_type = body.get("input_type")
    payload: dict[str, Any] = {
        "model": model,
        "texts": shapes.embedding_inputs(body.get("input")),
        "input_type": input_type if isinstance(input_type, str) and input_type else DEFAULT_INPUT_TYPE,
        "embedding_types": ["float"],
    }
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and not isinstance(dimensions, bool):
        payload["output_dimension"] = dimensions
    return payload


def parse_embed_response(reply: Mapping[str, Any], model: str) -> dict[str, Any]:
    embeddings = reply.get("embeddings")
    vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
    if not isinstance(vectors, list) or not all(isinstance(vector, list) for vector in vectors):
        raise _invalid("Cohere's embed reply has no float embeddings")
    meta = _mapping(reply.get("meta"))
    billed = _mapping(meta.get("billed_units"))
    return shapes.embedding_list(vectors, model, _count(billed.get("input_tokens")))


def build_rerank_payload(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Cohere v2 takes documents as strings: objects are sent as their ``text``."""
    payload: dict[str, Any] = {
        "model": model,
        "query": body.get("query"),
        "documents": _documents(body.get("documents")),
    }
    for name in ("top_n", "max_tokens_per_doc"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            payload[name] = value
    return payload


def _documents(documents: Any) -> list[str]:
    texts = []
    for document in documents if isinstance(documents, list) else []:
        if isinstance(document, dict) and isinstance(document.get("text"), str):
            texts.append(document["text"])
        else:
            texts.append(document if isinstance(document, str) else json.dumps(document))
    return texts


def parse_rerank_response(reply: Mapping[str, Any], body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """Cohere's ranking; documents are echoed from the request when the client asked for them."""
    results = reply.get("results")
    if not isinstance(results, list):
        raise _invalid("Cohere's rerank reply has no results")
    documents = _documents(body.get("documents"))
    ranked = []
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score") if isinstance(item, dict) else None
        if not isinstance(index, int) or not isinstance(score, int | float) or isinstance(score, bool):
            raise _invalid("Cohere's rerank reply has a malformed result")
        entry: dict[str, Any] = {"index": index, "relevance_score": score}
        if body.get("return_documents") is True and 0 <= index < len(documents):
            entry["document"] = {"text": documents[index]}
        ranked.append(entry)
    result: dict[str, Any] = {"results": ranked, "model": model}
    if isinstance(reply.get("id"), str):
        result = {"id": reply["id"], **result}
    meta = _mapping(reply.get("meta"))
    billed = _mapping(meta.get("billed_units"))
    if isinstance(billed.get("search_units"), int | float) and not isinstance(billed.get("search_units"), bool):
        result["usage"] = {"search_units": _count(billed["search_units"])}
    return result


# --- errors ------------------------------------------------------------------------------------


def parse_error(response: HttpResponse, secret: str | None = None) -> ProviderError:
    """Cohere's ``{"id"?, "message"}`` error as a ``ProviderError``; the type follows the status."""
    message: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"].strip():
        message = body["message"]
    return ProviderError(
        message or f"Cohere answered HTTP {response.status}",
        status=response.status,
        error_type=ERROR_TYPES.get(response.status),
        retry_after_s=response.retry_after_s(),
        secret=secret,
    )


def _invalid(message: str) -> ProviderError:
    return ProviderError(message, status=502, code="invalid_response")


# --- the provider --------------------------------------------------------------------------------


class CohereProvider:
    def __init__(self, transport: HttpTransport, base_url: str, clock: Clock) -> None:
        self._api = JsonApi(transport, base_url, parse_error)
        self._clock = clock
        self._operations: dict[RequestType, Operation] = {
            RequestType.CHAT_COMPLETION: lambda call: self._chat(call.model, call.body, call.api_key),
            RequestType.RESPONSES: self._responses,
            RequestType.EMBEDDING: self._embed,
            RequestType.RERANK: self._rerank,
        }

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        return dispatch("cohere", self._operations, call)

    def _chat(self, model: str, body: Mapping[str, Any], api_key: str | None) -> dict[str, Any]:
        reply = self._post(PATHS[RequestType.CHAT_COMPLETION], build_chat_payload(model, body), api_key)
        return parse_chat_response(reply, model, int(self._clock.now()))

    def _responses(self, call: ProviderCall) -> dict[str, Any]:
        chat = self._chat(call.model, shapes.chat_request_from_responses(call.body), call.api_key)
        return shapes.responses_from_chat(chat)

    def _embed(self, call: ProviderCall) -> dict[str, Any]:
        reply = self._post(PATHS[RequestType.EMBEDDING], build_embed_payload(call.model, call.body), call.api_key)
        return parse_embed_response(reply, call.model)

    def _rerank(self, call: ProviderCall) -> dict[str, Any]:
        reply = self._post(PATHS[RequestType.RERANK], build_rerank_payload(call.model, call.body), call.api_key)
        return parse_rerank_response(reply, call.body, call.model)

    def _post(self, path: str, payload: Mapping[str, Any], api_key: str | None) -> dict[str, Any]:
        return self._api.post(path, payload, api_key).json_object()


def _build(env: ProviderEnv) -> Provider:
    return CohereProvider(env.transport, env.base_url("cohere", DEFAULT_BASE_URL, strip="/v2"), env.clock)


SPEC = ProviderSpec("cohere", frozenset(PATHS), _build, key_variables=("COHERE_API_KEY", "CO_API_KEY"))
