"""The only module that talks HTTP to providers (through ``requests``).

Owns connection pooling, connect/read timeouts and the translation of network
failures into ``ProviderError`` (timeouts → 504, unreachable → 502). It never logs
or returns headers, URLs or bodies, so keys in them cannot leak.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
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

    def retry_after_s(self) -> float | None:
        return retry_after_seconds(self.headers)


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
        files: Mapping[str, Any] | None = None,
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
        files: Mapping[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            reply = self._session.request(
                method,
                url,
                headers=dict(headers),
                json=json_body,
                data=data,
                files=files,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise ProviderError(
                f"provider did not answer within {self._timeout[1]:g} seconds",
                status=504,
                error_type="timeout_error",
                code="provider_timeout",
            ) from None
        except requests.ConnectionError:
            raise ProviderError("could not connect to the provider", status=502, code="provider_unreachable") from None
        except requests.RequestException:
            raise ProviderError("the provider request failed", status=502, code="provider_request_failed") from None
        return HttpResponse(reply.status_code, reply.headers, reply.content)


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
