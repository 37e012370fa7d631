"""A fake Azure OpenAI resource: a real HTTP server on 127.0.0.1 answering in Azure OpenAI's wire format.

Serves ``/openai/deployments/{deployment}/{chat/completions|completions|embeddings|audio/speech|
images/generations}`` and ``/openai/responses`` (deployment in the body's ``model``), each with a
required ``api-version`` query. Bodies are OpenAI's (built by ``openai_fake``) with the model the
deployment runs and, for chat, Azure's ``prompt_filter_results`` / ``content_filter_results``.
It checks the ``api-key`` header (401 ``{"error":{"code":"401",...}}`` otherwise), answers 404
``DeploymentNotFound`` for deployments it does not have, and can be scripted per path with
Azure's error body ``{"error":{"code","message",...}}``, a raw body or a stall.

    with AzureOpenAIFake(api_key="azure-key", deployments={"chat4o": "gpt-4o-2024-11-20"}) as fake:
        environ = fake.environ()         # AZURE_BASE_URL / AZURE_API_KEY
        fake.script_error(deployment_path("chat4o"), 429, "429", "Rate limit...", {"retry-after": "6"})
        fake.requests_to(deployment_path("chat4o"))[0].query["api-version"]
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.support.fake_http import FakeHttpServer, Json, RecordedRequest, Reply, json_reply
from tests.support.openai_fake import ROUTES

API_KEY = "azure-test-key-0123456789abcdef"
RESPONSES_PATH = "/openai/responses"
INVALID_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)
_DEPLOYMENT = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/(?P<operation>.+)$")
SAFE_FILTERS: Json = {
    category: {"filtered": False, "severity": "safe"} for category in ("hate", "self_harm", "sexual", "violence")
}


def deployment_path(deployment: str, operation: str = "chat/completions") -> str:
    return f"/openai/deployments/{deployment}/{operation}"


def azure_error(code: str, message: str, **extra: Any) -> Json:
    """Azure OpenAI's error body."""
    return {"error": {"code": code, "message": message, **extra}}


class AzureOpenAIFake(FakeHttpServer):
    """``deployments`` maps deployment names to the model each runs; ``None`` serves any name as itself."""

    def __init__(self, api_key: str | None = API_KEY, deployments: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.deployments = dict(deployments) if deployments is not None else None

    @property
    def base_url(self) -> str:
        """The resource endpoint (``https://<resource>.openai.azure.com`` in Azure)."""
        return self.root_url

    def environ(self) -> dict[str, str]:
        """The variables that point the gateway's Azure provider at this fake."""
        return {"AZURE_BASE_URL": self.base_url, **({"AZURE_API_KEY": self.api_key} if self.api_key else {})}

    def script_error(
        self,
        path: str,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
        **extra: Any,
    ) -> None:
        self.script_json(path, status, azure_error(code, message, **extra), headers, times)

    def authorize(self, request: RecordedRequest) -> Reply | None:
        if self.api_key is not None and request.headers.get("api-key") != self.api_key:
            return json_reply(401, azure_error("401", INVALID_KEY))
        return None

    def respond(self, request: RecordedRequest) -> Reply:
        version = (request.query.get("api-version") or [""])[0]
        match = _DEPLOYMENT.match(request.path)
        route = ROUTES.get("/" + match.group("operation")) if match else None
        if request.method != "POST" or not version or (route is None and request.path != RESPONSES_PATH):
            return json_reply(404, azure_error("404", "Resource not found"))
        if not isinstance(request.json, dict):
            return json_reply(400, azure_error("BadRequest", "The request body could not be parsed as JSON."))
        if request.path == RESPONSES_PATH:
            if not version.endswith("-preview") or version < "2025-03-01-preview":
                return json_reply(400, azure_error("BadRequest", "API version not supported"))
            deployment, route = str(request.json.get("model")), ROUTES["/responses"]
        else:
            assert match is not None and route is not None
            deployment = match.group("deployment")
        model = self.deployments.get(deployment) if self.deployments is not None else deployment
        if model is None:
            return json_reply(404, azure_error("DeploymentNotFound", DEPLOYMENT_NOT_FOUND))
        status, headers, content = route({**request.json, "model": model})
        if route is ROUTES["/chat/completions"]:
            content = _with_content_filters(content)
        headers.update({"apim-request-id": str(uuid.uuid4()), "x-ms-region": "Sweden Central"})
        return status, headers, content


def _with_content_filters(content: bytes) -> bytes:
    body: dict[str, Any] = json.loads(content)
    body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": SAFE_FILTERS}]
    for choice in body["choices"]:
        choice["content_filter_results"] = SAFE_FILTERS
    return json.dumps(body).encode()


@pytest.fixture
def azure_fake() -> Iterator[AzureOpenAIFake]:
    """A running fake accepting ``API_KEY`` for any deployment; import into a conftest to share it."""
    with AzureOpenAIFake() as fake:
        yield fake
