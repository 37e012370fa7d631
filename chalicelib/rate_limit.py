"""Per-key request limits (requests per minute, set per key), counted in the keys table.

A key without a limit costs nothing; a key with one costs a conditional counter write per
request, so the limit holds across every Lambda container. Over the limit: 429 with
``Retry-After`` set to the seconds left in the current minute.
"""

from __future__ import annotations

from typing import Protocol

from chalicelib.clock import Clock
from chalicelib.errors import GatewayError
from chalicelib.keys import Caller


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Counter(Protocol):
    def count_request(self, key_id: str, window_s: int, limit: int) -> bool: ...


class RateLimiter:
    def __init__(self, counter: Counter, clock: Clock) -> None:
        self._counter = counter
        self._clock = clock

    def admit(self, caller: Caller) -> None:
        limit = caller.key.rate_limit_per_minute if caller.key is not None else None
        if caller.key is None or limit is None:
            return
        now = self._clock.now()
        window = int(now) // 60 * 60
        if not self._counter.count_request(caller.key.id, window, limit):
            retry_after = max(1, window + 60 - int(now))
            raise RateLimited(f"this key allows {limit} requests per minute", retry_after)
