"""Shared fixtures: a moto-backed AWS with the stack's resources, and the Chalice test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import wiring
from tests.support.aws import PROJECT_DIR, AwsStack, fake_aws_environment


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    """moto in-process with the jobs table, queues and bucket of the ``local`` stage."""
    fake_aws_environment(monkeypatch)
    with mock_aws():
        wiring.reset()
        yield AwsStack.create()
        wiring.reset()


@pytest.fixture
def client(aws_stack: AwsStack) -> Iterator[Client]:
    from app import app

    with Client(app, project_dir=str(PROJECT_DIR), stage_name="local") as test_client:
        yield test_client
