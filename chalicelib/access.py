"""Who may do what: the caller behind a request's virtual key, admitted under its rate limit.

One place decides, for every job route, how a presented key becomes a caller scope
(``keys.Callers``) and whether the caller is within its per-minute limit.
"""

from __future__ import annotations

from chalicelib.keys import Caller, Callers
from chalicelib.rate_limit import RateLimiter


class Access:
    def __init__(self, callers: Callers, limiter: RateLimiter) -> None:
        self._callers = callers
        self._limiter = limiter

    def submitting(self, key: str | None) -> Caller:
        return self._admitted(self._callers.for_submit(key))

    def reading(self, key: str | None) -> Caller:
        return self._admitted(self._callers.for_reading(key))

    def listing(self, key: str | None) -> Caller:
        return self._admitted(self._callers.for_listing(key))

    def _admitted(self, caller: Caller) -> Caller:
        self._limiter.admit(caller)
        return caller
