"""Lazily built, cached boto3 clients (one per service per container).

Clients are created on first use, after the environment (region, credentials,
``AWS_ENDPOINT_URL`` for moto) is in place, and shared across threads (boto3
clients are thread-safe). One boto3 session is kept for the process so service
models are parsed once. ``reset()`` drops the clients so tests can rebuild under a new mock.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

# Worst case of one call, every try timing out: 3 × (2 + 5) s plus at most 1 + 2 s of backoff,
# inside the API handler's 29 s (API Gateway's limit). AWS answers in milliseconds when it answers.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=50,
)

_SERVICE_CONFIG = {"s3": Config(signature_version="s3v4")}

_lock = threading.Lock()
_clients: dict[str, Any] = {}
_session: boto3.session.Session | None = None


def client(service: str) -> Any:
    """The shared client for ``service`` (``dynamodb``, ``sqs``, ``s3``)."""
    global _session
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        if service not in _clients:
            if _session is None:
                _session = boto3.session.Session()
            config = _CLIENT_CONFIG.merge(_SERVICE_CONFIG[service]) if service in _SERVICE_CONFIG else _CLIENT_CONFIG
            _clients[service] = _session.client(service, config=config)
        return _clients[service]


def reset() -> None:
    """Forget the clients; the session and its parsed service models are kept."""
    with _lock:
        _clients.clear()
