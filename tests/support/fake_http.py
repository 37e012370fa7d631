"""A real HTTP server on 127.0.0.1 for provider fakes: lifecycle, recording and scripting.

Each provider fake subclasses ``FakeHttpServer`` and implements ``respond`` (the
provider's normal answers) and, if it checks credentials, ``authorize``. Tests script
per-path errors, raw bodies or stalls, and read back every request the gateway sent.

    with SomeFake() as fake:
        fake.script_json("/v1/messages", 429, {...}, headers={"retry-after": "2"}, times=1)
        ...
        fake.requests_to("/v1/messages")[0].json
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]
Reply = tuple[int, dict[str, str], bytes]  # status, headers, body


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: Mapping[str, list[str]]
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


class FakeHttpServer:
    """Start with ``with`` (or ``start()``/``stop()``). Rules are used first in, first out."""

    def __init__(self) -> None:
        self._records: list[RecordedRequest] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # what a provider fake implements -------------------------------------------------
    def authorize(self, request: RecordedRequest) -> Reply | None:
        """An error reply if the request's credentials are wrong; checked before any rule."""
        return None

    def respond(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def full_path(self, path: str) -> str:
        """How a scripted path is completed (e.g. with a version prefix)."""
        return path

    # lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        name = type(self).__name__
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the fake first"
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # recorded traffic -----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        full = self.full_path(path)
        return [r for r in self.requests if r.path == full]

    def reset(self) -> None:
        """Forget recorded requests and scripted answers."""
        with self._lock:
            self._records.clear()
            self._rules.clear()

    # scripting (``times=None`` means for ever) ----------------------------------------
    def script_json(
        self,
        path: str,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        self.script_raw(path, status, json.dumps(body).encode(), "application/json", headers, times)

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
        self._add(_Rule(self.full_path(path), status, content, merged, 0.0, times))

    def script_delay(self, path: str, seconds: float, times: int | None = None) -> None:
        """Stall ``seconds`` before the normal answer (longer than a client's read timeout)."""
        self._add(_Rule(self.full_path(path), 0, b"", {}, seconds, times))

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

    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._records.append(request)
        refusal = self.authorize(request)
        if refusal is not None:
            return refusal
        rule = self._take_rule(request.path)
        if rule is not None and rule.delay_s > 0:
            self._stopping.wait(rule.delay_s)
        elif rule is not None:
            return rule.status, dict(rule.headers), rule.content
        return self.respond(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeHttpServer) -> None:
        super().__init__(address, handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (read timeout) is expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds an idle keep-alive connection is kept

    def do_GET(self) -> None:
        assert isinstance(self.server, _Server)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        parsed: Any = None
        if "json" in headers.get("content-type", ""):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        url = urlsplit(self.path)
        request = RecordedRequest(
            self.command, url.path, parse_qs(url.query), headers, raw, parsed, int(self.client_address[1])
        )
        status, reply_headers, content = self.server.fake._handle(request)
        try:
            self.send_response(status)
            for name, value in reply_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class FormPart:
    name: str
    filename: str | None
    content_type: str | None  # as sent, or None when the part had no Content-Type
    content: bytes


def form_parts(content_type: str, body: bytes) -> list[FormPart]:
    """The parts of a ``multipart/form-data`` body, bytes kept exactly as sent."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        return []
    parts = []
    for section in body.split(b"--" + boundary.encode())[1:]:
        if section.startswith(b"--"):
            break
        head, _, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = BytesParser(policy=policy.HTTP).parsebytes(head + b"\r\n\r\n", headersonly=True)
        name = headers.get_param("name", header="content-disposition")
        parts.append(
            FormPart(
                name=name if isinstance(name, str) else "",
                filename=headers.get_filename(),
                content_type=headers.get_content_type() if headers.get("content-type") else None,
                content=content.removesuffix(b"\r\n"),
            )
        )
    return parts
