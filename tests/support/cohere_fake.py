"""A fake Cohere API (v2): a real HTTP server on 127.0.0.1 answering in Cohere's wire format.

Serves ``POST /v2/chat`` (echoes the last user text; honours ``max_tokens`` and
``stop_sequences`` with ``MAX_TOKENS`` / ``STOP_SEQUENCE``), ``POST /v2/embed``
(deterministic float vectors, ``output_dimension`` long, default 8) and ``POST /v2/rerank``
(word-overlap scores, best first, ``top_n``), with bodies shaped as Cohere's v2 API
reference documents them. It validates requests as Cohere does (``invalid request: …``
400s), checks ``Authorization: Bearer <api_key>`` (401 ``no api key supplied`` /
``invalid api token``) and records every request. Scripting, per path (``/chat`` or
``/v2/chat``): ``script_error`` (Cohere's ``{"id", "message"}`` body), ``script_chat``
(an exact chat reply, e.g. tool calls), and the base class's ``script_json`` /
``script_raw`` / ``script_delay``.

    with CohereFake(api_key="co-test") as fake:
        environ = fake.environ()              # COHERE_BASE_URL / COHERE_API_KEY
        fake.script_error("/chat", 429, headers={"retry-after": "3"}, times=1)
        ...
        fake.requests_to("/chat")[0].json
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from tests.support.fake_http import FakeHttpServer, Json, RecordedRequest, Reply, json_reply

PREFIX = "/v2"
ROLES = ("system", "user", "assistant", "tool")
SYSTEM_PROMPT_TOKENS = 7  # what ``usage.tokens`` counts beyond the billed input tokens

DEFAULT_ERRORS: dict[int, str] = {
    400: "invalid request: message must be at least 1 token long or tool results must be specified.",
    401: "invalid api token",
    402: "Please add or update your payment method at https://dashboard.cohere.com/billing?tab=payment to continue",
    404: "model 'command-nope' not found, make sure the correct model ID was used and that you have access to it.",
    422: "invalid request: the combination of parameters is not supported",
    429: "You are past the per minute request limit, please wait and try again later.",
    498: "invalid token",
    499: "request cancelled",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable, please try again later",
    504: "request timed out",
}


def error_body(message: str, error_id: str | None = None) -> Json:
    """Cohere's error body: ``{"id", "message"}``."""
    return {"id": error_id or str(uuid.uuid4()), "message": message}


def answer_id(body: Any) -> str:
    """The deterministic id the fake gives its answer to ``body``."""
    return str(uuid.UUID(bytes=hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()[:16]))


def chat_reply(
    *,
    reply_id: str = "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
    text: str | None = None,
    finish_reason: str = "COMPLETE",
    tool_calls: Sequence[Json] = (),
    tool_plan: str | None = None,
    billed: tuple[int, int] = (5, 3),
    tokens: tuple[int, int] | None = (12, 3),
) -> Json:
    """A v2 chat reply as Cohere's API reference shows it (for ``script_chat``)."""
    message: Json = {"role": "assistant"}
    if tool_plan is not None:
        message["tool_plan"] = tool_plan
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    if text is not None:
        message["content"] = [{"type": "text", "text": text}]
    usage: Json = {"billed_units": {"input_tokens": billed[0], "output_tokens": billed[1]}}
    if tokens is not None:
        usage["tokens"] = {"input_tokens": tokens[0], "output_tokens": tokens[1]}
    return {"id": reply_id, "finish_reason": finish_reason, "message": message, "usage": usage}


def embedding_vector(text: str, dimensions: int = 8) -> list[float]:
    """The deterministic vector the fake answers for ``text``."""
    digest = hashlib.sha256(("cohere:" + text).encode()).digest()
    return [round(digest[i % len(digest)] / 255 - 0.5, 6) for i in range(dimensions)]


def relevance(query: str, document: str) -> float:
    """The fake's score: word overlap (Jaccard) of query and document."""
    asked, found = set(_words(query)), set(_words(document))
    return round(len(asked & found) / len(asked | found), 6) if asked | found else 0.0


