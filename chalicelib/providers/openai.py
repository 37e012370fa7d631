"""OpenAI adapter, shared by every OpenAI-compatible provider (groq, together, vllm, …).

Serves chat, completions, responses, embeddings, speech and image generations at the
paths of OpenAI's API reference below the provider's base URL (which includes the
version segment, ``/v1`` for OpenAI). Replies are already in the contract's shapes;
speech audio comes back base64-encoded. ``compatible_spec`` makes a family member.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv, ProviderSpec, key_needed
from chalicelib.providers.transport import HttpResponse, HttpTransport

DEFAULT_BASE_URL = "https://api.openai.com/v1"

PATHS: dict[RequestType, str] = {
    RequestType.CHAT_COMPLETION: "/chat/completions",
    RequestType.TEXT_COMPLETION: "/completions",
    RequestType.RESPONSES: "/responses",
    RequestType.EMBEDDING: "/embeddings",
    RequestType.SPEECH: "/audio/speech",
    RequestType.IMAGE_GENERATION: "/images/generations",
    RequestType.TRANSCRIPTION: "/audio/transcriptions",
    RequestType.IMAGE_EDIT: "/images/edits",
    RequestType.IMAGE_VARIATION: "/images/variations",
}


def build_payload(call: ProviderCall) -> dict[str, Any]:
    """The request body OpenAI expects: the client's body with the bare model name."""
    return {**call.body, "model": call.model}


def build_form(call: ProviderCall) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    """The multipart fields and file parts OpenAI expects for an upload request."""
    fields = {name: str(value) for name, value in call.body.items()} | {"model": call.model}
    files = [
        (name, (part.filename, part.data, part.content_type)) for name, parts in call.files.items() for part in parts
    ]
    return fields, files


def parse_response(request_type: RequestType, response: HttpResponse) -> dict[str, Any]:
    if request_type == RequestType.SPEECH:
        return {
            "audio": base64.b64encode(response.content).decode("ascii"),
            "content_type": response.headers.get("content-type", "audio/mpeg"),
        }
    if request_type == RequestType.TRANSCRIPTION and "json" not in response.headers.get("content-type", "json"):
        return {"text": response.content.decode("utf-8", "replace")}
    return response.json_object()


def parse_error(response: HttpResponse, secret: str | None = None) -> ProviderError:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}`` as a ``ProviderError``.

    A provider that echoes the caller's key in its message gets it redacted.
    """
    detail: Mapping[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = body["error"]
        elif isinstance(body, dict) and isinstance(body.get("error"), str):
            detail = {"message": body["error"]}
        elif isinstance(body, dict):
            detail = body
    except ValueError:
        pass
    message = detail.get("message")
    code = detail.get("code")
    return ProviderError(
        message if isinstance(message, str) and message else f"provider answered HTTP {response.status}",
        status=response.status,
        error_type=detail.get("type") if isinstance(detail.get("type"), str) else None,
        code=str(code) if code not in (None, "") else None,
        param=detail.get("param") if isinstance(detail.get("param"), str) else None,
        retry_after_s=response.retry_after_s(),
        secret=secret,
    )


class OpenAIProvider:
    def __init__(self, transport: HttpTransport, base_url: str) -> None:
        self._transport = transport
        self._base_url = base_url

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {call.api_key}"} if call.api_key else {}
        url = self._base_url + PATHS[call.request_type]
        if call.files:
            fields, files = build_form(call)
            response = self._transport.post(url, headers=headers, data=fields, files=files)
        else:
            headers["Content-Type"] = "application/json"
            response = self._transport.post(url, headers=headers, json_body=build_payload(call))
        if not response.ok:
            raise parse_error(response, call.api_key)
        return parse_response(call.request_type, response)


def compatible_spec(
    name: str,
    default_base_url: str,
    request_types: Iterable[RequestType],
    *,
    key_required: Callable[[ProviderEnv], bool] | None = None,
    ensure_suffix: str = "",
    key_variables: tuple[str, ...] = (),
) -> ProviderSpec:
    """A provider that speaks OpenAI's API at its own base URL, with its own key variable."""

    def build(env: ProviderEnv) -> Provider:
        return OpenAIProvider(env.transport, env.base_url(name, default_base_url, ensure=ensure_suffix))

    return ProviderSpec(
        name,
        frozenset(request_types),
        build,
        key_variables=key_variables,
        key_required=key_required or key_needed,
    )


def _openai_needs_key(env: ProviderEnv) -> bool:
    """OpenAI itself needs a key; a self-hosted server behind ``OPENAI_BASE_URL`` may not."""
    return env.base_url("openai", DEFAULT_BASE_URL) == DEFAULT_BASE_URL


SPEC = compatible_spec("openai", DEFAULT_BASE_URL, PATHS, key_required=_openai_needs_key)
