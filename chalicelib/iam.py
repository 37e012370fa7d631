"""Least-privilege IAM policies, one per function: the AWS actions its code calls, on its resources only.

One source for both deploy paths: the CloudFormation merge template (``deploy/resources.json``,
whose ARNs are ``Ref``/``GetAtt`` expressions) and ``python -m chalicelib.infra ensure`` (real
ARNs from boto3). ``Arns`` holds whichever form; the statements are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.blobs import UPLOADS

FUNCTIONS = ("api_handler", "worker", "dead_letters")  # Chalice's names for the three Lambda functions

Arn = Any  # an ARN string, or a CloudFormation expression that yields one


@dataclass(frozen=True)
class Arns:
    """The resources a deployment's functions touch."""

    jobs_table: Arn
    jobs_index: Arn
    keys_table: Arn
    keys_index: Arn
    jobs_queue: Arn
    dead_letter_queue: Arn
    payload_bucket: Arn  # the bucket itself (listing a job's uploads)
    payload_objects: Arn  # ``<bucket arn>/*``
    admin_token_secret: Arn
    provider_keys_secret: Arn
    log_group: dict[str, Arn]  # function → its log group (``…:log-group:/aws/lambda/<name>:*``)
    bedrock_models: tuple[Arn, ...]  # foundation models and inference profiles the worker may call


def index_arn(table_arn: str, index: str) -> str:
    return f"{table_arn}/index/{index}"


def bedrock_arns(partition: str, account: str) -> tuple[str, ...]:
    """Foundation models in any region (cross-region inference routes there) and this account's profiles."""
    return (
        f"arn:{partition}:bedrock:*::foundation-model/*",
        f"arn:{partition}:bedrock:*:{account}:inference-profile/*",
    )


def _allow(sid: str, actions: list[str], resources: list[Arn]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}


def _list_uploads(arns: Arns) -> dict[str, Any]:
    """Listing the bucket, only under ``uploads/`` (a cancelled or dead job's files are found so)."""
    statement = _allow("ListUploads", ["s3:ListBucket"], [arns.payload_bucket])
    statement["Condition"] = {"StringLike": {"s3:prefix": [UPLOADS + "*"]}}
    return statement


def statements(function: str, arns: Arns) -> list[dict[str, Any]]:
    """The policy statements of ``function`` (one of ``FUNCTIONS``)."""
    logs = _allow("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [arns.log_group[function]])
    if function == "api_handler":
        return [
            logs,
            _allow(
                "JobsTable",
                ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                [arns.jobs_table],
            ),
            _allow("JobsIndex", ["dynamodb:Query"], [arns.jobs_index]),
            _allow(
                "KeysTable",
                ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"],
                [arns.keys_table],
            ),
            _allow("KeysIndex", ["dynamodb:Query"], [arns.keys_index]),
            _allow("Queue", ["sqs:SendMessage"], [arns.jobs_queue]),
            _allow("Payloads", ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], [arns.payload_objects]),
            _list_uploads(arns),
            _allow("Secrets", ["secretsmanager:GetSecretValue"], [arns.admin_token_secret, arns.provider_keys_secret]),
        ]
    if function == "worker":
        return [
            logs,
            _allow("JobsTable", ["dynamodb:UpdateItem"], [arns.jobs_table]),
            _allow(
                "Queue",
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"],
                [arns.jobs_queue],
            ),
            _allow("Payloads", ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], [arns.payload_objects]),
            _allow("Secrets", ["secretsmanager:GetSecretValue"], [arns.provider_keys_secret]),
            _allow("Bedrock", ["bedrock:InvokeModel"], list(arns.bedrock_models)),
        ]
    if function == "dead_letters":
        return [
            logs,
            _allow("JobsTable", ["dynamodb:GetItem", "dynamodb:UpdateItem"], [arns.jobs_table]),
            _allow(
                "DeadLetterQueue",
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                [arns.dead_letter_queue],
            ),
            _allow("Payloads", ["s3:DeleteObject"], [arns.payload_objects]),
            _list_uploads(arns),
        ]
    raise ValueError(f"unknown function {function!r}")


def policy(function: str, arns: Arns) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements(function, arns)}


ASSUME_ROLE_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
