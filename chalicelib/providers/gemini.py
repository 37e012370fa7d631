"""Google Gemini adapter (Gemini API, generativelanguage.googleapis.com, ``v1beta``).

Serves chat completions and Responses through ``models/{model}:generateContent`` (the
translation lives in ``gemini_chat``) and embeddings through ``:embedContent`` (one text)
or ``:batchEmbedContents`` (a list, sent in batches of at most 100, Gemini's limit).
``GEMINI_BASE_URL`` is the API root without the version segment. The key travels only
in the ``x-goog-api-key`` header, never in the URL, so no URL can leak it; Google's
error body (``{"error": {"code", "message", "status", "details"}}``) becomes the
``ProviderError``, with ``status`` as the type and ``RetryInfo.retryDelay`` as the wait.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from chalicelib.clock import Clock
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import gemini_chat, gemini_reply, shapes
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv, ProviderSpec
from chalicelib.providers.http_api import JsonApi, Operation, dispatch
from chalicelib.providers.transport import HttpResponse, HttpTransport

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "/v1beta"
BATCH_LIMIT = 100
RPC_TYPE = "type.googleapis.com/google.rpc."
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


def model_resource(model: str) -> str:
    """``models/{model}`` (a tuned model keeps its own ``tunedModels/…`` name)."""
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return quote(name, safe="/")


def method_path(model: str, method: str) -> str:
    return f"{API_VERSION}/{model_resource(model)}:{method}"


# chat and responses ----------------------------------------------------------------------------


def chat_request(call: ProviderCall) -> dict[str, Any]:
    """The OpenAI chat request a call stands for (a Responses request is converted)."""
    if call.request_type != RequestType.RESPONSES:
        return dict(call.body)
    return shapes.chat_request_from_responses(call.body)


def build_payload(call: ProviderCall) -> dict[str, Any]:
    """The ``generateContent`` body for a chat or Responses call."""
    return gemini_chat.build_generate_content(chat_request(call))


def parse_response(call: ProviderCall, response: HttpResponse, created: int) -> dict[str, Any]:
    """The chat completion (or Responses object) for a ``generateContent`` reply."""
    chat = gemini_reply.chat_from_reply(
        response.json_object(),
        model=call.model,
        created=created,
        fallback_id="chatcmpl-" + hashlib.sha256(response.content).hexdigest()[:24],
        prompt_param="input" if call.request_type == RequestType.RESPONSES else "messages",
    )
    return shapes.responses_from_chat(chat) if call.request_type == RequestType.RESPONSES else chat


# embeddings ------------------------------------------------------------------------------------


def embedding_payloads(call: ProviderCall) -> list[tuple[str, dict[str, Any]]]:
    """``(path, body)`` per request: ``embedContent`` for a string, batches for a list."""
    texts = shapes.embedding_inputs(call.body.get("input"))
    options: dict[str, Any] = {}
    dimensions = call.body.get("dimensions")
    if isinstance(dimensions, int) and not isinstance(dimensions, bool):
        options["outputDimensionality"] = dimensions
    task = call.body.get("task_type", call.body.get("taskType"))
    if isinstance(task, str) and task:
        options["taskType"] = task
    if isinstance(call.body.get("input"), str):
        return [(method_path(call.model, "embedContent"), {"content": {"parts": [{"text": texts[0]}]}, **options})]
    if not texts:
        raise gemini_chat.invalid("input must not be empty", "input")
    name = model_resource(call.model)
    requests = [{"model": name, "content": {"parts": [{"text": text}]}, **options} for text in texts]
    path = method_path(call.model, "batchEmbedContents")
    return [(path, {"requests": requests[at : at + BATCH_LIMIT]}) for at in range(0, len(requests), BATCH_LIMIT)]


def embedding_vectors(reply: Mapping[str, Any], expected: int) -> list[list[float]]:
    """The vectors of an ``embedContent`` (one) or ``batchEmbedContents`` reply."""
    found = [reply["embedding"]] if "embedding" in reply else reply.get("embeddings")
    if not isinstance(found, list) or len(found) != expected:
        raise ProviderError("Gemini returned an unexpected number of embeddings", status=502, code="invalid_response")
    vectors = []
    for item in found:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list) or not all(_is_number(value) for value in values):
            raise ProviderError("Gemini returned an embedding without values", status=502, code="invalid_response")
        vectors.append([float(value) for value in values])
    return vectors


def embedding_result(call: ProviderCall, vectors: Sequence[Sequence[float]], prompt_tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings list; ``encoding_format: base64`` packs float32 little-endian as OpenAI does."""
    result = shapes.embedding_list(vectors, call.model, prompt_tokens)
    if call.body.get("encoding_format") == "base64":
        for item, vector in zip(result["data"], vectors, strict=True):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# errors ----------------------------------------------------------------------------------------


