"""Create asyncgate's AWS resources idempotently: safe to run again, it only adds what is missing.

The data resources (tables, queues, bucket) are shared by the local stack (against moto),
the tests and ``python -m chalicelib.infra ensure``; their shapes match what the deployment
template declares: on-demand, encrypted, point-in-time-recoverable tables with TTL on
``ttl``, SQS-encrypted long-polling queues whose visibility covers the worker's lease with
redrive to a DLQ after a bounded number of receives, and a private, encrypted bucket whose
objects expire after the longest result TTL. The access resources (TLS-only bucket policy,
secrets, log groups, roles) are what a ``chalice deploy`` stage needs besides; the command
itself lives in ``chalicelib.infra_cli``. Existing secret values are never read or replaced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import iam
from chalicelib.blobs import REQUESTS, RESULTS, UPLOADS
from chalicelib.config import DAY_S, Settings
from chalicelib.items import CALLER_INDEX
from chalicelib.job_index import INDEXED_ATTRIBUTES
from chalicelib.key_store import KEY_ID_INDEX

WORKER_TIMEOUT_S = 300
QUEUE_VISIBILITY_S = 6 * WORKER_TIMEOUT_S
QUEUE_RETENTION_S = 4 * DAY_S
DLQ_RETENTION_S = 14 * DAY_S
EXTRA_RECEIVES = 3
LOG_RETENTION_DAYS = 30
ROLE_POLICY_NAME = "asyncgate"
BACKUPS_RETRY_S = 5.0  # a new table refuses point-in-time recovery for a little while
BACKUPS_ATTEMPTS = 24


def max_receive_count(settings: Settings) -> int:
    """Receives before a message goes to the DLQ: every attempt, plus slack for lease re-checks."""
    return settings.max_attempts + EXTRA_RECEIVES


def dlq_name(queue_name: str) -> str:
    return f"{queue_name}-dlq"


def _error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def ensure(settings: Settings, dynamodb: Any, sqs: Any, s3: Any) -> dict[str, str]:
    """Create whatever is missing; returns the queue URLs."""
    ensure_table(dynamodb, settings.jobs_table)
    ensure_keys_table(dynamodb, settings.keys_table)
    urls = ensure_queues(sqs, settings)
    ensure_bucket(s3, settings)
    return urls


# tables ------------------------------------------------------------------------------------
def ensure_table(dynamodb: Any, table: str) -> None:
    _ensure_table(
        dynamodb,
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "caller", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": CALLER_INDEX,
                "KeySchema": [
                    {"AttributeName": "caller", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(INDEXED_ATTRIBUTES)},
            }
        ],
    )


def ensure_keys_table(dynamodb: Any, table: str) -> None:
    _ensure_table(
        dynamodb,
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "key_id", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": KEY_ID_INDEX,
                "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


def _ensure_table(dynamodb: Any, **shape: Any) -> None:
    """An on-demand, encrypted table of ``shape``, with TTL on ``ttl`` and point-in-time recovery."""
    table = shape["TableName"]
    try:
        dynamodb.create_table(BillingMode="PAY_PER_REQUEST", SSESpecification={"Enabled": True}, **shape)
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=table)
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if ttl["TimeToLiveStatus"] not in ("ENABLED", "ENABLING"):  # DynamoDB refuses to enable it twice
        dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    enable_point_in_time_recovery(dynamodb, table)


def enable_point_in_time_recovery(dynamodb: Any, table: str, sleep: Callable[[float], None] = time.sleep) -> None:
    for attempt in range(BACKUPS_ATTEMPTS):
        try:
            dynamodb.update_continuous_backups(
                TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
            return
        except ClientError as exc:
            if _error_code(exc) != "ContinuousBackupsUnavailableException" or attempt == BACKUPS_ATTEMPTS - 1:
                raise
            sleep(BACKUPS_RETRY_S)


# queues ------------------------------------------------------------------------------------
def ensure_queues(sqs: Any, settings: Settings) -> dict[str, str]:
    dlq_url = sqs.create_queue(QueueName=dlq_name(settings.jobs_queue))["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=dlq_url,
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S), "SqsManagedSseEnabled": "true"},
    )
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count(settings))}
    attributes = {
        "VisibilityTimeout": str(QUEUE_VISIBILITY_S),
        "MessageRetentionPeriod": str(QUEUE_RETENTION_S),
        "ReceiveMessageWaitTimeSeconds": "20",
        "RedrivePolicy": json.dumps(redrive),
        "SqsManagedSseEnabled": "true",
    }
    queue_url = sqs.create_queue(QueueName=settings.jobs_queue)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    return {"queue_url": queue_url, "dlq_url": dlq_url}


# buckets -----------------------------------------------------------------------------------
def ensure_bucket(s3: Any, settings: Settings) -> None:
    ensure_private_bucket(s3, settings.bucket)
    s3.put_bucket_lifecycle_configuration(
        Bucket=settings.bucket, LifecycleConfiguration={"Rules": lifecycle_rules(settings)}
    )


def ensure_private_bucket(s3: Any, bucket: str) -> None:
    """A bucket of ours with no public access, owner-enforced objects and SSE-S3 by default."""
    try:
        region = s3.meta.region_name
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as exc:
        if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]
        },
    )


def lifecycle_rules(settings: Settings) -> list[dict[str, Any]]:
    """Results live as long as the longest TTL allows; requests and uploads as long as a job may stay open."""
    results_days = -(-settings.max_ttl_s // DAY_S) + 1
    inputs_days = -(-settings.open_job_horizon_s // DAY_S) + 1
    return [
        {
            "ID": "expire-results",
            "Status": "Enabled",
            "Filter": {"Prefix": RESULTS},
            "Expiration": {"Days": results_days},
        },
        {
            "ID": "expire-requests",
            "Status": "Enabled",
            "Filter": {"Prefix": REQUESTS},
            "Expiration": {"Days": inputs_days},
        },
        {
            "ID": "expire-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": UPLOADS},
            "Expiration": {"Days": inputs_days},
        },
        {
            "ID": "abort-incomplete",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
    ]


def tls_only_policy(bucket_arn: str) -> dict[str, Any]:
    """Deny every request to the bucket that does not arrive over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def require_tls(s3: Any, bucket: str, bucket_arn: str) -> None:
    """Not for the local stack: moto applies a bucket policy's Deny without its condition."""
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket_arn)))


