"""DynamoDB job store: the only code that knows the jobs table's attributes and conditions.

Items hold JSON blobs as strings and times as epoch milliseconds; ``ttl`` is epoch
seconds for DynamoDB's own clean-up (a safety horizon while open, ``expires_at``
once finished). Every transition is a conditional write, so a duplicate delivery or
a worker that lost its lease can never overwrite a newer state.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.contract import RequestType
from chalicelib.jobs import Job, JobStatus
from chalicelib.ports import Busy, Claimed, ClaimResult, Gone, Outcome

_NAMES = {"#s": "status", "#ttl": "ttl", "#r": "result", "#e": "error", "#q": "request"}


class DynamoJobStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def create(self, job: Job, ttl_epoch_s: int) -> None:
        item = _to_item(job)
        item["ttl"] = {"N": str(ttl_epoch_s)}
        self._client.put_item(
            TableName=self._table,
            Item=item,
            ConditionExpression="attribute_not_exists(id)",
        )

    def get(self, job_id: str) -> Job | None:
        found = self._client.get_item(TableName=self._table, Key=_key(job_id), ConsistentRead=True)
        item = found.get("Item")
        return _from_item(item) if item else None

    def delete_pending(self, job_id: str) -> None:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=_key(job_id),
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":pending": {"S": JobStatus.PENDING.value}},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def claim(self, job_id: str, owner: str, now_ms: int, lease_until_ms: int) -> ClaimResult:
        try:
            updated = self._client.update_item(
                TableName=self._table,
                Key=_key(job_id),
                UpdateExpression="SET #s = :processing, lease_owner = :owner, lease_until = :until ADD attempts :one",
                ConditionExpression="#s = :pending OR (#s = :processing AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":processing": {"S": JobStatus.PROCESSING.value},
                    ":pending": {"S": JobStatus.PENDING.value},
                    ":owner": {"S": owner},
                    ":until": {"N": str(lease_until_ms)},
                    ":now": {"N": str(now_ms)},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            current = exc.response.get("Item")
            if not current:
                return Gone()
            job = _from_item(current)
            if job.status == JobStatus.PROCESSING and job.lease_until_ms is not None:
                return Busy(job.lease_until_ms)
            return Gone()
        return Claimed(_from_item(updated["Attributes"]))

    def release(self, job_id: str, owner: str, route_from: int = 0) -> bool:
        return self._as_holder(
            job_id,
            owner,
            "SET #s = :pending, route_from = :route REMOVE lease_owner, lease_until",
            {":pending": {"S": JobStatus.PENDING.value}, ":route": {"N": str(route_from)}},
        )

    def finish(self, job_id: str, owner: str, outcome: Outcome) -> bool:
        payload_name = "#r" if outcome.status == JobStatus.COMPLETED else "#e"
        return self._as_holder(
            job_id,
            owner,
            f"SET #s = :status, status_code = :code, completed_at = :done, expires_at = :exp, "
            f"#ttl = :ttl, {payload_name} = :payload REMOVE lease_owner, lease_until, #q",
            {
                ":status": {"S": outcome.status.value},
                ":code": {"N": str(outcome.status_code)},
                ":done": {"N": str(outcome.completed_at_ms)},
                ":exp": {"N": str(outcome.expires_at_ms)},
                ":ttl": {"N": str(-(-outcome.expires_at_ms // 1000))},
                ":payload": {"S": outcome.payload_json},
            },
        )

    def _as_holder(self, job_id: str, owner: str, update: str, values: dict[str, Any]) -> bool:
        names = {name: attr for name, attr in _NAMES.items() if name in update}
        names["#s"] = "status"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(job_id),
                UpdateExpression=update,
                ConditionExpression="#s = :processing AND lease_owner = :owner",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    **values,
                    ":processing": {"S": JobStatus.PROCESSING.value},
                    ":owner": {"S": owner},
                },
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise
        return True


def _condition_failed(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def _key(job_id: str) -> dict[str, Any]:
    return {"id": {"S": job_id}}


_STRINGS = {
    "request_json": "request",
    "lease_owner": "lease_owner",
    "result_json": "result",
    "error_json": "error",
    "vk_id": "vk_id",
}
_NUMBERS = {
    "lease_until_ms": "lease_until",
    "completed_at_ms": "completed_at",
    "expires_at_ms": "expires_at",
    "status_code": "status_code",
    "route_from": "route_from",
}


def _to_item(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": {"S": job.id},
        "request_type": {"S": job.request_type.value},
        "status": {"S": job.status.value},
        "created_at": {"N": str(job.created_at_ms)},
        "result_ttl_s": {"N": str(job.result_ttl_s)},
        "attempts": {"N": str(job.attempts)},
    }
    for field, attr in _STRINGS.items():
        value = getattr(job, field)
        if value is not None:
            item[attr] = {"S": value}
    for field, attr in _NUMBERS.items():
        value = getattr(job, field)
        if value is not None:
            item[attr] = {"N": str(value)}
    return item


def _from_item(item: dict[str, Any]) -> Job:
    optional: dict[str, Any] = {field: item[attr]["S"] for field, attr in _STRINGS.items() if attr in item}
    optional.update({field: int(item[attr]["N"]) for field, attr in _NUMBERS.items() if attr in item})
    return Job(
        id=item["id"]["S"],
        request_type=RequestType(item["request_type"]["S"]),
        status=JobStatus(item["status"]["S"]),
        created_at_ms=int(item["created_at"]["N"]),
        result_ttl_s=int(item["result_ttl_s"]["N"]),
        attempts=int(item.get("attempts", {}).get("N", "0")),
        **optional,
    )
