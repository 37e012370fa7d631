"""The local stack: moto as the embedded AWS, the HTTP API, and the SQS worker, in one process.

``python -m chalicelib.local`` (what ``make run`` starts) points boto3 at an in-process
moto server, creates the table, queues and bucket, serves the Chalice app on
127.0.0.1:$PORT (8080) the way ``chalice local`` does, and runs pollers that feed the
worker exactly as Lambda's SQS event source would. Unknown paths answer 404 with the
contract's error body, as the deployed API's gateway responses do. Ctrl-C stops it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import FrameType
from typing import Any

from chalice.cli.factory import CLIFactory
from chalice.local import ChaliceRequestHandler, ForbiddenError, LocalDevServer, LocalGatewayException

from chalicelib import aws, infra
from chalicelib.clock import SystemClock
from chalicelib.config import Settings
from chalicelib.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from chalicelib.key_admin import KeyAdmin
from chalicelib.key_store import DynamoKeyStore
from chalicelib.local_aws import EmbeddedAws
from chalicelib.sqs_poller import SqsPoller

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent.parent
STATE_FILE = PROJECT_DIR / ".asyncgate-local.json"  # where the admin CLI finds a running local stack
STAGE = "local"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class GatewayRequestHandler(ChaliceRequestHandler):
    """``chalice local``'s handler, with API Gateway's missing-route 403 answered as a §4 404
    and methods no route serves (``TRACE``, ``QUERY``…) as a §4 405, not an HTML page."""

    def _send_error_response(self, error: LocalGatewayException) -> None:
        if not isinstance(error, ForbiddenError):
            super()._send_error_response(error)
            return
        self._send_gateway_error(NotFound("no route matches this path", code="route_not_found"))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """``http.server``'s own refusals (unknown method, bad request line, huge headers) as §4 bodies."""
        if self.command is None or self.request_version == "HTTP/0.9":
            super().send_error(code, message, explain)
            return
        self.close_connection = True
        if code == HTTPStatus.NOT_IMPLEMENTED:
            self._send_gateway_error(MethodNotAllowed(f"method {self.command} is not allowed"))
            return
        status = code if 400 <= code < 500 else HTTPStatus.BAD_REQUEST
        self._send_gateway_error(
            GatewayError(
                message or "bad request", status=status, error_type="invalid_request_error", code="bad_request"
            )
        )

    def _send_gateway_error(self, error: GatewayError) -> None:
        body = json.dumps(error.to_body(str(uuid.uuid4())))
        self._send_http_response(error.status, {"Content-Type": "application/json"}, body)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


@dataclass(frozen=True)
class LocalOptions:
    """How to run: which roles (``all``, ``api`` or ``worker``), against which AWS endpoint
    (an embedded moto server unless one is given), and optional chaos for soak runs."""

    port: int = 8080
    host: str = "127.0.0.1"
    role: str = "all"
    aws_endpoint: str | None = None
    pollers: int = 2
    duplicate_rate: float = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LocalOptions:
        role = environ.get("ASYNCGATE_LOCAL_ROLE", "all").strip() or "all"
        if role not in ("all", "api", "worker"):
            raise SystemExit(f"ASYNCGATE_LOCAL_ROLE must be all, api or worker, not {role}")
        return cls(
            port=int(environ.get("PORT", "8080")),
            role=role,
            aws_endpoint=environ.get("ASYNCGATE_LOCAL_AWS_ENDPOINT") or None,
            pollers=int(environ.get("ASYNCGATE_LOCAL_POLLERS", "2")),
            duplicate_rate=float(environ.get("ASYNCGATE_LOCAL_DUPLICATES", "0")),
        )


