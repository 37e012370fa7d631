"""The jobs table's item format: attribute names and types, and the conversion to and from ``Job``.

JSON blobs are strings, times are epoch milliseconds (numbers), ``ttl`` is epoch seconds.
Numbers come back as ``int``: the low-level client gives them as text, never ``Decimal``.
Only the store modules import this.
"""

from __future__ import annotations

from typing import Any

from chalicelib.contract import RequestType
from chalicelib.jobs import Job, JobStatus

TABLE_KEY = "id"
CALLER_INDEX = "by_caller"
IDEMPOTENCY_PREFIX = "idem#"

_STRINGS = {
    "caller": "caller",
    "request_json": "request",
    "request_ref": "request_ref",
    "lease_owner": "lease_owner",
    "result_json": "result",
    "result_ref": "result_ref",
    "error_json": "error",
}
_NUMBERS = {
    "lease_until_ms": "lease_until",
    "completed_at_ms": "completed_at",
    "expires_at_ms": "expires_at",
    "status_code": "status_code",
    "result_size": "result_size",
    "route_from": "route_from",
}


def key(item_id: str) -> dict[str, Any]:
    return {TABLE_KEY: {"S": item_id}}


def number(value: int) -> dict[str, str]:
    return {"N": str(value)}


def text(value: str) -> dict[str, str]:
    return {"S": value}


def to_item(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": text(job.id),
        "request_type": text(job.request_type.value),
        "status": text(job.status.value),
        "created_at": number(job.created_at_ms),
        "result_ttl_s": number(job.result_ttl_s),
        "attempts": number(job.attempts),
    }
    for field, attr in _STRINGS.items():
        value = getattr(job, field)
        if value is not None:
            item[attr] = text(value)
    for field, attr in _NUMBERS.items():
        value = getattr(job, field)
        if value is not None and not (field == "route_from" and value == 0):
            item[attr] = number(value)
    if job.cancel_requested:
        item["cancel_requested"] = {"BOOL": True}
    return item


def from_item(item: dict[str, Any]) -> Job:
    optional: dict[str, Any] = {field: item[attr]["S"] for field, attr in _STRINGS.items() if attr in item}
    optional.update({field: int(item[attr]["N"]) for field, attr in _NUMBERS.items() if attr in item})
    return Job(
        id=item["id"]["S"],
        request_type=RequestType(item["request_type"]["S"]),
        status=JobStatus(item["status"]["S"]),
        created_at_ms=int(item["created_at"]["N"]),
        result_ttl_s=int(item["result_ttl_s"]["N"]),
        attempts=int(item.get("attempts", {}).get("N", "0")),
        cancel_requested=bool(item.get("cancel_requested", {}).get("BOOL", False)),
        **optional,
    )


def ttl_of(expires_at_ms: int) -> int:
    """DynamoDB's TTL (epoch seconds, rounded up) for an expiry in epoch milliseconds."""
    return -(-expires_at_ms // 1000)
