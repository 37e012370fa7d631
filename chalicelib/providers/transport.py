"""The only module that talks HTTP to providers (through ``requests``).

Owns connection pooling, connect/read timeouts and the translation of network
failures into ``ProviderError`` (timeouts → 504, unreachable → 502). A caller may
bound every request made in a block with ``time_limit`` (the worker does, so no call
outlives the Lambda). It never logs or returns headers, URLs or bodies, so keys in
them cannot leak.
"""

from __future__ import annotations

import contextvars
import email.utils
import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from chalicelib.errors import ProviderError


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.content)

    def json_object(self) -> dict[str, Any]:
        """The reply as a JSON object; anything else from a provider is a 502."""
        try:
            result = self.json()
        except ValueError:
            raise ProviderError(
                "provider returned a body that is not JSON", status=502, code="invalid_response"
            ) from None
        if not isinstance(result, dict):
            raise ProviderError("provider returned an unexpected body", status=502, code="invalid_response")
        return result

    def retry_after_s(self) -> float | None:
        return retry_after_seconds(self.headers)


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("provider_deadline", default=None)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Every request made in this block (in this thread) must end within ``seconds``."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining_time_s(default: float) -> float:
    """What is left of the current ``time_limit`` (``default`` outside one), never negative."""
    deadline = _deadline.get()
    return default if deadline is None else max(0.0, min(default, deadline - time.monotonic()))


class HttpTransport:
    def __init__(self, connect_timeout_s: float, read_timeout_s: float, pool_size: int = 10) -> None:
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    def post(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
    ) -> HttpResponse:
        return self.request("POST", url, headers=headers, json_body=json_body, data=data, files=files)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
    ) -> HttpResponse:
        read_timeout = remaining_time_s(self._timeout[1])
        if read_timeout <= 0:
            raise _timed_out(0)
        try:
            reply = self._session.request(
                method,
                url,
                headers=dict(headers),
                json=json_body,
                data=data,
                files=files,
                timeout=(min(self._timeout[0], read_timeout), read_timeout),
                allow_redirects=False,
            )
        except requests.Timeout:
            raise _timed_out(read_timeout) from None
        except requests.ConnectionError:
            raise ProviderError("could not connect to the provider", status=502, code="provider_unreachable") from None
        except requests.RequestException:
            raise ProviderError("the provider request failed", status=502, code="provider_request_failed") from None
        return HttpResponse(reply.status_code, reply.headers, reply.content)


def _timed_out(seconds: float) -> ProviderError:
    return ProviderError(
        f"provider did not answer within {seconds:g} seconds",
        status=504,
        error_type="timeout_error",
        code="provider_timeout",
    )


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The provider's wait hint: ``retry-after-ms``, or ``Retry-After`` as seconds or a date."""
    millis = _seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _seconds(value: str | None) -> float | None:
    try:
        number = float(value or "")
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None
