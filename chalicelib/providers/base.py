"""What every provider adapter is: a spec in the registry and an ``invoke`` call.

An adapter translates one OpenAI-style request into its provider's API and the reply
back into the OpenAI-style result for that request type. It raises ``ProviderError``
for anything that is not a result, and makes no retry or fallback decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.clock import Clock
from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.providers.transport import HttpTransport


@dataclass(frozen=True)
class ProviderCall:
    request_type: RequestType
    model: str
    body: Mapping[str, Any]
    attempt: int = 1


class Provider(Protocol):
    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        """The OpenAI-style result for ``call``, without ``extra_fields``."""
        ...


@dataclass(frozen=True)
class ProviderEnv:
    """What a provider may be built from: settings, environment, transport, clock."""

    settings: Settings
    environ: Mapping[str, str]
    transport: HttpTransport
    clock: Clock

    def base_url(self, provider: str, default: str) -> str:
        """``<PROVIDER>_BASE_URL`` if set, else the provider's documented root."""
        value = self.environ.get(f"{provider.upper()}_BASE_URL", "").strip()
        return (value or default).rstrip("/")

    def api_key(self, provider: str) -> str | None:
        value = self.environ.get(f"{provider.upper()}_API_KEY", "").strip()
        return value or None


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    request_types: frozenset[RequestType]
    build: Callable[[ProviderEnv], Provider]
