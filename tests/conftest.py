"""Shared fixtures: a moto-backed AWS with the stack's resources, and the Chalice test client.

moto evaluates a DynamoDB condition and writes without a lock, so two worker threads could
both win one conditional claim; DynamoDB serialises writes to an item. As the local stack
does (``local_aws.SerialDynamoDB``), DynamoDB requests here run one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from chalicelib import wiring
from tests.support.aws import PROJECT_DIR, AwsStack, fake_aws_environment

_DYNAMODB_LOCK = threading.Lock()
_unlocked_call_action = DynamoHandler.call_action


def _serial_call_action(self: DynamoHandler) -> Any:
    with _DYNAMODB_LOCK:
        return _unlocked_call_action(self)


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    """moto in-process with the jobs table, queues and bucket of the ``local`` stage."""
    fake_aws_environment(monkeypatch)
    monkeypatch.setattr(DynamoHandler, "call_action", _serial_call_action)
    with mock_aws():
        wiring.reset()
        yield AwsStack.create()
        wiring.reset()


@pytest.fixture
def client(aws_stack: AwsStack) -> Iterator[Client]:
    from app import app

    with Client(app, project_dir=str(PROJECT_DIR), stage_name="local") as test_client:
        yield test_client
