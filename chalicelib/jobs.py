"""The job value object, its statuses, and its JSON view (contract §2–3).

A ``Job`` is what the store holds; ``render_job`` is what a client sees. Stored
``result``/``error`` are JSON text and are spliced into the view unparsed, so a
large result is never decoded and re-encoded on the poll path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from chalicelib.clock import rfc3339
from chalicelib.contract import RequestType


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Job:
    """A job as stored. ``caller`` scopes it (a virtual key's id, or ``anonymous``);
    ``*_ref`` name blobs holding a request or result too large for the item."""

    id: str
    request_type: RequestType
    status: JobStatus
    created_at_ms: int
    result_ttl_s: int
    request_json: str | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until_ms: int | None = None
    completed_at_ms: int | None = None
    expires_at_ms: int | None = None
    status_code: int | None = None
    result_json: str | None = None
    error_json: str | None = None
    route_from: int = 0
    caller: str = ANONYMOUS
    request_ref: str | None = None
    result_ref: str | None = None
    result_size: int | None = None
    cancel_requested: bool = False

    def is_expired(self, now_ms: int) -> bool:
        """Read-time expiry: a finished job vanishes the moment ``expires_at`` passes."""
        return self.expires_at_ms is not None and self.expires_at_ms <= now_ms


def _head(job: Job) -> dict[str, object]:
    """id, status, creation time, and once finished its completion, expiry and status code."""
    head: dict[str, object] = {"id": job.id, "status": job.status.value, "created_at": rfc3339(job.created_at_ms)}
    if not job.status.is_terminal:
        return head
    if job.completed_at_ms is not None:
        head["completed_at"] = rfc3339(job.completed_at_ms)
    if job.expires_at_ms is not None:
        head["expires_at"] = rfc3339(job.expires_at_ms)
    if job.status_code is not None:
        head["status_code"] = job.status_code
    return head


def render_job(job: Job, result_json: str | None = None, result_url: str | None = None) -> str:
    """The poll body as JSON text; open jobs carry only id, status, created_at.

    A result kept as a blob is passed in: as its text (``result_json``), or, when too large
    for a response, as a URL (``result_url``) with ``"result": null`` and its size.
    """
    head = _head(job)
    if not job.status.is_terminal:
        return json.dumps(head, separators=(",", ":"))
    if result_url is not None:
        head |= {"result": None, "result_url": result_url, "result_size_bytes": job.result_size}
    text = json.dumps(head, separators=(",", ":"))
    inline = job.result_json if job.result_json is not None else result_json
    if inline is not None and result_url is None:
        text = f'{text[:-1]},"result":{inline}}}'
    if job.error_json is not None:
        text = f'{text[:-1]},"error":{job.error_json}}}'
    return text


def poll_interval_s(job: Job, now_ms: int) -> int:
    """Suggested ``Retry-After`` for an open job: 1 s at first, slower as it ages, at most 30 s."""
    age_s = max(0, now_ms - job.created_at_ms) // 1000
    return int(min(30, max(1, age_s // 10)))


def render_submitted(job: Job) -> str:
    """The submit answer: id, status and creation time only (also for an idempotent replay)."""
    head = {"id": job.id, "status": job.status.value, "created_at": rfc3339(job.created_at_ms)}
    return json.dumps(head, separators=(",", ":"))


def summary(job: Job) -> dict[str, object]:
    """A job as a listing shows it: no result, no error body."""
    return {"request_type": job.request_type.value} | _head(job)
