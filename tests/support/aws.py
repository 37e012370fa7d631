"""Test support for the AWS side: fake credentials, the stack's resources in moto, a queue drainer."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import aws, infra
from chalicelib.config import Settings
from chalicelib.sqs_poller import SqsPoller

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROVIDER_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AWS_ENDPOINT_URL", "AWS_PROFILE")


def local_stage_environment() -> dict[str, str]:
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    merged: dict[str, str] = dict(config.get("environment_variables", {}))
    merged.update(config["stages"]["local"]["environment_variables"])
    return merged


def without_aws(**extra: str) -> dict[str, str]:
    """This process's environment with every ``AWS_*`` variable removed, plus ``extra``."""
    return {**{name: value for name, value in os.environ.items() if not name.startswith("AWS_")}, **extra}


def no_credentials_environment(scratch: Path) -> dict[str, str]:
    """An environment in which boto3 finds no credentials anywhere (files empty, no IMDS), fast."""
    (scratch / "credentials").write_text("")
    (scratch / "config").write_text("")
    return without_aws(
        AWS_SHARED_CREDENTIALS_FILE=str(scratch / "credentials"),
        AWS_CONFIG_FILE=str(scratch / "config"),
        AWS_EC2_METADATA_DISABLED="true",
    )


def fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that cannot reach AWS, the local stage's resource names, no provider keys."""
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name, value in local_stage_environment().items():
        monkeypatch.setenv(name, value)


@dataclass
class AwsStack:
    settings: Settings
    queue_url: str
    dlq_url: str
    _handed_out: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> AwsStack:
        settings = Settings.from_env()
        urls = infra.ensure(settings, aws.client("dynamodb"), aws.client("sqs"), aws.client("s3"))
        return cls(settings, urls["queue_url"], urls["dlq_url"])

    def item(self, job_id: str) -> dict[str, Any] | None:
        found = aws.client("dynamodb").get_item(TableName=self.settings.jobs_table, Key={"id": {"S": job_id}})
        item: dict[str, Any] | None = found.get("Item")
        return item

    def item_count(self) -> int:
        return int(aws.client("dynamodb").scan(TableName=self.settings.jobs_table, Select="COUNT")["Count"])

    def queued_messages(self) -> int:
        attributes = aws.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def make_all_visible(self) -> None:
        """Return every message the worker handed back to the queue now, instead of waiting out its delay."""
        sqs = aws.client("sqs")
        for handle in self._handed_out:
            with contextlib.suppress(ClientError):  # a deleted message: its job finished
                sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        self._handed_out.clear()

    def run_worker(self, rounds: int = 20) -> int:
        """Feed visible messages to the worker handler as Lambda would; returns messages handled."""
        from app import app

        def handler(event: dict[str, Any], context: Any) -> Any:
            self._handed_out.extend(record["receiptHandle"] for record in event["Records"])
            return app.handler_map["worker"](event, context)

        poller = SqsPoller(aws.client("sqs"), self.queue_url, handler, "worker", 300, wait_s=0)
        handled = 0
        for _ in range(rounds):
            count = poller.poll_once()
            if count == 0:
                break
            handled += count
        return handled
