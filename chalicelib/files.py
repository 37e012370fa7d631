"""``POST /anthropic/v1/files`` (contract §7): forward an upload to a provider's Files API.

``x-model-provider`` picks Anthropic (default) or OpenAI; the answer is always an
Anthropic file object, and every error is in Anthropic's shape
``{"type":"error","error":{"type","message"}}``. Keys come from the provider registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.clock import rfc3339
from chalicelib.errors import GatewayError, InvalidRequest, ProviderError
from chalicelib.multipart import FilePart, parse_form
from chalicelib.providers import openai
from chalicelib.providers.base import ProviderEnv
from chalicelib.providers.transport import HttpResponse

ANTHROPIC_ROOT = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
FILES_BETA = "files-api-2025-04-14"
OPENAI_DEFAULT_PURPOSE = "user_data"

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class KeySource(Protocol):
    def keys_for(self, provider: str) -> tuple[str | None, ...]: ...


def anthropic_error_body(error: GatewayError) -> dict[str, Any]:
    """Anthropic's error shape for any gateway or provider error."""
    known = error.error_type if error.error_type in ANTHROPIC_ERROR_TYPES.values() else None
    kind = known or ANTHROPIC_ERROR_TYPES.get(error.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


@dataclass(frozen=True)
class Upload:
    file: FilePart
    purpose: str | None


class FilesService:
    def __init__(self, env: Callable[[], ProviderEnv], keys: KeySource) -> None:
        self._env = env
        self._keys = keys
        self._uploaders: Mapping[str, Callable[[ProviderEnv, str | None, Upload], dict[str, Any]]] = {
            "anthropic": _to_anthropic,
            "openai": _to_openai,
        }

    def upload(self, provider_header: str | None, raw_body: bytes | None, content_type: str | None) -> dict[str, Any]:
        provider = (provider_header or "anthropic").strip().lower()
        uploader = self._uploaders.get(provider)
        if uploader is None:
            raise InvalidRequest(
                f"x-model-provider must be anthropic or openai, not {provider}", code="unsupported_provider"
            )
        form = parse_form(raw_body, content_type)
        file = next(iter(form.files.get("file", [])), None)
        if file is None:
            raise InvalidRequest("file is required", param="file", code="missing_required_field")
        key = self._keys.keys_for(provider)[0]
        return uploader(self._env(), key, Upload(file, form.fields.get("purpose")))


def _to_anthropic(env: ProviderEnv, key: str | None, upload: Upload) -> dict[str, Any]:
    headers = {"anthropic-version": ANTHROPIC_VERSION, "anthropic-beta": FILES_BETA}
    if key:
        headers["x-api-key"] = key
    url = env.base_url("anthropic", ANTHROPIC_ROOT, strip="/v1") + "/v1/files"
    response = env.transport.post(url, headers=headers, files=_file_field(upload.file))
    body = _ok_json(response, key)
    return {
        "id": body.get("id"),
        "type": "file",
        "filename": body.get("filename", upload.file.filename),
        "mime_type": body.get("mime_type", upload.file.content_type),
        "size_bytes": body.get("size_bytes", len(upload.file.data)),
        "created_at": body.get("created_at"),
        "downloadable": bool(body.get("downloadable", False)),
    }


def _to_openai(env: ProviderEnv, key: str | None, upload: Upload) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = env.base_url("openai", openai.DEFAULT_BASE_URL) + "/files"
    purpose = upload.purpose or OPENAI_DEFAULT_PURPOSE
    response = env.transport.post(url, headers=headers, data={"purpose": purpose}, files=_file_field(upload.file))
    body = _ok_json(response, key)
    created = body.get("created_at")
    return {
        "id": body.get("id"),
        "type": "file",
        "filename": body.get("filename", upload.file.filename),
        "mime_type": upload.file.content_type,
        "size_bytes": body.get("bytes", len(upload.file.data)),
        "created_at": rfc3339(int(created) * 1000) if isinstance(created, int) else created,
        "downloadable": False,
    }


def _file_field(file: FilePart) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (file.filename, file.data, file.content_type)}


def _ok_json(response: HttpResponse, key: str | None) -> dict[str, Any]:
    if not response.ok:
        error = openai.parse_error(response, key)
        raise ProviderError(
            error.message, status=error.status, error_type=_anthropic_type(response), retry_after_s=error.retry_after_s
        )
    return response.json_object()


def _anthropic_type(response: HttpResponse) -> str | None:
    """Anthropic's own ``error.type``, when the provider answered in Anthropic's shape."""
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("error") if isinstance(body, dict) else None
    kind = detail.get("type") if isinstance(detail, dict) else None
    return kind if isinstance(kind, str) else None
