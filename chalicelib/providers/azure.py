"""Azure OpenAI adapter: OpenAI's bodies and replies at Azure's deployment URLs.

Owns only what Azure does differently from OpenAI: the URL (the resource endpoint
``AZURE_BASE_URL`` = ``https://<resource>.openai.azure.com``, the model name used as the
deployment, the ``api-version`` query) and the ``api-key`` header. Bodies, replies and
error bodies are OpenAI's and go through ``openai.build_payload`` / ``parse_response`` /
``parse_error``. Azure has no public default endpoint: without ``AZURE_BASE_URL`` every call
fails with a non-retryable ``provider_not_configured`` error (a retry cannot fix a setting).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import openai
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv, ProviderSpec, key_needed
from chalicelib.providers.transport import HttpTransport

DEFAULT_API_VERSION = "2024-10-21"
DEFAULT_RESPONSES_API_VERSION = "2025-04-01-preview"
ROOT_SUFFIXES = ("/openai/v1", "/openai")  # paths people paste from SDK samples; the root has none

# Request types served below /openai/deployments/{deployment}/; responses use /openai/responses.
DEPLOYMENT_PATHS: dict[RequestType, str] = {
    RequestType.CHAT_COMPLETION: "chat/completions",
    RequestType.TEXT_COMPLETION: "completions",
    RequestType.EMBEDDING: "embeddings",
    RequestType.SPEECH: "audio/speech",
    RequestType.IMAGE_GENERATION: "images/generations",
}


def resource_root(env: ProviderEnv) -> str | None:
    """``AZURE_BASE_URL`` without a trailing slash or an ``/openai`` path; ``None`` when unset."""
    url = env.variable("AZURE_BASE_URL")
    if url is None:
        return None
    url = url.rstrip("/")
    for suffix in ROOT_SUFFIXES:
        url = url.removesuffix(suffix)
    return url


def request_url(root: str, call: ProviderCall, api_version: str, responses_api_version: str) -> str:
    """Azure's URL for ``call``: the deployment (the model name) in the path, the version in the query."""
    if call.request_type == RequestType.RESPONSES:
        return f"{root}/openai/responses?{urlencode({'api-version': responses_api_version})}"
    deployment = quote(call.model, safe="")
    path = DEPLOYMENT_PATHS[call.request_type]
    return f"{root}/openai/deployments/{deployment}/{path}?{urlencode({'api-version': api_version})}"


def not_configured() -> ProviderError:
    """No endpoint: a 400 the worker will not retry, naming the setting to fix."""
    return ProviderError(
        "provider azure is not configured: set AZURE_BASE_URL to the resource endpoint "
        "(https://<resource>.openai.azure.com)",
        status=400,
        error_type="invalid_request_error",
        code="provider_not_configured",
        param="model",
    )


class AzureOpenAIProvider:
    def __init__(
        self, transport: HttpTransport, root: str | None, api_version: str, responses_api_version: str
    ) -> None:
        self._transport = transport
        self._root = root
        self._api_version = api_version
        self._responses_api_version = responses_api_version

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        if self._root is None:
            raise not_configured()
        headers = {"Content-Type": "application/json"}
        if call.api_key:
            headers["api-key"] = call.api_key
        url = request_url(self._root, call, self._api_version, self._responses_api_version)
        response = self._transport.post(url, headers=headers, json_body=openai.build_payload(call))
        if not response.ok:
            raise openai.parse_error(response, call.api_key)
        return openai.parse_response(call.request_type, response)


def build(env: ProviderEnv) -> Provider:
    return AzureOpenAIProvider(
        env.transport,
        resource_root(env),
        env.variable("AZURE_API_VERSION") or DEFAULT_API_VERSION,
        env.variable("AZURE_RESPONSES_API_VERSION") or DEFAULT_RESPONSES_API_VERSION,
    )


SPEC = ProviderSpec(
    "azure",
    frozenset({*DEPLOYMENT_PATHS, RequestType.RESPONSES}),
    build,
    key_variables=("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
    key_required=key_needed,
)
