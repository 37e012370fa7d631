"""Managing virtual keys: create (the value is shown once), list, disable; and admin access.

Used by the admin routes (``/api/keys``) and the admin CLI alike. The admin token comes
from Secrets Manager in AWS (``ASYNCGATE_ADMIN_TOKEN_SECRET``) or from
``ASYNCGATE_ADMIN_TOKEN`` locally, and is compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.clock import Clock, now_ms, rfc3339
from chalicelib.errors import InvalidRequest, NotFound, Unauthorized
from chalicelib.keys import VirtualKey, key_hash, key_id_for, new_key_value

MAX_NAME = 200


class KeyStore(Protocol):
    def add(self, key: VirtualKey, hashed: str) -> bool: ...

    def get(self, key_id: str) -> tuple[VirtualKey, str] | None: ...

    def all(self) -> list[VirtualKey]: ...

    def disable(self, key_hash: str, now_ms: int) -> VirtualKey: ...


@dataclass(frozen=True)
class CreatedKey:
    key: VirtualKey
    value: str


class KeyAdmin:
    def __init__(self, store: KeyStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def create(self, name: Any, rate_limit_per_minute: Any = None, value: str | None = None) -> CreatedKey:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InvalidRequest(f"name must be a non-empty string of at most {MAX_NAME}", param="name")
        limit = rate_limit_per_minute
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise InvalidRequest("rate_limit_per_minute must be a positive integer", param="rate_limit_per_minute")
        value = value or new_key_value()
        hashed = key_hash(value)
        key = VirtualKey(key_id_for(hashed), name.strip(), now_ms(self._clock), None, limit)
        if not self._store.add(key, hashed):
            raise InvalidRequest("this key exists already", code="key_exists")
        return CreatedKey(key, value)

    def all(self) -> list[VirtualKey]:
        return self._store.all()

    def disable(self, key_id: str) -> VirtualKey:
        found = self._store.get(key_id)
        if found is None:
            raise NotFound("key not found", code="key_not_found")
        return self._store.disable(found[1], now_ms(self._clock))


def key_view(key: VirtualKey, value: str | None = None) -> dict[str, Any]:
    """A key as the admin API and CLI show it; the value only right after creation."""
    view: dict[str, Any] = {"id": key.id, "name": key.name, "created_at": rfc3339(key.created_at_ms)}
    view["disabled_at"] = rfc3339(key.disabled_at_ms) if key.disabled_at_ms is not None else None
    view["rate_limit_per_minute"] = key.rate_limit_per_minute
    if value is not None:
        view["key"] = value
    return view


class AdminToken:
    """Checks ``Authorization: Bearer <admin token>``; with no token configured, admin is closed."""

    def __init__(self, load: Callable[[], str | None]) -> None:
        self._load = load
        self._token: str | None = None
        self._loaded = False

    def require(self, headers: Mapping[str, str]) -> None:
        if not self._loaded:
            self._token, self._loaded = self._load(), True
        given = headers.get("authorization", "")
        presented = given[7:].strip() if given[:7].lower() == "bearer " else ""
        if not self._token or not presented or not hmac.compare_digest(presented.encode(), self._token.encode()):
            raise Unauthorized("admin access requires a valid admin token", code="admin_token_required")
