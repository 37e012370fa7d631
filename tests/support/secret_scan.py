"""Find secrets in what the gateway wrote: verbatim, JSON-escaped, URL-encoded or base64-encoded.

A corpus is a mapping of "where" (a table item, an object key, a log, a response) to its text.
``leaks`` lists every secret found in any of its encoded forms; base64 is searched at all three
byte alignments, so a secret embedded anywhere inside a larger encoded blob is still found.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import boto3


@dataclass(frozen=True)
class Form:
    label: str
    text: str
    case_sensitive: bool


def _base64_cores(raw: bytes) -> list[tuple[str, str]]:
    """The base64 characters that depend only on ``raw``, for each alignment of ``raw`` in a larger blob."""
    cores: list[tuple[str, str]] = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        core = encoded[-(-4 * offset // 3) : (offset + len(raw)) * 8 // 6]
        cores += [(f"base64@{offset}", core), (f"base64url@{offset}", core.replace("+", "-").replace("/", "_"))]
    return cores


def forms(secret: str) -> list[Form]:
    """Every form of ``secret`` to search for."""
    plain = {
        "verbatim": secret,
        "json-escaped": json.dumps(secret)[1:-1],
        "url-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret),
    }
    found = [Form(label, text, False) for label, text in plain.items()]
    return found + [Form(label, text, True) for label, text in _base64_cores(secret.encode())]


def leaks(secrets: Mapping[str, str], corpus: Mapping[str, str]) -> list[str]:
    """``"<secret name> as <form> in <where>"`` for every secret form found in the corpus."""
    searched = [(name, form) for name, secret in secrets.items() for form in forms(secret)]
    found = []
    for where, text in corpus.items():
        lowered = text.lower()
        for name, form in searched:
            hit = form.text in text if form.case_sensitive else form.text.lower() in lowered
            if hit:
                found.append(f"{name} as {form.label} in {where}")
    return found


def flatten(value: Any) -> str:
    """Any JSON-like value (a DynamoDB item, a response) as one searchable text."""
    return json.dumps(value, default=repr, ensure_ascii=False, sort_keys=True)


def log_text(records: Iterable[logging.LogRecord]) -> str:
    """Log records as they would be printed, tracebacks included."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


def aws_dump(endpoint: str) -> dict[str, str]:
    """Everything an (embedded) AWS endpoint holds: every table item, S3 object and queued message.

    Keys are ``"dynamodb <table> <n>"``, ``"s3 <bucket>/<key>"`` and ``"sqs <queue> <n>"``. Queued
    messages are received (and so hidden for a minute), not deleted.
    """
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    dynamodb, s3, sqs = (session.client(name, endpoint_url=endpoint) for name in ("dynamodb", "s3", "sqs"))
    dumped: dict[str, str] = {}
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page.get("Items", []):
                dumped[f"dynamodb {table} {len(dumped)}"] = flatten(item)
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for listed in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=listed["Key"])
                head = flatten({"metadata": got.get("Metadata"), "type": got.get("ContentType")})
                dumped[f"s3 {bucket}/{listed['Key']}"] = head + got["Body"].read().decode("latin-1")
    for url in sqs.list_queues().get("QueueUrls", []):
        while messages := sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", []):
            for message in messages:
                dumped[f"sqs {url.rsplit('/', 1)[-1]} {len(dumped)}"] = flatten(message)
    return dumped