# secrets, log groups, roles ----------------------------------------------------------------
def ensure_secret(secretsmanager: Any, name: str, description: str, initial: Callable[[], str]) -> str:
    """The ARN of secret ``name``; created holding ``initial()`` if absent, restored if scheduled for deletion."""
    try:
        found = secretsmanager.describe_secret(SecretId=name)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        return str(secretsmanager.create_secret(Name=name, Description=description, SecretString=initial())["ARN"])
    if "DeletedDate" in found:
        secretsmanager.restore_secret(SecretId=name)
    return str(found["ARN"])


def ensure_log_group(logs: Any, name: str) -> None:
    """The functions' roles may write to their log group but not create it: so it is made here."""
    try:
        logs.create_log_group(logGroupName=name)
    except ClientError as exc:
        if _error_code(exc) != "ResourceAlreadyExistsException":
            raise
    logs.put_retention_policy(logGroupName=name, retentionInDays=LOG_RETENTION_DAYS)


def ensure_role(iam_client: Any, name: str, policy: dict[str, Any]) -> str:
    """The ARN of Lambda role ``name``, whose one inline policy is (now) ``policy``."""
    trust = json.dumps(iam.ASSUME_ROLE_POLICY)
    try:
        role = iam_client.create_role(RoleName=name, AssumeRolePolicyDocument=trust, Description="asyncgate Lambda")
    except ClientError as exc:
        if _error_code(exc) != "EntityAlreadyExists":
            raise
        role = iam_client.get_role(RoleName=name)
        iam_client.update_assume_role_policy(RoleName=name, PolicyDocument=trust)
    iam_client.put_role_policy(RoleName=name, PolicyName=ROLE_POLICY_NAME, PolicyDocument=json.dumps(policy))
    return str(role["Role"]["Arn"])


PARTIAL_BATCH_RESPONSES = "ReportBatchItemFailures"


def enable_partial_batch_responses(lambda_client: Any, function_name: str) -> int:
    """Turn on partial batch responses for every queue trigger of a function; returns how many changed.

    Without them Lambda deletes a whole batch when the handler returns, including the messages
    the worker hands back for a later attempt, and those jobs would never run again.
    """
    changed = 0
    pages = lambda_client.get_paginator("list_event_source_mappings").paginate(FunctionName=function_name)
    for mapping in (m for page in pages for m in page.get("EventSourceMappings", [])):
        if PARTIAL_BATCH_RESPONSES not in mapping.get("FunctionResponseTypes", []):
            lambda_client.update_event_source_mapping(
                UUID=mapping["UUID"], FunctionResponseTypes=[PARTIAL_BATCH_RESPONSES]
            )
            changed += 1
    return changed


if __name__ == "__main__":
    import sys

    from chalicelib.infra_cli import main

    sys.exit(main())
