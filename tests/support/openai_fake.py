"""A fake OpenAI API: a real HTTP server on 127.0.0.1 answering in OpenAI's wire format.

Serves ``/v1/chat/completions``, ``/v1/completions``, ``/v1/responses``, ``/v1/embeddings``,
``/v1/audio/speech`` (``audio/mpeg`` bytes) and ``/v1/images/generations`` with bodies shaped
as OpenAI's API reference documents them, echoing the request's model. It records every
request, checks ``Authorization: Bearer <api_key>`` (401 ``invalid_api_key`` otherwise) and
can be scripted, per path, to answer an error, a raw (non-JSON) body or to stall.

    with OpenAIFake(api_key="sk-test") as fake:
        environ = fake.environ()              # OPENAI_BASE_URL / OPENAI_API_KEY
        fake.script_error("/chat/completions", 429, headers={"retry-after": "2"}, times=1)
        ...
        fake.requests_to("/chat/completions")[0].json
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest

PREFIX = "/v1"
SPEECH_AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + bytes(range(64))
PNG_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
AUDIO_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav"}
Json = dict[str, Any]
Reply = tuple[int, dict[str, str], bytes]  # status, headers, body
NO_KEY_HINT = "You need to provide your API key in an Authorization header using Bearer auth."
KEYS_HINT = "You can find your API key at https://platform.openai.com/account/api-keys."


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> Json:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


DEFAULT_ERRORS: dict[int, Json] = {
    400: error_body("Invalid request.", "invalid_request_error"),
    404: error_body("The model `gpt-nope` does not exist.", "invalid_request_error", code="model_not_found"),
    408: error_body("Request timed out.", "timeout_error"),
    409: error_body("Conflict.", "invalid_request_error"),
    429: error_body("Rate limit reached for requests.", "requests", code="rate_limit_exceeded"),
    500: error_body("The server had an error while processing your request. Sorry about that!", "server_error"),
    503: error_body("The engine is currently overloaded, please try again later.", "server_error"),
}


def masked(key: str) -> str:
    """A key as OpenAI's 401 message shows it: a short prefix, stars, the last four characters."""
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else "*" * len(key)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    json: Any  # the parsed JSON body, or None
    client_port: int


@dataclass
class _Rule:
    path: str
    status: int
    content: bytes
    headers: dict[str, str]
    delay_s: float
    times: int | None


