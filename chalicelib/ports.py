"""The ports the use cases are written against: the job store and the job queue.

Adapters (``store.DynamoJobStore``, ``job_queue.SqsJobQueue``) implement these for
AWS; tests run in-memory twins through the same contract tests. Every state change
is conditional, so concurrent workers and duplicate deliveries cannot corrupt a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
    """A terminal write: the result (``completed``) or the error (``failed``) as JSON text."""

    status: JobStatus
    status_code: int
    completed_at_ms: int
    expires_at_ms: int
    payload_json: str


class JobStore(Protocol):
    def create(self, job: Job, ttl_epoch_s: int) -> None:
        """Insert a new job; raises if the id exists."""
        ...

    def get(self, job_id: str) -> Job | None:
        """Strongly consistent read; ``None`` if absent."""
        ...

    def delete_pending(self, job_id: str) -> None:
        """Remove a job that never left ``pending`` (submit rollback)."""
        ...

    def claim(self, job_id: str, owner: str, now_ms: int, lease_until_ms: int) -> ClaimResult:
        """Take the lease of a pending job, or of a processing job whose lease expired."""
        ...

    def release(self, job_id: str, owner: str, route_from: int = 0) -> bool:
        """Give the job back to ``pending`` to be retried from target ``route_from``; False if not the holder."""
        ...

    def finish(self, job_id: str, owner: str, outcome: Outcome) -> bool:
        """Write the terminal state as lease holder; False if the lease was lost."""
        ...


class JobQueue(Protocol):
    def send(self, job_id: str) -> None: ...

    def defer(self, receipt_handle: str, delay_s: int) -> None:
        """Make an in-flight message visible again after ``delay_s`` seconds."""
        ...
