"""A fake Anthropic API: a real HTTP server on 127.0.0.1 answering in Anthropic's wire format.

Serves ``POST /v1/messages`` (echoes the model and the last user text; a forced tool choice
answers a ``tool_use``; honours ``stop_sequences`` and ``max_tokens`` with the matching
``stop_reason``) and the Files API (``POST /v1/files`` multipart upload, ``GET /v1/files/{id}``),
with bodies shaped as Anthropic's API reference documents them. It checks ``x-api-key``
(401 ``authentication_error``; 403 ``permission_error`` for a ``forbidden_keys`` key) and
``anthropic-version`` before anything else, validates the request as the API does (400
``invalid_request_error``), records every request and every uploaded file, and can be
scripted per path to answer an error, a raw body or to stall.

    with AnthropicFake(api_key="sk-ant-test") as fake:
        environ = fake.environ()                    # ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY
        fake.script_error("/messages", 529, times=1)
        ...
        fake.requests_to("/messages")[0].json
        fake.uploads[0].content
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.fake_http import FakeHttpServer, Json, RecordedRequest, Reply, form_parts, json_reply

PREFIX = "/v1"
API_VERSION = "2023-06-01"
FILES_BETA = "files-api-2025-04-14"

DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages: Field required"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: claude-nope"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(error_type: str, message: str, req_id: str = "req_011CFakeErr0000000000000") -> Json:
    """Anthropic's error body: ``{"type":"error","error":{"type","message"},"request_id"}``."""
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": req_id}


