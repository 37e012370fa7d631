"""A fake Gemini API: a real HTTP server on 127.0.0.1 answering in the Gemini API's wire format.

Serves ``POST /v1beta/models/{model}:generateContent``, ``:embedContent`` and
``:batchEmbedContents`` (also under ``tunedModels/``), with bodies shaped as the Gemini API
reference documents them. It authenticates like Google (``x-goog-api-key`` header or ``key``
query parameter; none → 403 ``PERMISSION_DENIED``, a wrong one → 400 ``INVALID_ARGUMENT`` with
reason ``API_KEY_INVALID``) and, like the real API, refuses unknown JSON field names, empty
``parts``, bad roles and a function-response turn whose part count differs from the call turn.

generateContent echoes the text of the last user turn (JSON ``{"echo": …}`` when
``responseMimeType`` is JSON), honours ``candidateCount``, ``stopSequences`` and
``maxOutputTokens`` (words; cut → ``MAX_TOKENS``) and answers a ``functionCall`` of the
first allowed function when ``toolConfig`` mode is ``ANY``. Model ``gemini-nope`` is 404.

    with GeminiFake(api_key="gemini-test-key") as fake:
        environ = fake.environ()              # GEMINI_BASE_URL / GEMINI_API_KEY
        fake.script_error(generate_path("gemini-2.0-flash"), 429, headers={"retry-after": "2"}, times=1)
        fake.script_reply(generate_path("gemini-2.0-flash"), {"candidates": [...]})
        fake.requests_to(generate_path("gemini-2.0-flash"))[0].json
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import pytest

from chalicelib.config import Settings
from chalicelib.errors import ProviderError
from chalicelib.providers import gemini
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv
from chalicelib.providers.transport import HttpTransport
from tests.fakes import FakeClock
from tests.support.fake_http import FakeHttpServer, Json, RecordedRequest, Reply, json_reply

PREFIX = "/v1beta"
RPC = "type.googleapis.com/google.rpc."
MISSING_MODEL = "gemini-nope"
DEFAULT_DIMENSIONS = 8
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ROUTE = re.compile(r"^/v1beta/((?:models|tunedModels)/[^/:]+):(generateContent|embedContent|batchEmbedContents)$")
_FIELDS: dict[str, frozenset[str]] = {
    "request": frozenset(
        {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent"}
    ),
    "content": frozenset({"role", "parts"}),
    "part": frozenset(
        {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode"}
        | {"codeExecutionResult", "thought", "thoughtSignature", "videoMetadata"}
    ),
    "generation_config": frozenset(
        {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities"}
        | {"candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty"}
        | {"frequencyPenalty", "responseLogprobs", "logprobs", "speechConfig", "thinkingConfig", "mediaResolution"}
    ),
    "tool": frozenset({"functionDeclarations", "googleSearch", "codeExecution", "urlContext", "googleSearchRetrieval"}),
    "function_declaration": frozenset(
        {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior"}
    ),
    "embed": frozenset({"model", "content", "taskType", "title", "outputDimensionality"}),
}
_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
TASK_TYPES = frozenset(
    {"TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION"}
    | {"CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"}
)


# Google error bodies -----------------------------------------------------------------------------
def error_body(code: int, message: str, *details: Json, status: str | None = None) -> Json:
    """Google's error body: ``{"error": {"code", "message", "status", "details"?}}``."""
    error: Json = {"code": code, "message": message, "status": status or STATUS_NAMES.get(code, "UNKNOWN")}
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_info(reason: str) -> Json:
    return {
        "@type": RPC + "ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }


def retry_info(delay: str) -> Json:
    """A ``google.rpc.RetryInfo`` detail; ``delay`` is a protobuf Duration such as ``"7s"``."""
    return {"@type": RPC + "RetryInfo", "retryDelay": delay}


def bad_request(description: str, field: str | None = None) -> Json:
    violation = {"field": field, "description": description} if field else {"description": description}
    return {"@type": RPC + "BadRequest", "fieldViolations": [violation]}


def quota_failure(model: str = "gemini-2.0-flash") -> Json:
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": "15",
    }
    return {"@type": RPC + "QuotaFailure", "violations": [violation]}