class CohereFake(FakeHttpServer):
    """Start with ``with`` (or ``start()``/``stop()``); ``api_key=None`` accepts any caller."""

    def __init__(self, api_key: str | None = "co-test") -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        """The API root, as ``COHERE_BASE_URL`` takes it (without ``/v2``)."""
        return self.root_url

    def environ(self) -> dict[str, str]:
        """The variables that point the gateway's Cohere provider at this fake."""
        return {"COHERE_BASE_URL": self.base_url, **({"COHERE_API_KEY": self.api_key} if self.api_key else {})}

    def full_path(self, path: str) -> str:
        """Paths may be given below ``/v2`` (``/chat``) or in full."""
        return path if path.startswith(PREFIX + "/") else PREFIX + path

    def script_error(
        self,
        path: str,
        status: int,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with Cohere's error body (a documented message for the status if none)."""
        text = message if message is not None else DEFAULT_ERRORS.get(status, "unexpected error")
        self.script_json(path, status, error_body(text), headers, times)

    def script_chat(self, reply: Json, times: int | None = None) -> None:
        """Answer ``/v2/chat`` with exactly ``reply`` (see ``chat_reply``)."""
        self.script_json("/chat", 200, reply, times=times)

    def authorize(self, request: RecordedRequest) -> Reply | None:
        auth = request.headers.get("authorization")
        if self.api_key is None:
            return None
        if not auth:
            return json_reply(401, error_body("no api key supplied"))
        if auth != f"Bearer {self.api_key}":
            return json_reply(401, error_body("invalid api token"))
        return None

    def respond(self, request: RecordedRequest) -> Reply:
        route = ROUTES.get(request.path)
        if request.method != "POST" or route is None:
            return json_reply(404, error_body(f"404 page not found: {request.method} {request.path}"))
        body = request.json
        if not isinstance(body, dict):
            return _invalid("invalid request: request body must be a JSON object")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _invalid("invalid request: model is required")
        return route(body)


# Cohere-shaped replies ------------------------------------------------------------------------
def _invalid(message: str) -> Reply:
    return json_reply(400, error_body(message))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _check_message(message: Any) -> str | None:
    """Cohere's complaint about a v2 message, if any."""
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        return "invalid request: messages must have a role of system, user, assistant or tool"
    role, content = message["role"], message.get("content")
    if role == "user" and isinstance(content, list):
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            image = part.get("image_url") if isinstance(part, dict) else None
            if kind not in ("text", "image_url") or (kind == "image_url" and not isinstance(image, dict)):
                return "invalid request: user content must be text or image_url objects"
    if role == "tool" and not message.get("tool_call_id"):
        return "invalid request: tool messages must have a tool_call_id"
    if role == "assistant" and not message.get("tool_calls") and not _text(content):
        return "invalid request: assistant message must have content or tool calls"
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
            return "invalid request: tool call arguments must be a JSON string"
    return None


def _chat(body: Json) -> Reply:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _invalid("invalid request: messages must not be empty")
    if body.get("stream") not in (None, False):
        return _invalid("invalid request: this endpoint answers stream=false only")
    for message in messages:
        complaint = _check_message(message)
        if complaint:
            return _invalid(complaint)
    users = [m for m in messages if m["role"] == "user"]
    text = _text(users[-1].get("content")) if users else ""
    finish = "COMPLETE"
    for stop in body.get("stop_sequences") or []:
        if stop and stop in text:
            text, finish = text[: text.index(stop)], "STOP_SEQUENCE"
    limit = body.get("max_tokens")
    if isinstance(limit, int) and len(text.split()) > limit:
        text, finish = " ".join(text.split()[:limit]), "MAX_TOKENS"
    billed_in = sum(len(_text(m.get("content")).split()) for m in messages)
    billed_out = len(text.split())
    reply = chat_reply(
        reply_id=answer_id(body),
        text=text,
        finish_reason=finish,
        billed=(billed_in, billed_out),
        tokens=(billed_in + SYSTEM_PROMPT_TOKENS, billed_out),
    )
    return json_reply(200, reply)


def _embed(body: Json) -> Reply:
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return _invalid("invalid request: texts must be a non-empty list of strings")
    if not isinstance(body.get("input_type"), str):
        return _invalid("invalid request: valid input_type must be provided with the provided model")
    types = body.get("embedding_types")
    if not isinstance(types, list) or not types:
        return _invalid("invalid request: embedding_types is required")
    given = body.get("output_dimension")
    dimensions = given if isinstance(given, int) else 8
    floats = [embedding_vector(text, dimensions) for text in texts]
    embeddings: Json = {}
    for kind in types:
        embeddings[kind] = floats if kind == "float" else [[int(x * 254) for x in vector] for vector in floats]
    meta = {"api_version": {"version": "2"}, "billed_units": {"input_tokens": sum(len(t.split()) for t in texts)}}
    reply = {"id": answer_id(body), "embeddings": embeddings, "texts": texts, "meta": meta}
    return json_reply(200, {**reply, "response_type": "embeddings_by_type"})


def _rerank(body: Json) -> Reply:
    query, documents = body.get("query"), body.get("documents")
    if not isinstance(query, str) or not query.strip():
        return _invalid("invalid request: query must not be empty or be only whitespace")
    if not isinstance(documents, list) or not documents:
        return _invalid("invalid request: list of documents must not be empty")
    if not all(isinstance(document, str) for document in documents):
        return _invalid("invalid request: documents must be a list of strings")
    scored = [{"index": i, "relevance_score": relevance(query, d)} for i, d in enumerate(documents)]
    scored.sort(key=lambda item: (-item["relevance_score"], item["index"]))
    top_n = body.get("top_n") if isinstance(body.get("top_n"), int) else len(scored)
    meta = {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    return json_reply(200, {"id": answer_id(body), "results": scored[:top_n], "meta": meta})


ROUTES: dict[str, Callable[[Json], Reply]] = {
    PREFIX + "/chat": _chat,
    PREFIX + "/embed": _embed,
    PREFIX + "/rerank": _rerank,
}


@pytest.fixture
def cohere_fake() -> Iterator[CohereFake]:
    """A running fake accepting ``co-test``; import into a conftest to share it."""
    with CohereFake(api_key="co-test") as fake:
        yield fake