class LocalStack:
    def __init__(self, options: LocalOptions) -> None:
        self.options = options
        self.port = options.port
        self._aws = EmbeddedAws(options.host) if options.aws_endpoint is None else None
        self._threads: list[threading.Thread] = []
        self._pollers: list[SqsPoller] = []
        self._server: LocalDevServer | None = None
        self._state: str | None = None
        self.aws_endpoint: str | None = None

    def start(self) -> None:
        endpoint = self._aws.start() if self._aws is not None else str(self.options.aws_endpoint)
        self.aws_endpoint = endpoint
        os.environ.update(FAKE_AWS)
        os.environ["AWS_ENDPOINT_URL"] = str(endpoint)
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        factory = CLIFactory(str(PROJECT_DIR), environ=os.environ)
        config = factory.create_config_obj(chalice_stage_name=STAGE)
        for name, value in config.environment_variables.items():
            os.environ.setdefault(name, value)
        aws.reset()
        settings = Settings.from_env()
        urls = infra.ensure(settings, aws.client("dynamodb"), aws.client("sqs"), aws.client("s3"))
        self._seed_keys(os.environ.get("ASYNCGATE_VIRTUAL_KEYS", ""))
        app = factory.load_chalice_app()
        if self.options.role in ("all", "worker"):
            self._start_workers(app, urls, settings, config.scope(STAGE, "worker").lambda_timeout)
        if self.options.role in ("all", "api"):
            server = LocalDevServer(app, config, self.options.host, self.port, handler_cls=GatewayRequestHandler)
            self._server = server
            self.port = server.server.server_address[1]
            self._spawn(server.server.serve_forever)
            self._state = json.dumps({"api_url": self.api_url, "aws_endpoint": endpoint}) + "\n"
            STATE_FILE.write_text(self._state)

    @property
    def api_url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def _seed_keys(self, values: str) -> None:
        """Virtual keys from ``ASYNCGATE_VIRTUAL_KEYS`` (comma-separated values), so scoping can be tried at once."""
        admin = KeyAdmin(DynamoKeyStore(aws.client("dynamodb"), Settings.from_env().keys_table), SystemClock())
        for value in filter(None, (v.strip() for v in values.split(","))):
            try:
                created = admin.create("seeded", value=value)
                log.info("seeded virtual key %s", created.key.id)
            except InvalidRequest:
                pass  # seeded by an earlier start against the same AWS endpoint

    def _start_workers(self, app: Any, urls: dict[str, str], settings: Settings, timeout: int | None) -> None:
        """Pollers feed the worker and the dead-letter consumer, as Lambda's event sources would.

        A received message stays hidden for one lease, so a worker that dies before claiming
        its batch delays those jobs by a lease, not by the queue's whole visibility timeout.
        """
        sqs = aws.client("sqs")
        for _ in range(self.options.pollers):
            worker = SqsPoller(
                sqs,
                urls["queue_url"],
                app.handler_map["worker"],
                "worker",
                timeout or infra.WORKER_TIMEOUT_S,
                visibility_s=settings.lease_s,
                duplicate_rate=self.options.duplicate_rate,
            )
            self._poll(worker)
        self._poll(SqsPoller(sqs, urls["dlq_url"], app.handler_map["dead_letters"], "dead_letters", 60))

    def stop(self) -> None:
        self._forget_state()
        for poller in self._pollers:
            poller.stop()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._aws is not None:
            self._aws.stop()

    def _forget_state(self) -> None:
        """Remove the state file if it still names this stack (another may have started since)."""
        with contextlib.suppress(OSError):
            if self._state is not None and STATE_FILE.read_text() == self._state:
                STATE_FILE.unlink()

    def _poll(self, poller: SqsPoller) -> None:
        self._pollers.append(poller)
        self._spawn(poller.run)

    def _spawn(self, target: Any) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("werkzeug", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stack = LocalStack(LocalOptions.from_env(os.environ))
    stack.start()
    if stack.options.role == "worker":
        print("asyncgate local worker running", flush=True)
    else:
        base = stack.api_url
        print(f"asyncgate AWS (moto) endpoint {stack.aws_endpoint}", flush=True)
        print(f"asyncgate local stack listening on {base}", flush=True)
        print(
            f"try: curl -s -X POST {base}/v1/async/chat/completions -H 'Content-Type: application/json' "
            """-d '{"model":"mock/echo","messages":[{"role":"user","content":"hello"}]}'""",
            flush=True,
        )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stopping.wait()
    print("stopping asyncgate local stack", flush=True)
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
