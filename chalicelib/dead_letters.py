"""The dead-letter queue's consumer: a job whose message exhausted its receives is failed.

Its poll then ends with a 500 and a clear message instead of staying open for ever. A
job some worker is still running (live lease) is left alone and checked again later; a
job that already ended, or no longer exists, needs nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence

from chalicelib.clock import Clock, now_ms
from chalicelib.errors import InternalError
from chalicelib.payloads import Payloads
from chalicelib.ports import Busy, Claimed, JobStore
from chalicelib.service import is_job_id
from chalicelib.worker import Delivery

log = logging.getLogger(__name__)

ABANDONED = "the job could not be processed: its message exhausted every delivery attempt"


class DeadLetters:
    def __init__(self, store: JobStore, payloads: Payloads, clock: Clock) -> None:
        self._store = store
        self._payloads = payloads
        self._clock = clock

    def handle_batch(self, deliveries: Sequence[Delivery]) -> list[str]:
        """Fail each dead job; return the message ids to look at again (jobs still running)."""
        again = []
        for delivery in deliveries:
            job_id = delivery.body.strip()
            if not is_job_id(job_id):
                log.warning("dead letter %s does not name a job; dropping it", delivery.message_id)
                continue
            error = InternalError(ABANDONED, code="job_abandoned").to_body(str(uuid.uuid4()))
            outcome = self._store.abandon(job_id, now_ms(self._clock), json.dumps(error, separators=(",", ":")))
            if isinstance(outcome, Claimed):
                log.error("job %s failed: its message reached the dead-letter queue", job_id)
                self._payloads.discard_inputs(job_id)
            elif isinstance(outcome, Busy):
                again.append(delivery.message_id)
        return again
