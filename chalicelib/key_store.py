"""The keys table: virtual keys (by hash, and by id through an index) and rate-limit windows.

Key items are ``key#<sha256>``: the value itself is never stored. Rate-limit items are
``rate#<key id>#<minute>`` counters bumped with a conditional ``ADD``, so a limit holds
across every Lambda container, and they expire by TTL two minutes after their window.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.keys import VirtualKey

KEY_ID_INDEX = "by_key_id"


class DynamoKeyStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def add(self, key: VirtualKey, hashed: str) -> bool:
        """Store a new key; False if a key with that value exists already."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_to_item(key, hashed),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def find(self, key_hash: str) -> VirtualKey | None:
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": f"key#{key_hash}"}}).get("Item")
        return _from_item(item) if item else None

    def get(self, key_id: str) -> tuple[VirtualKey, str] | None:
        """A key and its hash, by id."""
        found = self._client.query(
            TableName=self._table,
            IndexName=KEY_ID_INDEX,
            KeyConditionExpression="key_id = :id",
            ExpressionAttributeValues={":id": {"S": key_id}},
        ).get("Items", [])
        if not found:
            return None
        return _from_item(found[0]), found[0]["pk"]["S"].removeprefix("key#")

    def all(self) -> list[VirtualKey]:
        keys: list[VirtualKey] = []
        pages = self._client.get_paginator("scan").paginate(
            TableName=self._table,
            FilterExpression="begins_with(pk, :key)",
            ExpressionAttributeValues={":key": {"S": "key#"}},
        )
        for page in pages:
            keys.extend(_from_item(item) for item in page.get("Items", []))
        return sorted(keys, key=lambda k: k.created_at_ms)

    def disable(self, key_hash: str, now_ms: int) -> VirtualKey:
        updated = self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": f"key#{key_hash}"}},
            UpdateExpression="SET disabled_at = if_not_exists(disabled_at, :now)",
            ExpressionAttributeValues={":now": {"N": str(now_ms)}},
            ReturnValues="ALL_NEW",
        )
        return _from_item(updated["Attributes"])

    def count_request(self, key_id: str, window_s: int, limit: int) -> bool:
        """Count one request in the key's minute window; False once the window is full."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"rate#{key_id}#{window_s}"}},
                UpdateExpression="ADD hits :one SET #ttl = :ttl",
                ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":ttl": {"N": str(window_s + 180)},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


class CachedKeys:
    """A short-lived, per-container cache of lookups by hash (misses are cached too)."""

    def __init__(self, store: DynamoKeyStore, ttl_s: float) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, VirtualKey | None]] = {}
        self._lock = threading.Lock()

    def find(self, key_hash: str) -> VirtualKey | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_hash)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        found = self._store.find(key_hash)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_hash] = (now, found)
        return found


def _to_item(key: VirtualKey, hashed: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": f"key#{hashed}"},
        "key_id": {"S": key.id},
        "name": {"S": key.name},
        "created_at": {"N": str(key.created_at_ms)},
    }
    if key.disabled_at_ms is not None:
        item["disabled_at"] = {"N": str(key.disabled_at_ms)}
    if key.rate_limit_per_minute is not None:
        item["rate_limit"] = {"N": str(key.rate_limit_per_minute)}
    return item


def _from_item(item: dict[str, Any]) -> VirtualKey:
    return VirtualKey(
        id=item["key_id"]["S"],
        name=item["name"]["S"],
        created_at_ms=int(item["created_at"]["N"]),
        disabled_at_ms=int(item["disabled_at"]["N"]) if "disabled_at" in item else None,
        rate_limit_per_minute=int(item["rate_limit"]["N"]) if "rate_limit" in item else None,
    )
