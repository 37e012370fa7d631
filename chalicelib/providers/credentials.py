"""Provider API keys: where they come from, and the order to try them in.

Keys come from one Secrets Manager secret (``ASYNCGATE_PROVIDER_KEYS_SECRET``: a JSON
map of provider name → key or list of keys), read once per container and cached, and
otherwise from the provider's own environment variables (a comma-separated value gives
several keys). Several keys rotate: each call starts at the next key, and a key that
was refused or throttled moves to the back. Keys are never logged or put in errors.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.errors import ProviderError

log = logging.getLogger(__name__)

SecretLoader = Callable[[], str]


class KeyRing:
    def __init__(self, environ: Mapping[str, str], load_secret: SecretLoader | None = None) -> None:
        self._environ = environ
        self._load_secret = load_secret
        self._secret: dict[str, tuple[str, ...]] | None = None
        self._order: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def keys(self, provider: str, variables: tuple[str, ...]) -> tuple[str, ...]:
        """The provider's keys, in the order this call should try them (rotated per call)."""
        with self._lock:
            order = self._order.get(provider)
            if order is None:
                order = list(self._configured(provider, variables))
                self._order[provider] = order
            if len(order) > 1:
                order.append(order.pop(0))
                return (order[-1], *order[:-1])
            return tuple(order)

    def demote(self, provider: str, key: str) -> None:
        """A key was refused (401/403) or throttled (429): later calls try it last."""
        with self._lock:
            order = self._order.get(provider, [])
            if key in order:
                order.remove(key)
                order.append(key)

    def _configured(self, provider: str, variables: tuple[str, ...]) -> tuple[str, ...]:
        from_secret = self._secret_keys().get(provider)
        if from_secret:
            return from_secret
        for name in variables:
            keys = _split(self._environ.get(name, ""))
            if keys:
                return keys
        return ()

    def _secret_keys(self) -> dict[str, tuple[str, ...]]:
        if self._load_secret is None:
            return {}
        if self._secret is None:
            try:
                self._secret = parse_secret(self._load_secret())
            except ProviderError:
                raise
            except Exception:
                log.exception("the provider keys secret could not be read")
                raise ProviderError(
                    "provider keys are unavailable", status=503, code="provider_keys_unavailable"
                ) from None
        return self._secret


def parse_secret(text: str) -> dict[str, tuple[str, ...]]:
    """``{"openai": "sk-…", "anthropic": ["k1", "k2"]}`` → keys per provider."""
    try:
        raw: Any = json.loads(text)
    except ValueError:
        raise ProviderError("the provider keys secret is not JSON", status=500, code="provider_keys_invalid") from None
    if not isinstance(raw, dict):
        raise ProviderError("the provider keys secret is not a JSON object", status=500, code="provider_keys_invalid")
    keys: dict[str, tuple[str, ...]] = {}
    for provider, value in raw.items():
        values = value if isinstance(value, list) else [value]
        found = tuple(v.strip() for v in values if isinstance(v, str) and v.strip())
        if found:
            keys[str(provider).lower()] = found
    return keys


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
