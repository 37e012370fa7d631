"""Fault-test fixtures: fast retry settings for every test, and fake OpenAI servers wired in.

The settings go into the environment before the moto stack is made (autouse runs first), so the
jobs queue's ``maxReceiveCount`` follows ``ASYNCGATE_MAX_ATTEMPTS`` too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.support import API_KEY, HeldOpenAIFake
from tests.support.aws import AwsStack
from tests.support.openai_fake import OpenAIFake

MAX_ATTEMPTS = 3
INLINE_RETRIES = 1
FAST_SETTINGS = {
    "ASYNCGATE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "ASYNCGATE_INLINE_RETRIES": str(INLINE_RETRIES),
    "ASYNCGATE_RETRY_BASE_SECONDS": "0.001",
    "ASYNCGATE_RETRY_MAX_SECONDS": "0.002",
}


@pytest.fixture(autouse=True)
def fast_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_SETTINGS.items():
        monkeypatch.setenv(name, value)


def _wire(fake: OpenAIFake, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in fake.environ().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def openai(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIFake]:
    """A fake OpenAI the gateway's ``openai`` provider talks to."""
    with OpenAIFake(api_key=API_KEY) as fake:
        _wire(fake, monkeypatch)
        yield fake


@pytest.fixture
def held_openai(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldOpenAIFake]:
    """A fake OpenAI whose first chat answer waits for ``release()``."""
    with HeldOpenAIFake() as fake:
        _wire(fake, monkeypatch)
        yield fake