def parse_error(response: HttpResponse, secret: str | None = None) -> ProviderError:
    """Google's ``{"error": {"code", "message", "status", "details"}}`` as a ``ProviderError``.

    ``status`` (``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED``, …) is the type, the
    ``ErrorInfo`` reason (``API_KEY_INVALID``) the code, the first ``BadRequest`` field
    violation the param, and ``RetryInfo.retryDelay`` (else ``Retry-After``) the wait.
    """
    error = _error_object(response)
    details = [item for item in error.get("details") or [] if isinstance(item, dict)] if error else []
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = f"Gemini answered HTTP {response.status}"
    status = error.get("status")
    reason = _detail(details, "ErrorInfo").get("reason")
    violations = _detail(details, "BadRequest").get("fieldViolations")
    violation = violations[0] if isinstance(violations, list) and violations else {}
    field = violation.get("field") if isinstance(violation, dict) else None
    retry_delay = _duration_s(_detail(details, "RetryInfo").get("retryDelay"))
    return ProviderError(
        message,
        status=response.status,
        error_type=status if isinstance(status, str) and status else None,
        code=reason if isinstance(reason, str) and reason else None,
        param=field if isinstance(field, str) and field else None,
        retry_after_s=retry_delay if retry_delay is not None else response.retry_after_s(),
        key_rejected=reason == "API_KEY_INVALID",
        secret=secret,
    )


def _error_object(response: HttpResponse) -> dict[str, Any]:
    """The ``error`` object of a Google error body (also when wrapped in a one-item array)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _detail(details: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next((item for item in details if item.get("@type") == RPC_TYPE + kind), {})


def _duration_s(value: Any) -> float | None:
    """A protobuf JSON Duration (``"7s"``, ``"0.5s"``) in seconds."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    return float(match.group(1)) if match else None


# the provider ----------------------------------------------------------------------------------


def google_key(api_key: str | None) -> dict[str, str]:
    """Google's API key header (never the ``?key=`` query, which could leak through a URL)."""
    return {"x-goog-api-key": api_key} if api_key else {}


class GeminiProvider:
    def __init__(self, transport: HttpTransport, base_url: str, clock: Clock) -> None:
        self._api = JsonApi(transport, base_url, parse_error, google_key)
        self._clock = clock
        self._handlers: dict[RequestType, Operation] = {
            RequestType.CHAT_COMPLETION: self._generate,
            RequestType.RESPONSES: self._generate,
            RequestType.EMBEDDING: self._embed,
        }

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        return dispatch("gemini", self._handlers, call)

    def _generate(self, call: ProviderCall) -> dict[str, Any]:
        payload = build_payload(call)
        response = self._post(method_path(call.model, "generateContent"), payload, call.api_key)
        return parse_response(call, response, int(self._clock.now()))

    def _embed(self, call: ProviderCall) -> dict[str, Any]:
        vectors: list[list[float]] = []
        tokens = 0
        for path, payload in embedding_payloads(call):
            reply = self._post(path, payload, call.api_key).json_object()
            expected = len(payload["requests"]) if "requests" in payload else 1
            vectors.extend(embedding_vectors(reply, expected))
            usage = reply.get("usageMetadata")
            count = usage.get("promptTokenCount") if isinstance(usage, dict) else None
            tokens += count if isinstance(count, int) and not isinstance(count, bool) else 0
        return embedding_result(call, vectors, tokens)

    def _post(self, path: str, payload: dict[str, Any], api_key: str | None) -> HttpResponse:
        return self._api.post(path, payload, api_key)


def build(env: ProviderEnv) -> Provider:
    base_url = env.base_url("gemini", DEFAULT_BASE_URL, strip=API_VERSION)
    return GeminiProvider(env.transport, base_url, env.clock)


SPEC = ProviderSpec(
    "gemini",
    frozenset({RequestType.CHAT_COMPLETION, RequestType.RESPONSES, RequestType.EMBEDDING}),
    build,
    key_variables=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
)
