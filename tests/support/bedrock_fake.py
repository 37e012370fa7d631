"""A fake Amazon Bedrock Runtime: a real HTTP server on 127.0.0.1 speaking its REST-JSON wire protocol.

botocore talks to it exactly as to Bedrock (point ``BEDROCK_BASE_URL`` at ``root_url``):

- ``POST /model/{modelId}/converse`` (model id percent-encoded, as botocore sends it): a JSON
  Converse request; answers ``{"output":{"message":{"role":"assistant","content":[...]}},
  "stopReason","usage","metrics"}``. It echoes the last user text (cut at ``maxTokens`` words →
  ``max_tokens``, at a stop sequence → ``stop_sequence``); with ``toolChoice`` ``any``/``tool`` it
  calls the first/named tool (``tool_use``). It checks what Bedrock checks: a first user turn,
  alternating roles, a ``toolConfig`` whenever tool blocks are present.
- ``POST /model/{modelId}/invoke``: the raw model body of Amazon Titan Embeddings
  (``{"embedding","inputTextTokenCount"}``) or Cohere Embed on Bedrock (``{"embeddings":...}``),
  with Bedrock's ``X-Amzn-Bedrock-Input-Token-Count`` header.
- Errors as Bedrock sends them: HTTP status, ``x-amzn-ErrorType: <Code>:http://internal.amazon.com/...``
  and a ``{"message"}`` body (``script_error``). Every reply carries ``x-amzn-RequestId``.

Signatures are not verified, but the SigV4 ``Authorization`` header must be there (403
``MissingAuthenticationTokenException``) and name the fake's access key (403
``UnrecognizedClientException``) for the ``bedrock`` service.

    with BedrockFake() as fake:
        environ = fake.environ()     # BEDROCK_BASE_URL, BEDROCK_REGION, AWS_ACCESS_KEY_ID/SECRET
        fake.script_error(converse_path("amazon.nova-lite-v1:0"), 429, "ThrottlingException", "Too many requests")
        fake.requests_to(converse_path("amazon.nova-lite-v1:0"))[0].json
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.support.fake_http import FakeHttpServer, Json, RecordedRequest, Reply, json_reply
from tests.support.openai_fake import embedding_vector

ACCESS_KEY_ID = "testing"  # what the local stack's moto credentials use
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
FIRST_USER = (
    "A conversation must start with a user message. Try again with a conversation that starts with a user message."
)
ALTERNATE = (
    "A conversation must alternate between user and assistant roles. "
    "Make sure the conversation alternates between user and assistant roles and try again."
)
ADD_BLOCK = "Add a ContentBlock object to the content field and try again."
ADD_TEXT = "Add text to the text field, and try again."
REFORMAT = "please reformat your input and try again."
_ROUTE = re.compile(r"^/model/(?P<model>[^/]+)/(?P<operation>converse|invoke)$")
_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


def converse_path(model: str) -> str:
    """The path botocore sends a Converse call for ``model`` to (the id percent-encoded)."""
    return f"/model/{quote(model, safe='')}/converse"


def invoke_path(model: str) -> str:
    return f"/model/{quote(model, safe='')}/invoke"


def request_id(body: bytes) -> str:
    """The ``x-amzn-RequestId`` the fake answers for a request body (deterministic)."""
    return str(uuid.UUID(bytes=hashlib.md5(body).digest()))


def error_reply(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """Bedrock's error: the status, ``x-amzn-ErrorType`` and ``{"message"}``."""
    return json_reply(
        status, {"message": message}, {"x-amzn-ErrorType": f"{code}:{ERROR_NAMESPACE}", **(headers or {})}
    )


def credential_scope(request: RecordedRequest) -> dict[str, str] | None:
    """``key``, ``date``, ``region`` and ``service`` of a request's SigV4 ``Authorization``, if any."""
    match = _CREDENTIAL.search(request.headers.get("authorization", ""))
    return match.groupdict() if match else None


