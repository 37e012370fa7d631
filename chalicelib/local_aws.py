"""The embedded AWS of the local stack: a moto server on loopback, faithful where it matters.

moto serves concurrent requests on threads, but its DynamoDB backend checks a condition
and writes the item in two Python steps, so two racing conditional writes could both
succeed. Real DynamoDB never allows that, and asyncgate's exactly-once claim relies on
it, so DynamoDB requests are serialised here; every other service stays concurrent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerialDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, as atomic as the real service."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            with self._lock:
                return list(self._app(environ, start_response))
        return self._app(environ, start_response)


class QuietRequestHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: the local stack logs its own requests."""


class EmbeddedAws:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Start serving; returns the endpoint URL to give boto3 (``AWS_ENDPOINT_URL``)."""
        app = SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
        server = make_server(self._host, self._port, app, threaded=True, request_handler=QuietRequestHandler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="embedded-aws", daemon=True)
        self._thread.start()
        return f"http://{self._host}:{server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
