"""Submit and poll use cases (contract §2–3), written against the store and queue ports.

Owns the order of checks (body, streaming, then create), the TTL header rule, job
creation with its safety horizon, the submit rollback when the queue refuses, and
read-time expiry and type scoping on poll. Knows nothing of HTTP frameworks or AWS.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from chalicelib.clock import Clock, now_ms
from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import NotFound, PayloadTooLarge, ServiceUnavailable
from chalicelib.jobs import Job, JobStatus
from chalicelib.ports import JobQueue, JobStore
from chalicelib.validation import ProviderCatalog, canonical_json, parse_json_body, validate

log = logging.getLogger(__name__)

JOB_NOT_FOUND = "job not found or expired"


def parse_result_ttl(value: str | None, default_s: int, max_s: int) -> int:
    """The TTL header: a positive integer is used (up to the deployment maximum); else the default."""
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit():
        return default_s
    seconds = int(text)
    return min(seconds, max_s) if seconds > 0 else default_s


def is_job_id(value: str) -> bool:
    """Job ids are canonical lowercase UUIDs; anything else cannot name a job."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class JobService:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        catalog: ProviderCatalog,
        settings: Settings,
        clock: Clock,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._store = store
        self._queue = queue
        self._catalog = catalog
        self._settings = settings
        self._clock = clock
        self._new_id = new_id

    def submit(
        self,
        request_type: RequestType,
        raw_body: bytes | None,
        content_type: str | None,
        ttl_header: str | None,
    ) -> Job:
        body = parse_json_body(raw_body, content_type)
        request = validate(request_type, body, self._catalog)
        request_json = canonical_json(request.body)
        if len(request_json.encode()) > self._settings.max_inline_request_bytes:
            raise PayloadTooLarge(f"request body is larger than {self._settings.max_inline_request_bytes} bytes")
        created_ms = now_ms(self._clock)
        job = Job(
            id=self._new_id(),
            request_type=request_type,
            status=JobStatus.PENDING,
            created_at_ms=created_ms,
            result_ttl_s=parse_result_ttl(ttl_header, self._settings.default_ttl_s, self._settings.max_ttl_s),
            request_json=request_json,
        )
        self._store.create(job, ttl_epoch_s=created_ms // 1000 + self._settings.open_job_horizon_s)
        try:
            self._queue.send(job.id)
        except Exception:
            log.exception("job %s could not be queued; rolling back", job.id)
            self._discard(job.id)
            raise ServiceUnavailable("the job could not be queued; try again", code="queue_unavailable") from None
        log.info("job %s submitted type=%s provider=%s", job.id, request_type.value, request.model.provider)
        return job

    def _discard(self, job_id: str) -> None:
        try:
            self._store.delete_pending(job_id)
        except Exception:
            log.exception("job %s could not be rolled back", job_id)

    def poll(self, request_type: RequestType, job_id: str) -> Job:
        job = self._store.get(job_id) if is_job_id(job_id) else None
        if job is None or job.request_type != request_type or job.is_expired(now_ms(self._clock)):
            raise NotFound(JOB_NOT_FOUND, code="job_not_found")
        return job
