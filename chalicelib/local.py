"""The local stack: moto as the embedded AWS, the HTTP API, and the SQS worker, in one process.

``python -m chalicelib.local`` (what ``make run`` starts) points boto3 at an in-process
moto server, creates the table, queues and bucket, serves the Chalice app on
127.0.0.1:$PORT (8080) the way ``chalice local`` does, and runs pollers that feed the
worker exactly as Lambda's SQS event source would. Unknown paths answer 404 with the
contract's error body, as the deployed API's gateway responses do. Ctrl-C stops it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from chalice.cli.factory import CLIFactory
from chalice.local import ChaliceRequestHandler, ForbiddenError, LocalDevServer, LocalGatewayException
from moto.server import ThreadedMotoServer

from chalicelib import aws, infra
from chalicelib.config import Settings
from chalicelib.errors import NotFound
from chalicelib.sqs_poller import SqsPoller

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent.parent
STAGE = "local"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class GatewayRequestHandler(ChaliceRequestHandler):
    """``chalice local``'s handler, with API Gateway's missing-route 403 answered as a §4 404."""

    def _send_error_response(self, error: LocalGatewayException) -> None:
        if not isinstance(error, ForbiddenError):
            super()._send_error_response(error)
            return
        event_id = str(uuid.uuid4())
        body = json.dumps(NotFound("no route matches this path", code="route_not_found").to_body(event_id))
        self._send_http_response(404, {"Content-Type": "application/json"}, body)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


class LocalStack:
    def __init__(self, port: int, host: str = "127.0.0.1", pollers: int = 2) -> None:
        self.host = host
        self.port = port
        self._pollers_wanted = pollers
        self._moto = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
        self._threads: list[threading.Thread] = []
        self._pollers: list[SqsPoller] = []
        self._server: LocalDevServer | None = None

    def start(self) -> None:
        self._moto.start()
        moto_host, moto_port = self._moto.get_host_and_port()
        os.environ.update(FAKE_AWS)
        os.environ["AWS_ENDPOINT_URL"] = f"http://{moto_host}:{moto_port}"
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        factory = CLIFactory(str(PROJECT_DIR), environ=os.environ)
        config = factory.create_config_obj(chalice_stage_name=STAGE)
        for name, value in config.environment_variables.items():
            os.environ.setdefault(name, value)
        aws.reset()
        settings = Settings.from_env()
        urls = infra.ensure(settings, aws.client("dynamodb"), aws.client("sqs"), aws.client("s3"))
        app = factory.load_chalice_app()
        worker_timeout = config.scope(STAGE, "worker").lambda_timeout or infra.WORKER_TIMEOUT_S
        sqs = aws.client("sqs")
        for _ in range(self._pollers_wanted):
            self._poll(SqsPoller(sqs, urls["queue_url"], app.handler_map["worker"], "worker", worker_timeout))
        self._poll(SqsPoller(sqs, urls["dlq_url"], app.handler_map["dead_letters"], "dead_letters", 60))
        self._server = LocalDevServer(app, config, self.host, self.port, handler_cls=GatewayRequestHandler)
        self.port = self._server.server.server_address[1]
        self._spawn(self._server.server.serve_forever)

    def stop(self) -> None:
        for poller in self._pollers:
            poller.stop()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        self._moto.stop()

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
    port = int(os.environ.get("PORT", "8080"))
    stack = LocalStack(port)
    stack.start()
    base = f"http://{stack.host}:{stack.port}"
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