def error_reply(status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    req_id = request_id(f"{status}{error_type}{message}".encode())
    return json_reply(status, error_body(error_type, message, req_id), {"request-id": req_id, **(headers or {})})


@dataclass(frozen=True)
class UploadedFile:
    """A file the fake received on ``POST /v1/files``, with the other form fields sent beside it."""

    id: str
    filename: str
    mime_type: str
    content: bytes
    created_at: str
    fields: Mapping[str, str]

    def metadata(self) -> Json:
        """The Files API's file object for this upload."""
        return {
            "id": self.id,
            "type": "file",
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size_bytes": len(self.content),
            "created_at": self.created_at,
            "downloadable": False,
        }


class AnthropicFake(FakeHttpServer):
    """Start with ``with`` (or ``start()``/``stop()``); ``api_key=None`` accepts any caller.

    Credentials and the version header are checked before any scripted answer, as Anthropic
    authenticates before anything else. ``clock`` stamps uploaded files (seconds since the epoch).
    """

    def __init__(
        self,
        api_key: str | None = "sk-ant-test",
        *,
        also_accept: Collection[str] = (),
        forbidden_keys: Collection[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.accepted_keys = frozenset({api_key, *also_accept} - {None})
        self.forbidden_keys = frozenset(forbidden_keys)
        self.clock = clock
        self._uploads: list[UploadedFile] = []

    @property
    def base_url(self) -> str:
        """The root Anthropic's SDK takes (no ``/v1``)."""
        return self.root_url

    def environ(self) -> dict[str, str]:
        """The variables that point the gateway's Anthropic provider at this fake."""
        keys = {"ANTHROPIC_API_KEY": self.api_key} if self.api_key else {}
        return {"ANTHROPIC_BASE_URL": self.base_url, **keys}

    def full_path(self, path: str) -> str:
        """Paths may be given below ``/v1`` (``/messages``) or in full."""
        return path if path.startswith(PREFIX + "/") else PREFIX + path

    @property
    def uploads(self) -> list[UploadedFile]:
        with self._lock:
            return list(self._uploads)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._uploads.clear()

    def script_error(
        self,
        path: str,
        status: int,
        error_type: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with Anthropic's error body (the status's documented type by default)."""
        default_type, default_message = DEFAULT_ERRORS.get(status, ("api_error", "Internal server error"))
        body = error_body(error_type or default_type, message or default_message)
        self.script_json(path, status, body, {"request-id": body["request_id"], **(headers or {})}, times)

    # the provider's behaviour ---------------------------------------------------------
    def authorize(self, request: RecordedRequest) -> Reply | None:
        key = request.headers.get("x-api-key")
        if key in self.forbidden_keys:
            return error_reply(403, *DEFAULT_ERRORS[403])
        if self.accepted_keys and not key:
            return error_reply(401, "authentication_error", "x-api-key header is required")
        if self.accepted_keys and key not in self.accepted_keys:
            return error_reply(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error_reply(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    def respond(self, request: RecordedRequest) -> Reply:
        path = request.path
        if (request.method, path) == ("POST", PREFIX + "/messages"):
            if not isinstance(request.json, dict):
                return error_reply(400, "invalid_request_error", "There was an error parsing the body")
            status, body = answer_messages(request.json, request.body)
            req_id = request_id(request.body)
            if isinstance(body, str):
                return json_reply(status, error_body("invalid_request_error", body, req_id), {"request-id": req_id})
            return json_reply(status, body, {"request-id": req_id})
        if path == PREFIX + "/files" or path.startswith(PREFIX + "/files/"):
            return self._files(request)
        return error_reply(404, "not_found_error", "Not Found")

    # Files API (beta) -------------------------------------------------------------------
    def _files(self, request: RecordedRequest) -> Reply:
        betas = {beta.strip() for beta in request.headers.get("anthropic-beta", "").split(",")}
        if FILES_BETA not in betas:
            message = f"The Files API is in beta: send the header 'anthropic-beta: {FILES_BETA}'"
            return error_reply(400, "invalid_request_error", message)
        if request.method == "POST" and request.path == PREFIX + "/files":
            return self._upload(request)
        if request.method == "GET" and request.path.startswith(PREFIX + "/files/"):
            file_id = request.path.removeprefix(PREFIX + "/files/")
            found = [upload for upload in self.uploads if upload.id == file_id]
            if found:
                return json_reply(200, found[0].metadata(), {"request-id": request_id(file_id.encode())})
            return error_reply(404, "not_found_error", f"File not found: {file_id}")
        return error_reply(405, "invalid_request_error", "Method Not Allowed")

    def _upload(self, request: RecordedRequest) -> Reply:
        parts = form_parts(request.headers.get("content-type", ""), request.body)
        files = [part for part in parts if part.name == "file" and part.filename is not None]
        if not files:
            return error_reply(400, "invalid_request_error", "file: Field required")
        part = files[0]
        filename = part.filename or ""
        mime_type = part.content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        moment = datetime.fromtimestamp(self.clock(), tz=UTC)
        seed = f"{len(self.uploads)}:{filename}".encode() + part.content
        upload = UploadedFile(
            id="file_011C" + hashlib.sha256(seed).hexdigest()[:20],
            filename=filename,
            mime_type=mime_type,
            content=part.content,
            created_at=moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            fields={p.name: p.content.decode("utf-8", "replace") for p in parts if p.filename is None and p.name},
        )
        with self._lock:
            self._uploads.append(upload)
        return json_reply(200, upload.metadata(), {"request-id": request_id(request.body)})


# Messages API -------------------------------------------------------------------------
ROLES = ("user", "assistant")
BLOCKS = {
    "user": frozenset({"text", "image", "document", "tool_result", "search_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use"}),
}
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
TOOL_CHOICE_TYPES = frozenset({"auto", "any", "tool", "none"})


def request_id(seed: bytes) -> str:
    """A ``request-id`` as Anthropic spells them (``req_011C…``), derived from ``seed``."""
    return "req_011C" + hashlib.sha256(b"req" + seed).hexdigest()[:20]


def message_id(request_body: bytes) -> str:
    """The ``id`` the fake gives the message it answers to ``request_body`` (the raw bytes)."""
    return "msg_01" + hashlib.sha256(request_body).hexdigest()[:22]


def answer_messages(body: Json, raw: bytes) -> tuple[int, Json | str]:
    """``(200, message)``, or ``(400, message text)`` for a request the API would refuse."""
    problem = _invalid(body)
    if problem is not None:
        return 400, problem
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    content: list[Json]
    stop_sequence = None
    if tools and choice.get("type") in ("any", "tool"):
        name = choice.get("name") or tools[0]["name"]
        call_id = "toolu_01" + hashlib.sha256(b"tool" + raw).hexdigest()[:22]
        content, stop_reason = [{"type": "tool_use", "id": call_id, "name": name, "input": {}}], "tool_use"
    else:
        text, stop_reason, stop_sequence = _limited(_last_user_text(body["messages"]) or "Hello!", body)
        content = [{"type": "text", "text": text}] if text else []
    usage = {
        "input_tokens": max(1, _words(body.get("system")) + _words(body["messages"])),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": max(1, _words(content)),
        "service_tier": "standard",
    }
    head = {"id": message_id(raw), "type": "message", "role": "assistant", "model": body["model"]}
    tail = {"stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage}
    return 200, {**head, "content": content, **tail}


def _limited(text: str, body: Json) -> tuple[str, str, str | None]:
    """``text`` cut at the first stop sequence, then at ``max_tokens`` words, with the stop reason."""
    found = [(text.index(stop), stop) for stop in body.get("stop_sequences") or [] if stop in text]
    if found:
        index, stop = min(found)
        return text[:index], "stop_sequence", stop
    words = text.split()
    if len(words) > body["max_tokens"]:
        return " ".join(words[: body["max_tokens"]]), "max_tokens", None
    return text, "end_turn", None


def _last_user_text(messages: list[Json]) -> str:
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        for block in reversed(content):
            if block["type"] == "text":
                return str(block["text"])
            if block["type"] == "tool_result" and isinstance(block.get("content"), str):
                return str(block["content"])
    return ""


def _words(value: Any) -> int:
    """A rough token count: the words of every string in ``value`` (ids and types excluded)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_words(item) for key, item in value.items() if key in ("text", "content", "input"))
    return 0


def _invalid(body: Json) -> str | None:
    """The message of Anthropic's 400 for a request it would refuse, else ``None``."""
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool):
        return "max_tokens: Field required"
    if limit < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    system = body.get("system")
    if (
        system is not None
        and not isinstance(system, str)
        and (not isinstance(system, list) or any(map(_bad_text, system)))
    ):
        return "system: Input should be a valid string or a list of text blocks"
    messages = body.get("messages")
    if not isinstance(messages, list):
        return "messages: Field required"
    for index in range(len(messages)):
        problem = _invalid_message(messages, index)
        if problem is not None:
            return problem
    for number, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            return f"tools.{number}: name and input_schema are required"
    choice = body.get("tool_choice")
    if choice is not None and (not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICE_TYPES):
        return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
    if isinstance(choice, dict) and choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        return "tool_choice.tool.name: Field required"
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 1):
        return "temperature: Input should be less than or equal to 1"
    return None


