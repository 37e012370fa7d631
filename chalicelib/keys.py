"""Virtual keys (contract §5): values, hashes, where callers present them, and who the caller is.

A value is ``sk-bf-`` and 43 URL-safe characters (256 random bits); only its SHA-256 is
stored, so the keys table cannot give a value back. A caller presents it in ``x-bf-vk``,
``Authorization: Bearer``, ``x-api-key`` or ``x-goog-api-key``; two different values in
one request are refused. Jobs are scoped to the key's id; keyless jobs to ``anonymous``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from chalicelib.errors import InvalidRequest, Unauthorized
from chalicelib.jobs import ANONYMOUS

PREFIX = "sk-bf-"
UNKNOWN_CALLER = "unknown"  # matches no job: an unknown key sees nothing, exactly like a wrong id


@dataclass(frozen=True)
class VirtualKey:
    id: str
    name: str
    created_at_ms: int
    disabled_at_ms: int | None = None
    rate_limit_per_minute: int | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at_ms is None


class KeyLookup(Protocol):
    def find(self, key_hash: str) -> VirtualKey | None: ...


def new_key_value() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def key_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def key_id_for(hashed: str) -> str:
    """A key's public id: derived from its hash, so it names the key without revealing it."""
    return "vk_" + hashlib.sha256(("id:" + hashed).encode()).hexdigest()[:20]


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The virtual key a request carries, from any of the contract's carriers."""
    found = set()
    direct = headers.get("x-bf-vk", "").strip()
    if direct:
        found.add(direct)
    bearer = headers.get("authorization", "").strip()
    if bearer[:7].lower() == "bearer " and bearer[7:].strip().startswith(PREFIX):
        found.add(bearer[7:].strip())
    for name in ("x-api-key", "x-goog-api-key"):
        value = headers.get(name, "").strip()
        if value.startswith(PREFIX):
            found.add(value)
    if len(found) > 1:
        raise InvalidRequest("the request carries two different virtual keys", code="conflicting_virtual_keys")
    return found.pop() if found else None


@dataclass(frozen=True)
class Caller:
    """Who is asking: the scope of their jobs, and their key (for rate limits) if any."""

    scope: str
    key: VirtualKey | None = None


class Callers:
    def __init__(self, lookup: KeyLookup, require_key: bool) -> None:
        self._lookup = lookup
        self._require_key = require_key

    def for_submit(self, value: str | None) -> Caller:
        """Submitting: an unknown or disabled key is a 400 (contract §5)."""
        caller = self._resolve(value)
        if caller.scope == UNKNOWN_CALLER:
            raise InvalidRequest("virtual key is not valid", code="invalid_virtual_key", param="x-bf-vk")
        return caller

    def for_reading(self, value: str | None) -> Caller:
        """Polling or cancelling: an unknown key simply sees no job (404, like a wrong id)."""
        return self._resolve(value)

    def for_listing(self, value: str | None) -> Caller:
        caller = self._resolve(value)
        if caller.scope == UNKNOWN_CALLER:
            raise Unauthorized("virtual key is not valid", code="invalid_virtual_key")
        return caller

    def _resolve(self, value: str | None) -> Caller:
        if value is None:
            if self._require_key:
                raise Unauthorized("a virtual key is required", code="virtual_key_required")
            return Caller(ANONYMOUS)
        key = self._lookup.find(key_hash(value)) if value.startswith(PREFIX) else None
        if key is None or not key.active:
            return Caller(UNKNOWN_CALLER)
        return Caller(key.id, key)
