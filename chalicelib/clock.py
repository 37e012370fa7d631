"""Time as a port: the system clock, and the contract's timestamp format.

Domain code asks a ``Clock`` for the time and for sleeps so tests can run on a fake
clock. Timestamps are kept as integer epoch milliseconds and rendered as RFC 3339
UTC with a ``Z`` suffix and millisecond precision.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def now_ms(clock: Clock) -> int:
    return int(clock.now() * 1000)


def rfc3339(epoch_ms: int) -> str:
    """``2026-11-25T10:00:00.123Z`` for an epoch-milliseconds value."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