def _invalid_message(messages: list[Any], index: int) -> str | None:
    message = messages[index]
    where = f"messages.{index}"
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        return f"{where}.role: Input should be 'user' or 'assistant'"
    content = message.get("content")
    if isinstance(content, str):
        return None if content or index == len(messages) - 1 else "messages: text content blocks must be non-empty"
    if not isinstance(content, list) or (not content and index < len(messages) - 1):
        return f"{where}: all messages must have non-empty content except for the optional final assistant message"
    for number, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCKS[message["role"]]:
            return f"{where}.content.{number}: Input tag {kind!r} found using 'type' does not match the expected tags"
        problem = _invalid_block(block)
        if problem is not None:
            return f"{where}.content.{number}.{kind}.{problem}"
    results = {block.get("tool_use_id") for block in content if block["type"] == "tool_result"}
    previous = messages[index - 1] if index else {}
    asked = _tool_use_ids(previous) if previous.get("role") == "assistant" else set()
    if results - asked:
        unexpected = ", ".join(sorted(map(str, results - asked)))
        return f"{where}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: {unexpected}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."  # noqa: E501
    following = messages[index + 1] if index + 1 < len(messages) else None
    if message["role"] == "assistant" and isinstance(following, dict):
        answered = {b.get("tool_use_id") for b in following.get("content") or [] if isinstance(b, dict)}
        missing = _tool_use_ids(message) - answered
        if missing:
            return f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(sorted(missing))}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."  # noqa: E501
    return None


def _invalid_block(block: Json) -> str | None:
    kind = block["type"]
    if kind == "text" and _bad_text(block):
        return "text: text content blocks must be non-empty"
    if kind == "image":
        given = block.get("source")
        source: Json = given if isinstance(given, dict) else {}
        if source.get("type") == "base64" and source.get("media_type") not in IMAGE_TYPES:
            return "source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            return None
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return None
        return "source: Input tag does not match any of the expected tags: 'base64', 'url', 'file'"
    if kind == "tool_use" and not (
        isinstance(block.get("id"), str) and isinstance(block.get("name"), str) and isinstance(block.get("input"), dict)
    ):
        return "id, name and input are required"
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        return "tool_use_id: Field required"
    return None


def _bad_text(block: Any) -> bool:
    return not isinstance(block, dict) or block.get("type") != "text" or not block.get("text")


def _tool_use_ids(message: Any) -> set[str]:
    content = message.get("content") if isinstance(message, dict) else None
    return {b["id"] for b in content or [] if isinstance(b, dict) and b.get("type") == "tool_use"}


@pytest.fixture
def anthropic_fake() -> Iterator[AnthropicFake]:
    """A running fake accepting ``sk-ant-test``; import into a conftest to share it."""
    with AnthropicFake(api_key="sk-ant-test") as fake:
        yield fake
