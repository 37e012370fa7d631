"""What one Lambda invocation costs in AWS terms: requests by service and operation, DynamoDB units.

``Meter`` hooks the botocore clients ``chalicelib.aws`` makes: it counts every request, and
for DynamoDB the write and read units from item sizes (kept per item, so an update is sized
by its old and new image) and the index writes each change causes. ``invocation`` brackets
one handler call with its wall time.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Tally = dict[str, float]


# DynamoDB capacity ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Index:
    keys: tuple[str, ...]
    projected: frozenset[str] | None  # None: every attribute


@dataclass(frozen=True)
class TableShape:
    keys: tuple[str, ...]
    indexes: tuple[Index, ...]

    @classmethod
    def of(cls, table: dict[str, Any]) -> TableShape:
        keys = tuple(k["AttributeName"] for k in table["KeySchema"])
        indexes = []
        for index in table.get("GlobalSecondaryIndexes", []):
            own = tuple(k["AttributeName"] for k in index["KeySchema"])
            projection = index["Projection"]
            extra = projection.get("NonKeyAttributes", [])
            indexes.append(
                Index(own, None if projection["ProjectionType"] == "ALL" else frozenset((*keys, *own, *extra)))
            )
        return cls(keys, tuple(indexes))


def item_bytes(item: dict[str, Any] | None, only: frozenset[str] | None = None) -> int:
    """DynamoDB's item size: names plus values (a number is one byte per two digits, plus one)."""
    size = 0
    for name, value in (item or {}).items():
        if only is None or name in only:
            (kind, inner), *_ = value.items()
            digits = len(str(inner).lstrip("-").replace(".", "").strip("0") or "0")
            sizes = {"S": len(str(inner).encode()), "N": -(-digits // 2) + 1, "BOOL": 1, "NULL": 1}
            size += len(name.encode()) + sizes.get(kind, len(json.dumps(inner)))
    return size


def index_writes(index: Index, old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
    """Writes a table write causes in one global secondary index."""
    was = old is not None and all(k in old for k in index.keys)
    now = new is not None and all(k in new for k in index.keys)
    if old is None or new is None or not (was and now):
        return int(was or now)
    if any(old[k] != new[k] for k in index.keys):
        return 2
    watched = index.projected if index.projected is not None else set(old) | set(new)
    return int(any(old.get(a) != new.get(a) for a in watched))


# the meter -------------------------------------------------------------------------------------------
class Meter:
    """Per phase: AWS requests, DynamoDB units, invocations, handler ms, log and response bytes."""

    def __init__(self, tables: dict[str, TableShape]) -> None:
        self.phase = "setup"
        self.tallies: dict[str, Tally] = defaultdict(lambda: defaultdict(float))
        self._tables = tables
        self._items: dict[str, dict[str, Any]] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build", self._keep_params)
        client.meta.events.register("before-call", self._count)
        client.meta.events.register("after-call", self._after)

    def add(self, name: str, amount: float = 1.0) -> None:
        self.tallies[self.phase][name] += amount

    def take(self) -> dict[str, Tally]:
        taken, self.tallies = self.tallies, defaultdict(lambda: defaultdict(float))
        return taken

    @contextmanager
    def invocation(self, phase: str) -> Iterator[None]:
        """One Lambda invocation of ``phase``: counted, with its wall time."""
        outer, self.phase = self.phase, phase
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add("invocations")
            self.add("handler_ms", (time.perf_counter() - started) * 1000)
            self.phase = outer

    def _keep_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = params

    def _count(self, model: Any, **_: Any) -> None:
        self.add(f"{model.service_model.service_name}.{model.name}")

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if model.service_model.service_name == "dynamodb":
            self._capacity(model.name, context.get("bench_params", {}), parsed)

    def _capacity(self, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        shape = self._tables.get(params.get("TableName", ""))
        if shape is None or operation not in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
            self.add(f"unmodelled {operation}")
            return
        source = params["Item"] if operation == "PutItem" else params["Key"]
        slot = params["TableName"] + json.dumps({k: source[k] for k in shape.keys}, sort_keys=True)
        old = self._items.get(slot)
        new: dict[str, Any] | None = old  # a refused condition, or an update that returns nothing
        if operation == "GetItem":
            new = parsed.get("Item")
            units = max(1, -(-item_bytes(new) // 4096)) * (1.0 if params.get("ConsistentRead") else 0.5)
            self.add("dynamodb_rru", units)
        else:
            if "Error" not in parsed:
                new = {"PutItem": params.get("Item"), "DeleteItem": None}.get(operation, parsed.get("Attributes", old))
            self.add("dynamodb_wru", max(1, -(-max(item_bytes(old), item_bytes(new)) // 1024)))
            for index in shape.indexes:
                size = max(item_bytes(old, index.projected), item_bytes(new, index.projected))
                self.add("dynamodb_wru", index_writes(index, old, new) * max(1, -(-size // 1024)))
        if new is None:
            self._items.pop(slot, None)
        else:
            self._items[slot] = new
