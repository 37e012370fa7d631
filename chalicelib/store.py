"""DynamoDB job store: every job transition as a conditional write, plus idempotency records.

Creation is conditional (and atomic with the ``Idempotency-Key`` record when there is
one); a claim takes a pending job or one whose lease ran out; finishing, releasing and
flagging need the lease; cancel and abandon only act on jobs nobody is running. So a
duplicate delivery, a worker that lost its lease or a racing cancel can never overwrite a
newer state. Item layout lives in ``items``; listing by caller in ``job_index``.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.items import IDEMPOTENCY_PREFIX, from_item, key, number, text, to_item, ttl_of
from chalicelib.job_index import list_jobs
from chalicelib.jobs import Job, JobStatus
from chalicelib.ports import (
    Busy,
    CancelOutcome,
    Claimed,
    ClaimResult,
    Gone,
    IdempotencyConflict,
    IdempotencyRecord,
    JobFilter,
    JobPage,
    Outcome,
)

_NAMES = {"#s": "status", "#ttl": "ttl", "#r": "result", "#e": "error", "#q": "request"}
_RETRIES = 3


class DynamoJobStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    # creation -----------------------------------------------------------------------
    def create(self, job: Job, ttl_epoch_s: int, idempotency: IdempotencyRecord | None = None) -> None:
        item = to_item(job) | {"ttl": number(ttl_epoch_s)}
        if idempotency is None:
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(id)")
            return
        record = {
            "id": text(IDEMPOTENCY_PREFIX + idempotency.key_id),
            "job_id": text(idempotency.job_id),
            "request_hash": text(idempotency.request_hash),
            "ttl": number(ttl_epoch_s),
        }
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(id)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": record,
                            "ConditionExpression": "attribute_not_exists(id)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed":
                found = self.get_idempotency(idempotency.key_id)
                if found is not None:
                    raise IdempotencyConflict(found) from None
            raise

    def get_idempotency(self, key_id: str) -> IdempotencyRecord | None:
        found = self._client.get_item(
            TableName=self._table, Key=key(IDEMPOTENCY_PREFIX + key_id), ConsistentRead=True
        ).get("Item")
        if not found:
            return None
        return IdempotencyRecord(key_id, found["job_id"]["S"], found["request_hash"]["S"])

    def get(self, job_id: str) -> Job | None:
        found = self._client.get_item(TableName=self._table, Key=key(job_id), ConsistentRead=True).get("Item")
        return from_item(found) if found else None

    def delete_pending(self, job_id: str, idempotency_key_id: str | None = None) -> None:
        pending = {
            "TableName": self._table,
            "Key": key(job_id),
            "ConditionExpression": "#s = :pending",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":pending": text(JobStatus.PENDING.value)},
        }
        try:
            if idempotency_key_id is None:
                self._client.delete_item(**pending)
            else:
                record = {"TableName": self._table, "Key": key(IDEMPOTENCY_PREFIX + idempotency_key_id)}
                self._client.transact_write_items(TransactItems=[{"Delete": pending}, {"Delete": record}])
        except ClientError as exc:
            if not _refused(exc):
                raise

    # the worker's transitions -------------------------------------------------------
    def claim(self, job_id: str, owner: str, now_ms: int, lease_until_ms: int) -> ClaimResult:
        try:
            updated = self._client.update_item(
                TableName=self._table,
                Key=key(job_id),
                UpdateExpression="SET #s = :processing, lease_owner = :owner, lease_until = :until ADD attempts :one",
                ConditionExpression="#s = :pending OR (#s = :processing AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":processing": text(JobStatus.PROCESSING.value),
                    ":pending": text(JobStatus.PENDING.value),
                    ":owner": text(owner),
                    ":until": number(lease_until_ms),
                    ":now": number(now_ms),
                    ":one": number(1),
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _refused(exc):
                raise
            current = exc.response.get("Item")
            return _why_not(from_item(current)) if current else Gone()
        return Claimed(from_item(updated["Attributes"]))

    def release(self, job_id: str, owner: str, route_from: int = 0) -> bool:
        update = "SET #s = :pending, route_from = :route REMOVE lease_owner, lease_until"
        values = {":pending": text(JobStatus.PENDING.value), ":route": number(route_from)}
        return self._as_holder(job_id, owner, update, values) is not None

    def finish(self, job_id: str, owner: str, outcome: Outcome) -> JobStatus | None:
        update, values = _terminal(outcome)
        try:
            self._as_holder(job_id, owner, update, values, "attribute_not_exists(cancel_requested)", raise_refusal=True)
        except ClientError as exc:
            if not _refused(exc):
                raise
            current = exc.response.get("Item")
            job = from_item(current) if current else None
            if job is None or job.lease_owner != owner or job.status != JobStatus.PROCESSING:
                return None
            cancelled = Outcome(JobStatus.CANCELLED, 0, outcome.completed_at_ms, outcome.expires_at_ms)
            update, values = _terminal(cancelled)
            return JobStatus.CANCELLED if self._as_holder(job_id, owner, update, values) else None
        return outcome.status

    # operations on jobs nobody is running -----------------------------------------
    def cancel(self, job_id: str, now_ms: int) -> CancelOutcome | None:
        for _ in range(_RETRIES):
            job = self.get(job_id)
            if job is None:
                return None
            if job.status.is_terminal:
                return CancelOutcome(job)
            if job.status == JobStatus.PENDING:
                done = Outcome(JobStatus.CANCELLED, 0, now_ms, now_ms + job.result_ttl_s * 1000)
                changed = self._if_status(job_id, JobStatus.PENDING, *_terminal(done))
                if changed is not None:
                    return CancelOutcome(changed, cancelled=True)
            else:
                flag = "SET cancel_requested = :yes"
                changed = self._if_status(job_id, JobStatus.PROCESSING, flag, {":yes": {"BOOL": True}})
                if changed is not None:
                    return CancelOutcome(changed, requested=True)
        raise RuntimeError(f"job {job_id} kept changing while being cancelled")

    def abandon(self, job_id: str, now_ms: int, error_json: str) -> ClaimResult:
        for _ in range(_RETRIES):
            job = self.get(job_id)
            if job is None or job.status.is_terminal:
                return Gone()
            if job.status == JobStatus.PROCESSING and (job.lease_until_ms or 0) >= now_ms:
                return Busy(job.lease_until_ms or now_ms)
            failed = Outcome(JobStatus.FAILED, 500, now_ms, now_ms + job.result_ttl_s * 1000, error_json)
            changed = self._if_status(job_id, job.status, *_terminal(failed), lease_until=job.lease_until_ms)
            if changed is not None:
                return Claimed(changed)
        raise RuntimeError(f"job {job_id} kept changing while being abandoned")

    def list_jobs(self, where: JobFilter, limit: int, cursor: str | None, now_ms: int) -> JobPage:
        return list_jobs(self._client, self._table, where, limit, cursor, now_ms)

    # conditional writes -------------------------------------------------------------
    def _as_holder(
        self,
        job_id: str,
        owner: str,
        update: str,
        values: dict[str, Any],
        extra_condition: str = "",
        raise_refusal: bool = False,
    ) -> dict[str, Any] | None:
        condition = "#s = :processing AND lease_owner = :owner" + (f" AND {extra_condition}" if extra_condition else "")
        return self._write(
            job_id,
            update,
            condition,
            {**values, ":processing": text(JobStatus.PROCESSING.value), ":owner": text(owner)},
            raise_refusal,
        )

    def _if_status(
        self, job_id: str, status: JobStatus, update: str, values: dict[str, Any], lease_until: int | None = None
    ) -> Job | None:
        condition = "#s = :expected" + (" AND lease_until = :lease" if lease_until is not None else "")
        expected = {":expected": text(status.value)} | ({":lease": number(lease_until)} if lease_until else {})
        written = self._write(job_id, update, condition, {**values, **expected})
        return from_item(written) if written is not None else None

    def _write(
        self, job_id: str, update: str, condition: str, values: dict[str, Any], raise_refusal: bool = False
    ) -> dict[str, Any] | None:
        names = {name: attr for name, attr in _NAMES.items() if name in update or name in condition}
        try:
            written = self._client.update_item(
                TableName=self._table,
                Key=key(job_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _refused(exc) and not raise_refusal:
                return None
            raise
        attributes: dict[str, Any] = written["Attributes"]
        return attributes


def _terminal(outcome: Outcome) -> tuple[str, dict[str, Any]]:
    """The update that makes a job terminal; open-job attributes and the request go."""
    sets = ["#s = :status", "completed_at = :done", "expires_at = :exp", "#ttl = :ttl"]
    values: dict[str, Any] = {
        ":status": text(outcome.status.value),
        ":done": number(outcome.completed_at_ms),
        ":exp": number(outcome.expires_at_ms),
        ":ttl": number(ttl_of(outcome.expires_at_ms)),
    }
    if outcome.status != JobStatus.CANCELLED:
        sets.append("status_code = :code")
        values[":code"] = number(outcome.status_code)
    if outcome.payload_ref is not None:
        sets += ["result_ref = :ref", "result_size = :size"]
        values |= {":ref": text(outcome.payload_ref), ":size": number(outcome.payload_size or 0)}
    elif outcome.payload_json is not None:
        sets.append(("#r" if outcome.status == JobStatus.COMPLETED else "#e") + " = :payload")
        values[":payload"] = text(outcome.payload_json)
    removed = "lease_owner, lease_until, #q, request_ref, cancel_requested, route_from"
    return f"SET {', '.join(sets)} REMOVE {removed}", values


def _why_not(job: Job) -> ClaimResult:
    if job.status == JobStatus.PROCESSING and job.lease_until_ms is not None:
        return Busy(job.lease_until_ms)
    return Gone()


def _refused(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")