class BedrockFake(FakeHttpServer):
    """Start with ``with``; ``access_key_id=None`` accepts any signed caller."""

    def __init__(self, access_key_id: str | None = ACCESS_KEY_ID, region: str = REGION) -> None:
        super().__init__()
        self.access_key_id = access_key_id
        self.region = region

    def environ(self) -> dict[str, str]:
        """The variables that point the gateway's Bedrock provider (boto3) at this fake."""
        return {
            "BEDROCK_BASE_URL": self.root_url,
            "BEDROCK_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key_id or ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }

    def script_error(
        self,
        path: str,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``path`` with a Bedrock error (``code`` goes to ``x-amzn-ErrorType``)."""
        extra = {"x-amzn-ErrorType": f"{code}:{ERROR_NAMESPACE}", "x-amzn-RequestId": str(uuid.uuid4())}
        self.script_json(path, status, {"message": message}, {**extra, **(headers or {})}, times)

    def authorize(self, request: RecordedRequest) -> Reply | None:
        scope = credential_scope(request)
        if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 ") or scope is None:
            return error_reply(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if scope["service"] != "bedrock" or (self.access_key_id is not None and scope["key"] != self.access_key_id):
            message = "The security token included in the request is invalid."
            return error_reply(403, "UnrecognizedClientException", message)
        return None

    def respond(self, request: RecordedRequest) -> Reply:
        match = _ROUTE.match(request.path)
        if request.method != "POST" or match is None:
            return error_reply(404, "UnknownOperationException", "Unknown operation")
        model = unquote(match.group("model"))
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _validation("Malformed input request, please reformat your input and try again.")
        handler = _converse if match.group("operation") == "converse" else _invoke
        status, headers, content = handler(model, body)
        headers.setdefault("x-amzn-RequestId", request_id(request.body))
        return status, headers, content


def _validation(message: str) -> Reply:
    return error_reply(400, "ValidationException", message)


# Converse ---------------------------------------------------------------------------------


def _converse(model: str, body: Json) -> Reply:
    messages = body.get("messages")
    problem = _conversation_problem(messages, body)
    if problem:
        return _validation(problem)
    assert isinstance(messages, list)
    config = body.get("inferenceConfig") or {}
    content, stop_reason = _answer(messages, body.get("toolConfig") or {}, config)
    used = _words(json.dumps([body.get("system"), messages]))
    made = _words(" ".join(str(block.get("text", "")) for block in content))
    reply = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": used, "outputTokens": made, "totalTokens": used + made},
        "metrics": {"latencyMs": 42},
    }
    return json_reply(200, reply)


def _conversation_problem(messages: Any, body: Json) -> str | None:
    if not isinstance(messages, list) or not messages:
        return FIRST_USER
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles[0] != "user":
        return FIRST_USER
    if any(a == b for a, b in itertools.pairwise(roles)) or not set(roles) <= {"user", "assistant"}:
        return ALTERNATE
    for index, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"The content field in the Message object at messages.{index} is empty. {ADD_BLOCK}"
        for block in content:
            if ("toolUse" in block or "toolResult" in block) and not body.get("toolConfig"):
                return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
            if "text" in block and not str(block["text"]).strip():
                return f"The text field in the ContentBlock object at messages.{index}.content is blank. {ADD_TEXT}"
            if "image" in block and not _valid_image(block["image"]):
                return "The provided image must have a valid format and base64-encoded bytes."
    return None


def _valid_image(image: Any) -> bool:
    if not isinstance(image, dict) or image.get("format") not in ("png", "jpeg", "gif", "webp"):
        return False
    data = (image.get("source") or {}).get("bytes")
    try:
        return isinstance(data, str) and bool(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return False


def _answer(messages: list[Json], tools: Json, config: Json) -> tuple[list[Json], str]:
    choice = tools.get("toolChoice") or {}
    specs = [t["toolSpec"] for t in tools.get("tools") or [] if isinstance(t, dict) and "toolSpec" in t]
    name = (choice.get("tool") or {}).get("name") or (specs[0]["name"] if "any" in choice and specs else None)
    if name:
        use = {"toolUseId": "tooluse_" + hashlib.sha1(name.encode()).hexdigest()[:22], "name": name, "input": {}}
        return [{"toolUse": use}], "tool_use"
    text = _last_user_text(messages)
    for stop in config.get("stopSequences") or []:
        if stop in text:
            return [{"text": text[: text.index(stop)]}], "stop_sequence"
    limit = config.get("maxTokens")
    words = text.split(" ")
    if isinstance(limit, int) and len(words) > limit:
        return [{"text": " ".join(words[:limit])}], "max_tokens"
    return [{"text": text}], "end_turn"


def _last_user_text(messages: list[Json]) -> str:
    for message in reversed(messages):
        texts = [str(b["text"]) for b in message["content"] if "text" in b]
        if message["role"] == "user" and texts:
            return texts[-1]
    return "(no text)"


def _words(text: str) -> int:
    return max(1, len(text.split()))


# InvokeModel (embeddings) ------------------------------------------------------------------


def _invoke(model: str, body: Json) -> Reply:
    handler = next((h for prefix, h in _EMBEDDERS.items() if model.startswith(prefix)), None)
    if handler is None:
        return _validation("The provided model identifier is invalid.")
    return handler(model, body)


def _titan(model: str, body: Json) -> Reply:
    allowed = {"inputText"}
    if model.startswith("amazon.titan-embed-text-v2"):
        allowed |= {"dimensions", "normalize", "embeddingTypes"}
    elif model.startswith("amazon.titan-embed-image"):
        allowed |= {"inputImage", "embeddingConfig"}
    extra = sorted(set(body) - allowed)
    if extra:
        return _validation(f"Malformed input request: #: extraneous key [{extra[0]}] is not permitted, {REFORMAT}")
    if not isinstance(body.get("inputText"), str):
        return _validation(f"Malformed input request: #: required key [inputText] not found, {REFORMAT}")
    dimensions = body.get("dimensions") or (body.get("embeddingConfig") or {}).get("outputEmbeddingLength") or 8
    vector = embedding_vector(body["inputText"], dimensions)
    tokens = _words(body["inputText"])
    reply: Json = {"embedding": vector, "inputTextTokenCount": tokens}
    if "dimensions" in allowed:
        reply["embeddingsByType"] = {"float": vector}
    return json_reply(200, reply, _token_headers(tokens))


def _cohere(model: str, body: Json) -> Reply:
    texts = body.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not 1 <= len(texts) <= 96:
        return _validation("Malformed input request: #/texts: expected between 1 and 96 strings")
    if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering"):
        return _validation("Malformed input request: #: required key [input_type] not found")
    vectors = [embedding_vector(text, body.get("output_dimension") or 8) for text in texts]
    reply: Json = {"id": str(uuid.uuid4()), "texts": texts}
    if body.get("embedding_types"):
        reply |= {"embeddings": {"float": vectors}, "response_type": "embeddings_by_type"}
    else:
        reply |= {"embeddings": vectors, "response_type": "embeddings_floats"}
    return json_reply(200, reply, _token_headers(sum(_words(t) for t in texts)))


def _token_headers(tokens: int) -> dict[str, str]:
    return {"X-Amzn-Bedrock-Input-Token-Count": str(tokens), "X-Amzn-Bedrock-Invocation-Latency": "17"}


_EMBEDDERS: dict[str, Callable[[str, Json], Reply]] = {"amazon.titan-embed": _titan, "cohere.embed": _cohere}


@pytest.fixture
def bedrock_fake() -> Iterator[BedrockFake]:
    """A running fake accepting the ``testing`` access key; import into a conftest to share it."""
    with BedrockFake() as fake:
        yield fake
