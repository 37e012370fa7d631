"""The ports the use cases are written against: job store, job queue and blob store.

Adapters (``store.DynamoJobStore``, ``job_queue.SqsJobQueue``, ``blobs.S3BlobStore``)
implement these for AWS; tests run in-memory twins through the same contract tests.
Every state change is conditional, so concurrent workers, duplicate deliveries and a
racing cancel cannot corrupt a job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chalicelib.contract import RequestType
from chalicelib.jobs import Job, JobStatus


@dataclass(frozen=True)
class Claimed:
    """The caller now holds the job's lease."""

    job: Job


@dataclass(frozen=True)
class Busy:
    """Another worker holds a live lease until ``lease_until_ms``."""

    lease_until_ms: int


@dataclass(frozen=True)
class Gone:
    """Nothing to run: the job is finished, or it does not exist."""


ClaimResult = Claimed | Busy | Gone


@dataclass(frozen=True)
class Outcome:
    """A terminal write: the result (``completed``) or the error (``failed``).

    The payload is inline JSON text, or a blob key with its size when it was too large.
    """

    status: JobStatus
    status_code: int
    completed_at_ms: int
    expires_at_ms: int
    payload_json: str | None = None
    payload_ref: str | None = None
    payload_size: int | None = None


@dataclass(frozen=True)
class IdempotencyRecord:
    """A remembered ``Idempotency-Key``: which job it created, for which request."""

    key_id: str
    job_id: str
    request_hash: str


class IdempotencyConflict(Exception):
    """The key was used before; ``record`` says for which job and request."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__(record.key_id)
        self.record = record


@dataclass(frozen=True)
class CancelOutcome:
    """``cancelled``: it will never run; ``requested``: it is running, asked to stop; else finished."""

    job: Job
    cancelled: bool = False
    requested: bool = False


@dataclass(frozen=True)
class JobPage:
    jobs: Sequence[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class JobFilter:
    caller: str
    status: JobStatus | None = None
    request_type: RequestType | None = None


class JobStore(Protocol):
    def create(self, job: Job, ttl_epoch_s: int, idempotency: IdempotencyRecord | None = None) -> None:
        """Insert a new job (and its idempotency record, atomically); ``IdempotencyConflict`` if used."""
        ...

    def get(self, job_id: str) -> Job | None:
        """Strongly consistent read; ``None`` if absent."""
        ...

    def delete_pending(self, job_id: str, idempotency_key_id: str | None = None) -> None:
        """Remove a job that never left ``pending`` and its idempotency record (submit rollback)."""
        ...

    def claim(self, job_id: str, owner: str, now_ms: int, lease_until_ms: int) -> ClaimResult:
        """Take the lease of a pending job, or of a processing job whose lease expired."""
        ...

    def release(self, job_id: str, owner: str, route_from: int = 0) -> bool:
        """Give the job back to ``pending`` to be retried from target ``route_from``; False if not the holder."""
        ...

    def finish(self, job_id: str, owner: str, outcome: Outcome) -> JobStatus | None:
        """Write the terminal state as lease holder: the status written (``cancelled`` if a cancel
        was requested meanwhile), or ``None`` if the lease was lost."""
        ...

    def cancel(self, job_id: str, now_ms: int) -> CancelOutcome | None:
        """Cancel a pending job, or flag a running one; ``None`` if the job does not exist."""
        ...

    def abandon(self, job_id: str, now_ms: int, error_json: str) -> ClaimResult:
        """Fail (500) a job nobody will finish (its message died): ``Claimed`` when written, else why not."""
        ...

    def get_idempotency(self, key_id: str) -> IdempotencyRecord | None: ...

    def list_jobs(self, where: JobFilter, limit: int, cursor: str | None, now_ms: int) -> JobPage:
        """The caller's unexpired jobs, newest first; ``cursor`` continues a previous page."""
        ...


class JobQueue(Protocol):
    def send(self, job_id: str) -> None: ...

    def defer(self, receipt_handle: str, delay_s: int) -> None:
        """Make an in-flight message visible again after ``delay_s`` seconds."""
        ...


class BlobStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, keys: Sequence[str]) -> None: ...

    def keys(self, prefix: str) -> list[str]: ...

    def url(self, key: str, expires_in_s: int) -> str:
        """A time-limited HTTPS URL to read the object (presigned)."""
        ...
