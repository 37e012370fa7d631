"""The offline ``mock`` provider: deterministic results, with latency and failures on demand.

The model name picks the behaviour (documented in the README):

- ``mock/echo`` (and any name not listed below): answers at once, echoing the input.
- ``mock/sleep-<N>ms`` or ``mock/sleep-<N>s``: waits that long, then echoes.
- ``mock/fail-<status>``: fails every attempt with that HTTP status, in OpenAI's error shape
  (429 and 5xx are retryable, so those jobs fail only after the retry budget).
- ``mock/flaky-<N>``: fails the first N delivery attempts with 503, then echoes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chalicelib.clock import Clock
from chalicelib.errors import ProviderError
from chalicelib.providers.base import Provider, ProviderCall, ProviderEnv, ProviderSpec, no_key_needed
from chalicelib.providers.mock_results import BUILDERS, FORM_BUILDERS, build_result

_SLEEP = re.compile(r"^sleep-(\d{1,7})(ms|s)$")
_FAIL = re.compile(r"^fail-([1-5]\d\d)$")
_FLAKY = re.compile(r"^flaky-(\d{1,3})$")
MAX_SLEEP_S = 900.0


@dataclass(frozen=True)
class Behaviour:
    sleep_s: float = 0.0
    fail_status: int | None = None
    failing_attempts: int = 0


def behaviour_for(model: str) -> Behaviour:
    if match := _SLEEP.match(model):
        amount = int(match.group(1))
        return Behaviour(sleep_s=min(MAX_SLEEP_S, amount / 1000 if match.group(2) == "ms" else amount))
    if match := _FAIL.match(model):
        return Behaviour(fail_status=int(match.group(1)))
    if match := _FLAKY.match(model):
        count = int(match.group(1))
        return Behaviour(fail_status=503, failing_attempts=count) if count else Behaviour()
    return Behaviour()


class MockProvider:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        behaviour = behaviour_for(call.model)
        if behaviour.sleep_s:
            self._clock.sleep(behaviour.sleep_s)
        if behaviour.fail_status is not None and (
            behaviour.failing_attempts == 0 or call.attempt <= behaviour.failing_attempts
        ):
            raise mock_error(behaviour.fail_status)
        return build_result(call.request_type, call.body, call.files, call.model, int(self._clock.now()))


def mock_error(status: int) -> ProviderError:
    """The error OpenAI would send for ``status``, as the adapter would parse it."""
    kind, code, message = _ERRORS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, f"mock failure with status {status}"),
    )
    return ProviderError(
        message,
        status=status,
        error_type=kind,
        code=code,
        retry_after_s=1.0 if status == 429 else None,
    )


_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", "invalid_value", "mock rejected the request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", "unsupported_country_region_territory", "mock refused the request"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _build(env: ProviderEnv) -> Provider:
    return MockProvider(env.clock)


SPEC = ProviderSpec("mock", frozenset(BUILDERS) | frozenset(FORM_BUILDERS), _build, key_required=no_key_needed)