INVALID_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
NO_KEY_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
DEFAULT_ERRORS: dict[int, Json] = {
    400: error_body(400, "Request contains an invalid argument."),
    403: error_body(403, "The caller does not have permission"),
    404: error_body(404, "Requested entity was not found."),
    429: error_body(429, QUOTA_MESSAGE, quota_failure(), retry_info("7s")),
    500: error_body(
        500,
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: error_body(503, "The model is overloaded. Please try again later."),
    504: error_body(504, "The request timed out. Please try again."),
}


def api_key_invalid() -> Json:
    localized = {"@type": RPC + "LocalizedMessage", "locale": "en-US", "message": INVALID_KEY_MESSAGE}
    return error_body(400, INVALID_KEY_MESSAGE, error_info("API_KEY_INVALID"), localized)


# paths and deterministic values --------------------------------------------------------------------
def generate_path(model: str) -> str:
    return f"{PREFIX}/models/{model}:generateContent"


def embed_path(model: str) -> str:
    return f"{PREFIX}/models/{model}:embedContent"


def batch_embed_path(model: str) -> str:
    return f"{PREFIX}/models/{model}:batchEmbedContents"


def embedding_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The deterministic vector the fake answers for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255 - 0.5, 6) for i in range(dimensions)]


def response_id(body: bytes) -> str:
    """The ``responseId`` the fake answers for a request body (23 url-safe characters, like Google's)."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()[:23]


def words(text: str) -> int:
    return len(text.split())


class GeminiFake(FakeHttpServer):
    """Start with ``with`` (or ``start()``/``stop()``); ``api_key=None`` accepts any caller.

    The key is checked before any scripted answer, as Google authenticates first.
    """

    def __init__(self, api_key: str | None = "gemini-test-key") -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        """The API root, without the version (what ``GEMINI_BASE_URL`` holds)."""
        return self.root_url

    def environ(self) -> dict[str, str]:
        """The variables that point the gateway's Gemini provider at this fake."""
        return {"GEMINI_BASE_URL": self.base_url, **({"GEMINI_API_KEY": self.api_key} if self.api_key else {})}

    def full_path(self, path: str) -> str:
        """Paths may be given below ``/v1beta`` (``/models/m:generateContent``) or in full."""
        return path if path.startswith(PREFIX + "/") else PREFIX + path

    def script_error(
        self,
        path: str,
        status: int,
        body: Json | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with a Google error body (a default one for the status if none)."""
        payload = body if body is not None else DEFAULT_ERRORS.get(status, error_body(status, "Unknown error."))
        self.script_json(path, status, payload, headers, times)

    def script_reply(self, path: str, reply: Json, times: int | None = None) -> None:
        """Answer 200 with exactly this ``GenerateContentResponse`` (or embedding) body."""
        self.script_json(path, 200, reply, None, times)

    def authorize(self, request: RecordedRequest) -> Reply | None:
        key = request.headers.get("x-goog-api-key") or next(iter(request.query.get("key", [])), None)
        if self.api_key is None:
            return None
        if not key:
            return json_reply(403, error_body(403, NO_KEY_MESSAGE, error_info("CONSUMER_INVALID")))
        if key != self.api_key:
            return json_reply(400, api_key_invalid())
        return None

    def respond(self, request: RecordedRequest) -> Reply:
        route = _ROUTE.match(request.path)
        if request.method != "POST" or route is None:
            return json_reply(404, error_body(404, f"Method not found: {request.method} {request.path}"))
        resource, method = unquote(route.group(1)), route.group(2)
        if resource == f"models/{MISSING_MODEL}":
            message = f"{resource} is not found for API version v1beta, or is not supported for {method}. "
            return json_reply(404, error_body(404, message + "Call ListModels to see the list of available models."))
        if not isinstance(request.json, dict):
            description = "Invalid JSON payload received. Unexpected token."
            return json_reply(400, error_body(400, description, bad_request(description)))
        try:
            if method == "generateContent":
                return json_reply(200, _generate(resource, request.json, request.body))
            if method == "embedContent":
                return json_reply(200, {"embedding": _embed(request.json, "")})
            return json_reply(200, _batch_embed(resource, request.json))
        except _Invalid as invalid:
            return json_reply(400, error_body(400, invalid.message, *invalid.details))


# request checks ---------------------------------------------------------------------------------------
class _Invalid(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = [bad_request(message, field)] if field is not None else []


def _known(value: Any, kind: str, at: str) -> Json:
    if not isinstance(value, dict):
        raise _Invalid(f"Invalid value at '{at}': expected an object.", at)
    for name in value:
        if name not in _FIELDS[kind]:
            raise _Invalid(f"Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field.", at)
    return value


def _check_content(value: Any, at: str, roles: Iterable[str]) -> Json:
    content = _known(value, "content", at)
    if "role" in content and content["role"] not in roles:
        raise _Invalid("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise _Invalid(f"* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n")
    for index, part in enumerate(parts):
        _known(part, "part", f"{at}.parts[{index}]")
        if sum(name in part for name in _DATA_FIELDS) != 1:
            where = f"* GenerateContentRequest.{at}.parts[{index}].data"
            raise _Invalid(f"{where}: required oneof field 'data' must have one initialized field\n")
        if part.get("text") == "":
            raise _Invalid("Unable to submit request because it has an empty text parameter.")
    return content


def _check_generate(body: Json) -> None:
    _known(body, "request", "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    calls = 0
    for index, content in enumerate(contents):
        parts = _check_content(content, f"contents[{index}]", ("user", "model"))["parts"]
        responses = sum("functionResponse" in part for part in parts)
        if responses and responses != calls:
            raise _Invalid(
                "Please ensure that the number of function response parts is equal to the number of "
                "function call parts of the function call turn."
            )
        calls = sum("functionCall" in part for part in parts)
    if "systemInstruction" in body:
        _check_content(body["systemInstruction"], "system_instruction", ("user", "model"))
    for index, tool in enumerate(body.get("tools") or []):
        for place, declaration in enumerate(_known(tool, "tool", f"tools[{index}]").get("functionDeclarations") or []):
            at = f"tools[{index}].function_declarations[{place}]"
            _known(declaration, "function_declaration", at)
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                raise _Invalid(f"* GenerateContentRequest.{at}: parameters and parameters_json_schema are exclusive\n")
    if "generationConfig" in body:
        _known(body["generationConfig"], "generation_config", "generation_config")


# replies --------------------------------------------------------------------------------------------
def _texts(content: Any) -> str:
    parts = content.get("parts", []) if isinstance(content, dict) else []
    return " ".join(part["text"] for part in parts if isinstance(part.get("text"), str))


def _echo(contents: list[Json]) -> str:
    """The text of the last user turn (the results it carries when it holds only tool results)."""
    last = next((content for content in reversed(contents) if content.get("role", "user") == "user"), {})
    text = _texts(last)
    if text:
        return text
    results = [part["functionResponse"]["response"] for part in last.get("parts", []) if "functionResponse" in part]
    return json.dumps(results[0] if len(results) == 1 else results)


def _generate(resource: str, body: Json, raw: bytes) -> Json:
    _check_generate(body)
    config = body.get("generationConfig") or {}
    text = _echo(body["contents"])
    if config.get("responseMimeType") == "application/json":
        text = json.dumps({"echo": text})
    finish = "STOP"
    for stop in config.get("stopSequences") or []:
        if stop in text:
            text = text[: text.index(stop)]
    limit = config.get("maxOutputTokens")
    if isinstance(limit, int) and words(text) > limit:
        text, finish = " ".join(text.split()[:limit]), "MAX_TOKENS"
    part: Json = {"text": text}
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    declared = [d["name"] for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
    if calling.get("mode") == "ANY" and declared:
        part, finish = (
            {"functionCall": {"name": (calling.get("allowedFunctionNames") or declared)[0], "args": {}}},
            "STOP",
        )
    count = config.get("candidateCount", 1)
    candidates = [
        {"content": {"parts": [part], "role": "model"}, "finishReason": finish, "index": index}
        for index in range(count)
    ]
    prompt = max(1, sum(words(_texts(c)) for c in [*body["contents"], body.get("systemInstruction")]))
    made = count * words(text) if "text" in part else count
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": made,
        "totalTokenCount": prompt + made,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    version = resource.split("/", 1)[1]
    return {"candidates": candidates, "usageMetadata": usage, "modelVersion": version, "responseId": response_id(raw)}


def _embed(request: Json, at: str) -> Json:
    _known(request, "embed", at or "")
    content = request.get("content")
    if not isinstance(content, dict) or not _texts(content):
        raise _Invalid(f"* EmbedContentRequest.{at}content: content is not specified\n")
    task = request.get("taskType")
    if task is not None and task not in TASK_TYPES:
        enum = "type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType"
        raise _Invalid(f"Invalid value at '{at}task_type' ({enum}), \"{task}\"")
    dimensions = request.get("outputDimensionality", DEFAULT_DIMENSIONS)
    return {"values": embedding_vector(_texts(content), dimensions)}


def _batch_embed(resource: str, body: Json) -> Json:
    requests = body.get("requests")
    if set(body) != {"requests"} or not isinstance(requests, list) or not requests:
        raise _Invalid("* BatchEmbedContentsRequest.requests: requests is not specified\n")
    if len(requests) > 100:
        raise _Invalid("* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n")
    for index, item in enumerate(requests):
        if not isinstance(item, dict) or item.get("model") != resource:
            raise _Invalid(f"* BatchEmbedContentsRequest.requests[{index}].model: model must be {resource}\n")
    return {"embeddings": [_embed(item, f"requests[{index}].") for index, item in enumerate(requests)]}


# the adapter under test -----------------------------------------------------------------------------
def gemini_provider(environ: Mapping[str, str], transport: HttpTransport | None = None) -> Provider:
    """The Gemini adapter as the worker builds it, from ``environ`` (e.g. ``fake.environ()``)."""
    env = ProviderEnv(Settings(), dict(environ), transport or HttpTransport(1.0, 2.0), FakeClock())
    return gemini.SPEC.build(env)


def only_request(fake: GeminiFake, path: str, key: str) -> RecordedRequest:
    """The one request the fake got, checked for what every Gemini call carries.

    POST to ``path`` with no query string (the key never travels in the URL), the key in
    ``x-goog-api-key``, a JSON body and no ``Authorization`` header.
    """
    [sent] = fake.requests
    assert (sent.method, sent.path, dict(sent.query)) == ("POST", fake.full_path(path), {})
    assert sent.headers.get("x-goog-api-key") == key
    assert sent.headers.get("content-type") == "application/json"
    assert "authorization" not in sent.headers
    return sent


def invoke_failing(provider: Provider, call: ProviderCall) -> ProviderError:
    """The ``ProviderError`` ``call`` raises; its text and job error body never hold the call's key."""
    with pytest.raises(ProviderError) as caught:
        provider.invoke(call)
    error = caught.value
    body = json.dumps(error.to_body("evt-1", {"provider": "gemini", "model_requested": call.model}))
    if call.api_key:
        assert call.api_key not in f"{error} {error.message} {body}"
    return error


@pytest.fixture
def gemini_fake() -> Iterator[GeminiFake]:
    """A running fake accepting ``gemini-test-key``; import into a conftest to share it."""
    with GeminiFake() as fake:
        yield fake
