"""Listing a caller's jobs through the ``by_caller`` index, newest first, with an opaque cursor.

The index holds each job's caller (partition), creation time (sort) and the few
attributes a listing shows, so a page never reads results. Expired jobs are filtered
out at read time. The cursor is the last listed job's position, encoded; one made for
another caller only ever moves within the asking caller's own partition.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

from chalicelib.errors import InvalidRequest
from chalicelib.items import CALLER_INDEX, from_item, number, text
from chalicelib.jobs import Job
from chalicelib.ports import JobFilter, JobPage

INDEXED_ATTRIBUTES = ("status", "request_type", "completed_at", "expires_at", "status_code", "result_ttl_s")
MAX_ROUNDS = 10


def list_jobs(client: Any, table: str, where: JobFilter, limit: int, cursor: str | None, now_ms: int) -> JobPage:
    filters = ["(attribute_not_exists(expires_at) OR expires_at > :now)"]
    values: dict[str, Any] = {":caller": text(where.caller), ":now": number(now_ms)}
    if where.status is not None:
        filters.append("#s = :status")
        values[":status"] = text(where.status.value)
    if where.request_type is not None:
        filters.append("request_type = :type")
        values[":type"] = text(where.request_type.value)
    query: dict[str, Any] = {
        "TableName": table,
        "IndexName": CALLER_INDEX,
        "KeyConditionExpression": "caller = :caller",
        "FilterExpression": " AND ".join(filters),
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if where.status is not None:
        query["ExpressionAttributeNames"] = {"#s": "status"}
    start = _decode(cursor, where.caller) if cursor else None
    jobs: list[Job] = []
    more = False
    for _ in range(MAX_ROUNDS):
        if start is not None:
            query["ExclusiveStartKey"] = start
        page = client.query(**query)
        jobs.extend(from_item(item) for item in page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        more = start is not None
        if len(jobs) >= limit or not more:
            break
    if len(jobs) > limit:
        return JobPage(jobs[:limit], _encode(jobs[limit - 1].created_at_ms, jobs[limit - 1].id))
    if more and len(jobs) == limit:
        return JobPage(jobs, _encode(jobs[-1].created_at_ms, jobs[-1].id))
    if more and start is not None:
        # the rounds ran out before a page filled: continue from where the index stopped
        return JobPage(jobs, _encode(int(start["created_at"]["N"]), start["id"]["S"]))
    return JobPage(jobs, None)


def _encode(created_at_ms: int, job_id: str) -> str:
    raw = json.dumps([created_at_ms, job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_uuid(value: object) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _decode(cursor: str, caller: str) -> dict[str, Any]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if type(created_at) is not int or not 0 <= created_at < 2**53 or not _is_uuid(job_id):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise InvalidRequest("cursor is not valid", param="cursor", code="invalid_cursor") from None
    return {"id": text(job_id), "caller": text(caller), "created_at": number(created_at)}
