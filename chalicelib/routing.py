"""One delivery attempt's route through a job's targets: the primary model, then its fallbacks.

For each target: pick keys (rotating past a key the provider refused, or throttled with
429), retry retryable failures (408/409/429/5xx, timeouts, connection errors) with
capped exponential backoff and jitter honouring ``Retry-After``, and move to the next
target when the failure is retryable or provider-side (401/403/404). A request the
provider rejects as invalid ends the route at once. Every call is bounded by the
attempt's deadline; when time runs out the route says where the next attempt resumes.
The route decides nothing about the job's state: the worker does that with its outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.clock import Clock
from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.multipart import Files
from chalicelib.providers.base import Provider, ProviderCall
from chalicelib.validation import ModelRef

log = logging.getLogger(__name__)

PROVIDER_SIDE_STATUSES = frozenset({401, 403, 404})


class ProviderSource(Protocol):
    def get(self, provider: str) -> Provider: ...

    def keys_for(self, provider: str) -> tuple[str | None, ...]: ...

    def demote_key(self, provider: str, key: str) -> None: ...


@dataclass(frozen=True)
class Served:
    result: dict[str, Any]
    target: ModelRef
    latency_ms: int


@dataclass(frozen=True)
class Failed:
    """The route ended on ``error``; ``retry_from`` is where a new attempt should start, if any."""

    error: ProviderError
    target: ModelRef
    retry_from: int | None


RouteOutcome = Served | Failed


class _OutOfTime(Exception):
    def __init__(self, error: ProviderError) -> None:
        self.error = error


def falls_back(error: ProviderError) -> bool:
    """Worth trying the next target: a retryable or provider-side failure."""
    return error.retryable or error.key_rejected or error.status in PROVIDER_SIDE_STATUSES


def rotates_key(error: ProviderError) -> bool:
    """Worth trying another key: this one was refused or throttled."""
    return error.key_rejected or error.status == 429


class Router:
    def __init__(
        self,
        providers: ProviderSource,
        settings: Settings,
        clock: Clock,
        jitter: Callable[[], float],
        time_limit: Callable[[float], AbstractContextManager[None]],
    ) -> None:
        self._providers = providers
        self._settings = settings
        self._clock = clock
        self._jitter = jitter
        self._time_limit = time_limit

    def route(
        self,
        request_type: RequestType,
        body: Mapping[str, Any],
        files: Files,
        targets: Sequence[ModelRef],
        start: int,
        attempt: int,
        deadline: float,
    ) -> RouteOutcome:
        """Try ``targets[start:]`` in order until one serves the request."""
        last: Failed | None = None
        retryable_seen = False
        for index in range(min(start, len(targets) - 1), len(targets)):
            target = targets[index]
            try:
                return self._serve(request_type, body, files, target, attempt, deadline)
            except _OutOfTime as stop:
                return Failed(stop.error, target, retry_from=index)
            except ProviderError as error:
                last = Failed(error, target, retry_from=None)
                retryable_seen = retryable_seen or error.retryable
                if not falls_back(error):
                    break
                log.info("target %s failed with %d; trying the next", target, error.status)
        assert last is not None, "a job always has a target"
        return Failed(last.error, last.target, retry_from=0 if retryable_seen and falls_back(last.error) else None)

    def _serve(
        self,
        request_type: RequestType,
        body: Mapping[str, Any],
        files: Files,
        target: ModelRef,
        attempt: int,
        deadline: float,
    ) -> Served:
        adapter = self._providers.get(target.provider)
        keys = list(self._providers.keys_for(target.provider))
        retry = 0
        while True:
            key = keys[0]
            call = ProviderCall(request_type, target.model, body, attempt, key, files)
            remaining = deadline - self._clock.now()
            if remaining < self._settings.min_call_s:
                raise _OutOfTime(ProviderError("the attempt ran out of time", status=504, code="attempt_budget_spent"))
            started = self._clock.now()
            try:
                with self._time_limit(remaining):
                    result = adapter.invoke(call)
                return Served(result, target, int((self._clock.now() - started) * 1000))
            except ProviderError as error:
                if key is not None and rotates_key(error) and len(keys) > 1:
                    self._providers.demote_key(target.provider, key)
                    keys.pop(0)
                    log.info("provider %s refused a key with %d; rotating", target.provider, error.status)
                    continue
                if not error.retryable or retry >= self._settings.inline_retries:
                    raise
                delay = self.backoff(retry, error.retry_after_s)
                if self._clock.now() + delay + self._settings.min_call_s > deadline:
                    raise _OutOfTime(error) from None
                log.info("provider %s answered %d; retrying in %.2fs", target.provider, error.status, delay)
                self._clock.sleep(delay)
                retry += 1

    def backoff(self, retry: int, hint_s: float | None) -> float:
        """Capped exponential backoff with equal jitter, never shorter than the provider's hint."""
        ceiling = min(self._settings.retry_max_s, self._settings.retry_base_s * 2.0**retry)
        delay = ceiling / 2 + self._jitter() * ceiling / 2
        return max(delay, hint_s or 0.0)
