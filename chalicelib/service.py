"""The job use cases (contract §2, §3, §6): submit, poll, cancel, list.

Owns job creation (payloads placed inline or as blobs, the safety horizon, the
``Idempotency-Key`` replay), the rollback when the queue refuses a job, and the
read-side rules: type and caller scoping, read-time expiry, results fetched from blobs.
Knows nothing of HTTP frameworks or AWS.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.access import Access
from chalicelib.clock import Clock, now_ms
from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import GatewayError, NotFound, ServiceUnavailable
from chalicelib.jobs import ANONYMOUS, Job, JobStatus, render_job
from chalicelib.payloads import UPLOADS_FIELD, Payloads
from chalicelib.ports import (
    CancelOutcome,
    IdempotencyConflict,
    IdempotencyRecord,
    JobFilter,
    JobPage,
    JobQueue,
    JobStore,
)
from chalicelib.submission import Prepared, Submission, idempotency_key_id, prepare
from chalicelib.validation import ProviderCatalog, canonical_json

log = logging.getLogger(__name__)

JOB_NOT_FOUND = "job not found or expired"


def parse_result_ttl(value: str | None, default_s: int, max_s: int) -> int:
    """The TTL header: a positive integer is used (up to the deployment maximum); else the default."""
    digits = (value or "").strip().lstrip("0")
    if not re.fullmatch(r"[0-9]+", digits):
        return default_s
    if len(digits) > len(str(max_s)):  # no int() of an unbounded string
        return max_s
    return min(int(digits), max_s)


def is_job_id(value: str) -> bool:
    """Job ids are canonical lowercase UUIDs; anything else cannot name a job."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class IdempotencyMismatch(GatewayError):
    status = 422
    error_type = "invalid_request_error"
    code = "idempotency_key_reused"


class JobFinished(GatewayError):
    status = 409
    error_type = "invalid_request_error"
    code = "job_finished"


@dataclass(frozen=True)
class Polled:
    job: Job
    body: str


class JobService:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        payloads: Payloads,
        access: Access,
        catalog: ProviderCatalog,
        settings: Settings,
        clock: Clock,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._store = store
        self._queue = queue
        self._payloads = payloads
        self._access = access
        self._catalog = catalog
        self._settings = settings
        self._clock = clock
        self._new_id = new_id

    # submit ---------------------------------------------------------------------------
    def submit(self, submission: Submission) -> Job:
        prepared = prepare(submission, self._catalog, self._settings.max_request_bytes)
        caller = self._access.submitting(submission.key).scope
        key_id = None
        if submission.idempotency_key is not None:
            key_id = idempotency_key_id(caller, submission.idempotency_key)
            earlier = self._store.get_idempotency(key_id)
            if earlier is not None:
                return self._replay(earlier, prepared, caller)
        job, blob_keys = self._new_job(submission, prepared, caller)
        record = IdempotencyRecord(key_id, job.id, prepared.request_hash) if key_id else None
        try:
            self._store.create(job, created_horizon(job, self._settings), record)
        except IdempotencyConflict as conflict:
            self._payloads.discard(blob_keys)
            return self._replay(conflict.record, prepared, caller)
        except Exception:
            self._payloads.discard(blob_keys)
            raise
        try:
            self._send(job.id)
        except ServiceUnavailable:
            self._roll_back(job, key_id, blob_keys)
            raise
        provider = prepared.request.model.provider
        log.info("job %s submitted type=%s provider=%s", job.id, job.request_type.value, provider)
        return job

    def _new_job(self, submission: Submission, prepared: Prepared, caller: str) -> tuple[Job, list[str]]:
        """The pending job, with its request and uploads placed; and the blob keys used."""
        job_id = self._new_id()
        request_json = prepared.request_json
        blob_keys: list[str] = []
        if prepared.files:
            uploads = self._payloads.store_uploads(job_id, prepared.files)
            blob_keys += [item["key"] for items in uploads.values() for item in items]
            request_json = canonical_json({**json.loads(request_json), UPLOADS_FIELD: uploads})
        try:
            stored = self._payloads.store_request(job_id, request_json)
        except Exception:
            self._payloads.discard(blob_keys)
            raise
        blob_keys += [stored.ref] if stored.ref else []
        job = Job(
            id=job_id,
            request_type=submission.request_type,
            status=JobStatus.PENDING,
            created_at_ms=now_ms(self._clock),
            result_ttl_s=parse_result_ttl(
                submission.ttl_header, self._settings.default_ttl_s, self._settings.max_ttl_s
            ),
            caller=caller,
            request_json=stored.inline,
            request_ref=stored.ref,
        )
        return job, blob_keys

    def _replay(self, record: IdempotencyRecord, prepared: Prepared, caller: str) -> Job:
        if record.request_hash != prepared.request_hash:
            raise IdempotencyMismatch("Idempotency-Key was already used with a different request")
        job = self._store.get(record.job_id)
        if job is None or job.caller != caller or job.is_expired(now_ms(self._clock)):
            raise NotFound(JOB_NOT_FOUND, code="job_not_found")
        if job.status == JobStatus.PENDING and job.attempts == 0:
            # its first message may have been refused (and the rollback with it): queue it again;
            # a duplicate message is harmless, the claim runs the job once
            self._send(job.id)
        return job

    def _send(self, job_id: str) -> None:
        try:
            self._queue.send(job_id)
        except Exception:
            log.exception("job %s could not be queued", job_id)
            raise ServiceUnavailable("the job could not be queued; try again", code="queue_unavailable") from None

    def _roll_back(self, job: Job, key_id: str | None, blob_keys: list[str]) -> None:
        try:
            self._store.delete_pending(job.id, key_id)
        except Exception:
            log.exception("job %s could not be rolled back", job.id)
            return
        self._payloads.discard(blob_keys)

    # read side ------------------------------------------------------------------------
    def poll(self, request_type: RequestType, job_id: str, caller: str) -> Polled:
        job = self._visible(request_type, job_id, caller)
        result_json, result_url = self._payloads.result_for_poll(job, now_ms(self._clock))
        return Polled(job, render_job(job, result_json, result_url))

    def cancel(self, request_type: RequestType, job_id: str, caller: str) -> CancelOutcome:
        self._visible(request_type, job_id, caller)
        outcome = self._store.cancel(job_id, now_ms(self._clock))
        if outcome is None:
            raise NotFound(JOB_NOT_FOUND, code="job_not_found")
        if not (outcome.cancelled or outcome.requested):
            raise JobFinished(f"the job already ended with status {outcome.job.status.value}")
        if outcome.cancelled:
            self._payloads.discard_inputs(job_id)
        log.info("job %s cancel %s", job_id, "done" if outcome.cancelled else "requested")
        return outcome

    def list_jobs(self, where: JobFilter, limit: int, cursor: str | None) -> JobPage:
        return self._store.list_jobs(where, limit, cursor, now_ms(self._clock))

    def _visible(self, request_type: RequestType, job_id: str, caller: str) -> Job:
        """The job, if this caller may see it on this path; one 404 for every other case."""
        job = self._store.get(job_id) if is_job_id(job_id) else None
        if (
            job is None
            or job.request_type != request_type
            or job.caller not in (caller, ANONYMOUS)
            or job.is_expired(now_ms(self._clock))
        ):
            raise NotFound(JOB_NOT_FOUND, code="job_not_found")
        return job


def created_horizon(job: Job, settings: Settings) -> int:
    """DynamoDB TTL for an open job: collected if it is somehow never finished."""
    return job.created_at_ms // 1000 + settings.open_job_horizon_s