class OpenAIFake:
    """Start with ``with`` (or ``start()``/``stop()``); ``api_key=None`` accepts any caller.

    The key is checked before any scripted answer, as OpenAI authenticates before anything else.
    """

    def __init__(self, api_key: str | None = "sk-test") -> None:
        self.api_key = api_key
        self._records: list[RecordedRequest] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> OpenAIFake:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="openai-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIFake:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the fake first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def environ(self) -> dict[str, str]:
        """The variables that point the gateway's OpenAI provider at this fake."""
        return {"OPENAI_BASE_URL": self.base_url, **({"OPENAI_API_KEY": self.api_key} if self.api_key else {})}

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        full = _full_path(path)
        return [r for r in self.requests if r.path == full]

    def reset(self) -> None:
        """Forget recorded requests and scripted answers."""
        with self._lock:
            self._records.clear()
            self._rules.clear()

    # scripting (rules are used first-in first-out; ``times=None`` means for ever) -------
    def script_error(
        self,
        path: str,
        status: int,
        body: Json | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with an OpenAI error body (a default one for the status if none)."""
        payload = body if body is not None else DEFAULT_ERRORS.get(status, error_body("Error.", "api_error"))
        self.script_raw(path, status, json.dumps(payload).encode(), "application/json", headers, times)

    def script_raw(
        self,
        path: str,
        status: int,
        content: bytes,
        content_type: str = "text/html; charset=utf-8",
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer exactly these bytes (e.g. a proxy's HTML page instead of JSON)."""
        merged = {"Content-Type": content_type, **(headers or {})}
        self._add(_Rule(_full_path(path), status, content, merged, 0.0, times))

    def script_delay(self, path: str, seconds: float, times: int | None = None) -> None:
        """Stall ``seconds`` before the normal answer (longer than a client's read timeout)."""
        self._add(_Rule(_full_path(path), 0, b"", {}, seconds, times))

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _take_rule(self, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.path == path and rule.times != 0:
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._records.append(request)

    def _answer(self, request: RecordedRequest) -> Reply:
        """The status, headers and body for one recorded request."""
        auth = request.headers.get("authorization")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return _json(401, _auth_error(auth))
        rule = self._take_rule(request.path)
        if rule is not None and rule.delay_s > 0:
            self._stopping.wait(rule.delay_s)
        elif rule is not None:
            return rule.status, dict(rule.headers), rule.content
        route = ROUTES.get(request.path.removeprefix(PREFIX)) if request.path.startswith(PREFIX + "/") else None
        if request.method != "POST" or route is None:
            message = f"Invalid URL ({request.method} {request.path})"
            return _json(404, error_body(message, "invalid_request_error"))
        if not isinstance(request.json, dict):
            message = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"  # noqa: E501
            return _json(400, error_body(message, "invalid_request_error"))
        if not isinstance(request.json.get("model"), str):
            return _json(400, error_body("you must provide a model parameter", "invalid_request_error"))
        return route(request.json)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: OpenAIFake) -> None:
        super().__init__(address, handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (read timeout) is expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds an idle keep-alive connection is kept

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        assert isinstance(self.server, _Server)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        parsed: Any = None
        if headers.get("content-type", "").startswith("application/json"):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        request = RecordedRequest(self.command, self.path, headers, raw, parsed, int(self.client_address[1]))
        self.server.fake._record(request)
        status, reply_headers, content = self.server.fake._answer(request)
        try:
            self.send_response(status)
            reply_headers.setdefault("x-request-id", "req_" + hashlib.sha1(raw).hexdigest()[:24])
            reply_headers.setdefault("openai-processing-ms", "12")
            for name, value in reply_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


# OpenAI-shaped replies ------------------------------------------------------------------
def _json(status: int, body: Json) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _auth_error(auth: str | None) -> Json:
    """OpenAI's 401 bodies: no key at all, or a wrong one (shown masked, never whole)."""
    if not auth or not auth.startswith("Bearer "):
        return error_body("You didn't provide an API key. " + NO_KEY_HINT, "invalid_request_error")
    shown = masked(auth.removeprefix("Bearer "))
    return error_body(
        f"Incorrect API key provided: {shown}. {KEYS_HINT}", "invalid_request_error", code="invalid_api_key"
    )


def _tokens(value: Any) -> int:
    return max(1, len(json.dumps(value).split()))


def _text(value: Any) -> str:
    """The last text in a prompt, input or messages array: what the fake echoes."""
    if isinstance(value, list) and value:
        return _text(value[-1])
    if isinstance(value, dict):
        return _text(value.get("content", value.get("text", "")))
    return value if isinstance(value, str) else ""


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _reply(body: Json, field: str) -> tuple[str, int, int, int]:
    """The echoed text, prompt tokens, output tokens and a creation time for ``body[field]``."""
    text = _text(body.get(field))
    return text, _tokens(body.get(field)), _tokens(text), int(time.time())


def _chat(body: Json) -> Reply:
    text, used, made, now = _reply(body, "messages")
    message: Json = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    usage: Json = {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made}
    usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
    usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
    head = {"id": "chatcmpl-fake0001", "object": "chat.completion", "created": now, "model": body["model"]}
    return _json(200, {**head, "choices": [choice], "usage": usage, "system_fingerprint": "fp_fake"})


def _completion(body: Json) -> Reply:
    text, used, made, now = _reply(body, "prompt")
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
    usage = {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made}
    head = {"id": "cmpl-fake0001", "object": "text_completion", "created": now, "model": body["model"]}
    return _json(200, {**head, "choices": [choice], "usage": usage})


def _responses(body: Json) -> Reply:
    text, used, made, now = _reply(body, "input")
    content = [{"type": "output_text", "text": text, "annotations": []}]
    output = {"type": "message", "id": "msg_fake0001", "status": "completed", "role": "assistant", "content": content}
    usage: Json = {"input_tokens": used, "output_tokens": made, "total_tokens": used + made}
    usage |= {"input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    head = {"id": "resp_fake0001", "object": "response", "created_at": now, "status": "completed"}
    head |= {"error": None, "incomplete_details": None, "model": body["model"]}
    return _json(200, {**head, "output": [output], "usage": usage})


def embedding_vector(text: str, dimensions: int = 8) -> list[float]:
    """The deterministic vector the fake answers for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255 - 0.5, 6) for i in range(dimensions)]


def _embeddings(body: Json) -> Reply:
    inputs = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
    dimensions = _int(body.get("dimensions"), 8)
    data = []
    for index, item in enumerate(inputs):
        vector: Any = embedding_vector(str(item), dimensions)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    usage = {"prompt_tokens": _tokens(inputs), "total_tokens": _tokens(inputs)}
    return _json(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})


def _speech(body: Json) -> Reply:
    return 200, {"Content-Type": AUDIO_TYPES.get(str(body.get("response_format", "mp3")), "audio/pcm")}, SPEECH_AUDIO


def _images(body: Json) -> Reply:
    count = _int(body.get("n"), 1)
    if body.get("response_format") == "url":
        data = [{"url": f"https://images.example.invalid/img-{i}.png"} for i in range(count)]
    else:
        data = [{"b64_json": base64.b64encode(PNG_PIXEL).decode()} for _ in range(count)]
    usage = {"input_tokens": _tokens(body.get("prompt")), "output_tokens": 0, "total_tokens": 0}
    return _json(200, {"created": int(time.time()), "data": data, "usage": usage})


ROUTES: dict[str, Callable[[Json], Reply]] = {
    "/chat/completions": _chat,
    "/completions": _completion,
    "/responses": _responses,
    "/embeddings": _embeddings,
    "/audio/speech": _speech,
    "/images/generations": _images,
}


def _full_path(path: str) -> str:
    """Paths may be given below ``/v1`` (``/chat/completions``) or in full."""
    return path if path.startswith(PREFIX + "/") else PREFIX + path


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def openai_fake() -> Iterator[OpenAIFake]:
    """A running fake accepting ``sk-test``; import into a conftest to share it."""
    with OpenAIFake(api_key="sk-test") as fake:
        yield fake
