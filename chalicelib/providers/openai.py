"""OpenAI adapter (and any OpenAI-compatible server through ``OPENAI_BASE_URL``).

Serves chat, completions, responses, embeddings, speech and image generations at the
paths of OpenAI's API reference below the base URL (which includes ``/v1``). Replies
are already in the contract's shapes; speech audio comes back base64-encoded.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv, ProviderSpec
from chalicelib.providers.transport import HttpResponse, HttpTransport

DEFAULT_BASE_URL = "https://api.openai.com/v1"

PATHS: dict[RequestType, str] = {
    RequestType.CHAT_COMPLETION: "/chat/completions",
    RequestType.TEXT_COMPLETION: "/completions",
    RequestType.RESPONSES: "/responses",
    RequestType.EMBEDDING: "/embeddings",
    RequestType.SPEECH: "/audio/speech",
    RequestType.IMAGE_GENERATION: "/images/generations",
}


def build_payload(call: ProviderCall) -> dict[str, Any]:
    """The request body OpenAI expects: the client's body with the bare model name."""
    return {**call.body, "model": call.model}


def parse_response(request_type: RequestType, response: HttpResponse) -> dict[str, Any]:
    if request_type == RequestType.SPEECH:
        return {
            "audio": base64.b64encode(response.content).decode("ascii"),
            "content_type": response.headers.get("content-type", "audio/mpeg"),
        }
    try:
        result = response.json()
    except ValueError:
        raise ProviderError("provider returned a body that is not JSON", status=502, code="invalid_response") from None
    if not isinstance(result, dict):
        raise ProviderError("provider returned an unexpected body", status=502, code="invalid_response")
    return result


def parse_error(response: HttpResponse, secret: str | None = None) -> ProviderError:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}`` as a ``ProviderError``.

    A provider that echoes the caller's key in its message gets it redacted.
    """
    detail: Mapping[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = body["error"]
        elif isinstance(body, dict):
            detail = body
    except ValueError:
        pass
    message = detail.get("message")
    if secret and isinstance(message, str):
        message = message.replace(secret, "[redacted]")
    code = detail.get("code")
    return ProviderError(
        message if isinstance(message, str) and message else f"provider answered HTTP {response.status}",
        status=response.status,
        error_type=detail.get("type") if isinstance(detail.get("type"), str) else None,
        code=str(code) if code not in (None, "") else None,
        param=detail.get("param") if isinstance(detail.get("param"), str) else None,
        retry_after_s=response.retry_after_s(),
    )


class OpenAIProvider:
    def __init__(self, transport: HttpTransport, base_url: str, api_key: str | None, requires_key: bool) -> None:
        self._transport = transport
        self._base_url = base_url
        self._api_key = api_key
        self._requires_key = requires_key

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        if self._api_key is None and self._requires_key:
            raise ProviderError(
                "no API key is configured for provider openai (set OPENAI_API_KEY)",
                status=401,
                error_type="authentication_error",
                code="missing_api_key",
            )
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        response = self._transport.post(
            self._base_url + PATHS[call.request_type], headers=headers, json_body=build_payload(call)
        )
        if not response.ok:
            raise parse_error(response, self._api_key)
        return parse_response(call.request_type, response)


def _build(env: ProviderEnv) -> Provider:
    base_url = env.base_url("openai", DEFAULT_BASE_URL)
    return OpenAIProvider(
        env.transport,
        base_url,
        env.api_key("openai"),
        requires_key=base_url == DEFAULT_BASE_URL,
    )


SPEC = ProviderSpec("openai", frozenset(PATHS), _build)
