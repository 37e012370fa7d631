"""Create the jobs table, jobs queue with its dead-letter queue, and payload bucket, idempotently.

Used by the local stack (against moto) and by tests; the shapes match what the
deployment template declares: on-demand table with TTL on ``ttl``, long-polling queue
whose visibility covers the worker's lease, redrive to a DLQ after a bounded number
of receives, and a bucket whose objects expire after the longest result TTL.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

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


def max_receive_count(settings: Settings) -> int:
    """Receives before a message goes to the DLQ: every attempt, plus slack for lease re-checks."""
    return settings.max_attempts + EXTRA_RECEIVES


def dlq_name(queue_name: str) -> str:
    return f"{queue_name}-dlq"


def ensure(settings: Settings, dynamodb: Any, sqs: Any, s3: Any) -> dict[str, str]:
    """Create whatever is missing; returns the queue URLs."""
    ensure_table(dynamodb, settings.jobs_table)
    ensure_keys_table(dynamodb, settings.keys_table)
    urls = ensure_queues(sqs, settings)
    ensure_bucket(s3, settings)
    return urls


def ensure_table(dynamodb: Any, table: str) -> None:
    try:
        dynamodb.create_table(
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
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=table)
    dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})


def ensure_keys_table(dynamodb: Any, table: str) -> None:
    try:
        dynamodb.create_table(
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
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=table)
    dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})


def ensure_queues(sqs: Any, settings: Settings) -> dict[str, str]:
    dlq_url = sqs.create_queue(
        QueueName=dlq_name(settings.jobs_queue),
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count(settings))}
    attributes = {
        "VisibilityTimeout": str(QUEUE_VISIBILITY_S),
        "MessageRetentionPeriod": str(QUEUE_RETENTION_S),
        "ReceiveMessageWaitTimeSeconds": "20",
        "RedrivePolicy": json.dumps(redrive),
    }
    queue_url = sqs.create_queue(QueueName=settings.jobs_queue)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    return {"queue_url": queue_url, "dlq_url": dlq_url}


def ensure_bucket(s3: Any, settings: Settings) -> None:
    bucket = settings.bucket
    try:
        region = s3.meta.region_name
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
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
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(settings)})


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
