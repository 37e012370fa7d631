"""A fake Mistral AI API: a real HTTP server on 127.0.0.1 answering in Mistral's wire format.

Serves ``POST /v1/chat/completions`` (echoes the last user text; ``max_tokens`` and
``stop`` give ``length`` / ``stop``), ``POST /v1/embeddings`` (deterministic vectors,
``output_dimension`` long, default 8) and ``POST /v1/ocr`` (one markdown page per requested
page), with bodies shaped as Mistral's API reference documents them. It is as strict as
Mistral: unknown fields are a 422 ``extra_forbidden`` (in Mistral's
``{"object": "error", "message": {"detail": [...]}}`` body), tool-call ids that are not nine
letters or digits a 400 ``invalid_function_call``. It checks ``Authorization: Bearer
<api_key>`` (401 ``{"message": "Unauthorized", "request_id"}``) and records every request.
Scripting, per path (``/chat/completions`` or ``/v1/chat/completions``): ``script_error``
(Mistral's documented error body, a default per status), ``script_chat`` (an exact reply),
and the base class's ``script_json`` / ``script_raw`` / ``script_delay``.

    with MistralFake(api_key="mistral-test") as fake:
        environ = fake.environ()              # MISTRAL_BASE_URL / MISTRAL_API_KEY
        fake.script_error("/chat/completions", 429, headers={"retry-after": "2"}, times=1)
        ...
        fake.requests_to("/chat/completions")[0].json
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from tests.support.fake_http import FakeHttpServer, Json, RecordedRequest, Reply, json_reply

PREFIX = "/v1"
CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "parallel_tool_calls",
        "prediction",
        "prompt_mode",
        "safe_prompt",
    }
)
MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "prefix"},
    "tool": {"role", "content", "tool_call_id", "name"},
}
EMBEDDING_FIELDS = frozenset({"model", "input", "output_dimension", "output_dtype", "encoding_format", "metadata"})
OCR_FIELDS = frozenset(
    {
        "model",
        "id",
        "document",
        "pages",
        "include_image_base64",
        "image_limit",
        "image_min_size",
        "bbox_annotation_format",
        "document_annotation_format",
    }
)
TOOL_CHOICES = ("auto", "none", "any", "required")
VALID_CALL_ID = re.compile(r"[A-Za-z0-9]{9}")
PAGE_DIMENSIONS = {"dpi": 200, "height": 2200, "width": 1700}


def error_body(message: Any, error_type: str, param: str | None = None, code: str | None = None) -> Json:
    """Mistral's documented error body."""
    return {"object": "error", "message": message, "type": error_type, "param": param, "code": code}


def validation_error(*details: Json) -> Json:
    """Mistral's 422 body: the validation details inside ``message``."""
    return error_body({"detail": list(details)}, "invalid_request_error")


def extra_forbidden(loc: list[Any], value: Any) -> Json:
    return {"type": "extra_forbidden", "loc": loc, "msg": "Extra inputs are not permitted", "input": value}


DEFAULT_ERRORS: dict[int, Json] = {
    400: error_body("Invalid model: mistral-nope", "invalid_model", "model", "1500"),
    401: {"message": "Unauthorized", "request_id": "0d2f6c8a9b1e4f7a8c3d5e6f7a8b9c0d"},
    403: error_body("You do not have access to this model.", "forbidden", code="3003"),
    404: {"detail": "Not Found"},
    422: validation_error({"type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": None}),
    429: error_body("Requests rate limit exceeded", "rate_limited", code="1300"),
    500: error_body("Internal server error", "internal_server_error", code="1000"),
    503: error_body("Service unavailable, please try again later.", "service_unavailable", code="1000"),
}


def embedding_vector(text: str, dimensions: int = 8) -> list[float]:
    """The deterministic vector the fake answers for ``text``."""
    digest = hashlib.sha256(("mistral:" + text).encode()).digest()
    return [round(digest[i % len(digest)] / 255 - 0.5, 6) for i in range(dimensions)]


