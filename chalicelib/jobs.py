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


@dataclass(frozen=True)
class Job:
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
    vk_id: str | None = None
    route_from: int = 0

    def is_expired(self, now_ms: int) -> bool:
        """Read-time expiry: a finished job vanishes the moment ``expires_at`` passes."""
        return self.expires_at_ms is not None and self.expires_at_ms <= now_ms


def render_job(job: Job) -> str:
    """The poll/submit body as JSON text; open jobs carry only id, status, created_at."""
    head: dict[str, object] = {
        "id": job.id,
        "status": job.status.value,
        "created_at": rfc3339(job.created_at_ms),
    }
    if not job.status.is_terminal:
        return json.dumps(head, separators=(",", ":"))
    if job.completed_at_ms is not None:
        head["completed_at"] = rfc3339(job.completed_at_ms)
    if job.expires_at_ms is not None:
        head["expires_at"] = rfc3339(job.expires_at_ms)
    if job.status_code is not None:
        head["status_code"] = job.status_code
    text = json.dumps(head, separators=(",", ":"))
    if job.result_json is not None:
        text = f'{text[:-1]},"result":{job.result_json}}}'
    if job.error_json is not None:
        text = f'{text[:-1]},"error":{job.error_json}}}'
    return text


def poll_interval_s(job: Job, now_ms: int) -> int:
    """Suggested ``Retry-After`` for an open job: 1 s at first, slower as it ages, at most 30 s."""
    age_s = max(0, now_ms - job.created_at_ms) // 1000
    return int(min(30, max(1, age_s // 10)))
