"""Anthropic adapter: chat completions and responses over the Messages API.

Owns the wire details of Anthropic's API: the ``/v1/messages`` path below the SDK's root
(``ANTHROPIC_BASE_URL``, without ``/v1``), the ``x-api-key`` and ``anthropic-version``
headers, and Anthropic's error body ``{"type":"error","error":{"type","message"}}``.
The translation itself lives in ``anthropic_chat``; a Responses request is served as a
chat request (``shapes.chat_request_from_responses`` / ``shapes.responses_from_chat``).
It never reads keys from the environment: the worker hands one in ``ProviderCall.api_key``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.clock import Clock
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import shapes
from chalicelib.providers.anthropic_chat import chat_from_message, messages_request
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv, ProviderSpec
from chalicelib.providers.transport import HttpResponse, HttpTransport

DEFAULT_BASE_URL = "https://api.anthropic.com"
MESSAGES_PATH = "/v1/messages"
API_VERSION = "2023-06-01"

ChatView = Callable[[Mapping[str, Any]], dict[str, Any]]

# How each request type is seen as a chat request, and how the chat result is given back.
TO_CHAT: dict[RequestType, ChatView] = {
    RequestType.CHAT_COMPLETION: dict,
    RequestType.RESPONSES: shapes.chat_request_from_responses,
}
FROM_CHAT: dict[RequestType, ChatView] = {
    RequestType.CHAT_COMPLETION: dict,
    RequestType.RESPONSES: shapes.responses_from_chat,
}


def build_payload(call: ProviderCall) -> dict[str, Any]:
    """The Messages API request body for ``call`` (chat or responses)."""
    return messages_request(call.model, TO_CHAT[call.request_type](call.body))


def request_headers(api_key: str | None) -> dict[str, str]:
    headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def parse_response(request_type: RequestType, response: HttpResponse, model: str, created: int) -> dict[str, Any]:
    """The OpenAI-style result for a successful Messages API reply."""
    chat = chat_from_message(response.json_object(), model, created)
    return FROM_CHAT[request_type](chat)


def parse_error(response: HttpResponse, secret: str | None = None) -> ProviderError:
    """Anthropic's ``{"type":"error","error":{"type","message"},"request_id"}`` as a ``ProviderError``.

    ``error.type`` becomes the error type and ``error.message`` the message (with the
    caller's key redacted should the provider echo it); Anthropic gives no code or param.
    A body that is not Anthropic's keeps the HTTP status and gets the status's default type.
    """
    detail: Mapping[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        detail = body["error"]
    message = detail.get("message")
    error_type = detail.get("type")
    return ProviderError(
        message if isinstance(message, str) and message else f"provider answered HTTP {response.status}",
        status=response.status,
        error_type=error_type if isinstance(error_type, str) and error_type else None,
        retry_after_s=response.retry_after_s(),
        secret=secret,
    )


class AnthropicProvider:
    def __init__(self, transport: HttpTransport, base_url: str, clock: Clock) -> None:
        self._transport = transport
        self._url = base_url + MESSAGES_PATH
        self._clock = clock

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        payload = build_payload(call)
        response = self._transport.post(self._url, headers=request_headers(call.api_key), json_body=payload)
        if not response.ok:
            raise parse_error(response, call.api_key)
        return parse_response(call.request_type, response, call.model, int(self._clock.now()))


def build(env: ProviderEnv) -> Provider:
    return AnthropicProvider(env.transport, env.base_url("anthropic", DEFAULT_BASE_URL, strip="/v1"), env.clock)


SPEC = ProviderSpec(
    "anthropic",
    frozenset(TO_CHAT),
    build,
    key_variables=("ANTHROPIC_API_KEY",),
)