def answer_id(prefix: str, body: Any) -> str:
    """The deterministic id the fake gives its answer to ``body`` (``cmpl-…``, ``embd-…``)."""
    return prefix + "-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


class MistralFake(FakeHttpServer):
    """Start with ``with`` (or ``start()``/``stop()``); ``api_key=None`` accepts any caller."""

    def __init__(self, api_key: str | None = "mistral-test") -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        """The API root, as ``MISTRAL_BASE_URL`` takes it (without ``/v1``)."""
        return self.root_url

    def environ(self) -> dict[str, str]:
        """The variables that point the gateway's Mistral provider at this fake."""
        return {"MISTRAL_BASE_URL": self.base_url, **({"MISTRAL_API_KEY": self.api_key} if self.api_key else {})}

    def full_path(self, path: str) -> str:
        """Paths may be given below ``/v1`` (``/chat/completions``) or in full."""
        return path if path.startswith(PREFIX + "/") else PREFIX + path

    def script_error(
        self,
        path: str,
        status: int,
        body: Json | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with a Mistral error body (a default one for the status if none)."""
        payload = body if body is not None else DEFAULT_ERRORS.get(status, error_body("Error", "api_error"))
        self.script_json(path, status, payload, headers, times)

    def script_chat(self, reply: Json, times: int | None = None) -> None:
        """Answer ``/v1/chat/completions`` with exactly ``reply``."""
        self.script_json("/chat/completions", 200, reply, times=times)

    def authorize(self, request: RecordedRequest) -> Reply | None:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            request_id = hashlib.sha1(request.body).hexdigest()[:32]
            return json_reply(401, {"message": "Unauthorized", "request_id": request_id})
        return None

    def respond(self, request: RecordedRequest) -> Reply:
        route = ROUTES.get(request.path)
        if request.method != "POST" or route is None:
            return json_reply(404, {"detail": "Not Found"})
        body = request.json
        if not isinstance(body, dict):
            return json_reply(400, error_body("Invalid JSON body", "invalid_request_error"))
        allowed, handler = route
        extra = [extra_forbidden(["body", name], body[name]) for name in body if name not in allowed]
        if not isinstance(body.get("model"), str):
            extra.append({"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": None})
        if extra:
            return json_reply(422, validation_error(*extra))
        return handler(body)


# Mistral-shaped replies -------------------------------------------------------------------------
def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _check_messages(messages: Any) -> Reply | None:
    if not isinstance(messages, list) or not messages:
        return json_reply(422, validation_error({"type": "too_short", "loc": ["body", "messages"], "msg": "empty"}))
    extra: list[Json] = []
    for position, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in MESSAGE_FIELDS:
            return json_reply(
                422, validation_error({"type": "union_tag_invalid", "loc": ["body", "messages", position]})
            )
        loc = ["body", "messages", position, role]
        extra += [extra_forbidden([*loc, name], message[name]) for name in message if name not in MESSAGE_FIELDS[role]]
        ids = [call.get("id") for call in message.get("tool_calls") or [] if isinstance(call, dict)]
        ids += [message["tool_call_id"]] if role == "tool" else []
        for call_id in ids:
            if not isinstance(call_id, str) or not VALID_CALL_ID.fullmatch(call_id):
                text = f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9."
                return json_reply(400, error_body(text, "invalid_function_call", code="3280"))
    return json_reply(422, validation_error(*extra)) if extra else None


def _chat(body: Json) -> Reply:
    refusal = _check_messages(body["messages"])
    if refusal:
        return refusal
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, dict) and choice not in TOOL_CHOICES:
        detail = {
            "type": "enum",
            "loc": ["body", "tool_choice"],
            "msg": "Input should be 'auto', 'none', 'any' or 'required'",
        }
        return json_reply(422, validation_error(detail))
    users = [m for m in body["messages"] if m["role"] == "user"]
    text = _text(users[-1].get("content")) if users else ""
    finish = "stop"
    stops = body.get("stop")
    for stop in [stops] if isinstance(stops, str) else stops or []:
        if stop and stop in text:
            text = text[: text.index(stop)]
    limit = body.get("max_tokens")
    if isinstance(limit, int) and len(text.split()) > limit:
        text, finish = " ".join(text.split()[:limit]), "length"
    prompt = sum(len(_text(m.get("content")).split()) for m in body["messages"])
    message = {"role": "assistant", "content": text, "tool_calls": None, "prefix": False}
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": len(text.split()),
        "total_tokens": prompt + len(text.split()),
    }
    reply = {
        "id": answer_id("cmpl", body),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }
    return json_reply(200, reply)


def _embeddings(body: Json) -> Reply:
    given = body.get("input")
    inputs = [given] if isinstance(given, str) else given
    if not isinstance(inputs, list) or not inputs or not all(isinstance(item, str) for item in inputs):
        detail = {"type": "string_type", "loc": ["body", "input"], "msg": "Input should be a valid string"}
        return json_reply(422, validation_error(detail))
    wanted = body.get("output_dimension")
    dimensions = wanted if isinstance(wanted, int) else 8
    data = [
        {"object": "embedding", "embedding": embedding_vector(t, dimensions), "index": i} for i, t in enumerate(inputs)
    ]
    tokens = sum(len(item.split()) for item in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
    reply = {"id": answer_id("embd", body), "object": "list", "data": data, "model": body["model"], "usage": usage}
    return json_reply(200, reply)


def _ocr(body: Json) -> Reply:
    document = body.get("document")
    kind = document.get("type") if isinstance(document, dict) else None
    if not isinstance(document, dict) or kind not in ("document_url", "image_url") or not document.get(kind):
        detail = {"type": "union_tag_invalid", "loc": ["body", "document"], "msg": "Input tag does not match"}
        return json_reply(422, validation_error(detail))
    location = document[kind]["url"] if isinstance(document[kind], dict) else str(document[kind])
    size = _data_size(location)
    asked = body.get("pages")
    pages: list[int] = asked if isinstance(asked, list) else [0]
    images: list[Json] = []
    if kind == "document_url":
        image: Json = {"id": "img-0.jpeg", "top_left_x": 100, "top_left_y": 200, "bottom_right_x": 600}
        image |= {"bottom_right_y": 500, "image_base64": None}
        if body.get("include_image_base64"):
            image["image_base64"] = "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
        images.append(image)
    result_pages = [
        {
            "index": index,
            "markdown": f"# Page {index + 1}\n\nSource: {location[:64]}\n\n![img-0.jpeg](img-0.jpeg)",
            "images": images,
            "dimensions": PAGE_DIMENSIONS,
        }
        for index in pages
    ]
    usage = {"pages_processed": len(result_pages), "doc_size_bytes": size}
    return json_reply(
        200, {"pages": result_pages, "model": body["model"], "document_annotation": None, "usage_info": usage}
    )


def _data_size(url: str) -> int | None:
    """The decoded size of a ``data:`` URL (Mistral reports it), else ``None``."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    try:
        return len(base64.b64decode(url.split(";base64,", 1)[1], validate=True))
    except (binascii.Error, ValueError):
        return None


ROUTES: dict[str, tuple[frozenset[str], Callable[[Json], Reply]]] = {
    PREFIX + "/chat/completions": (CHAT_FIELDS, _chat),
    PREFIX + "/embeddings": (EMBEDDING_FIELDS, _embeddings),
    PREFIX + "/ocr": (OCR_FIELDS, _ocr),
}


@pytest.fixture
def mistral_fake() -> Iterator[MistralFake]:
    """A running fake accepting ``mistral-test``; import into a conftest to share it."""
    with MistralFake(api_key="mistral-test") as fake:
        yield fake
