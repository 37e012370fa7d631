"""What every provider adapter is: a spec in the registry and an ``invoke`` call.

An adapter translates one OpenAI-style request into its provider's API and the reply
back into the OpenAI-style result for that request type. It raises ``ProviderError``
for anything that is not a result, and makes no retry, fallback or key-choice
decisions: the worker picks the key (``ProviderCall.api_key``) and decides what next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.clock import Clock
from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.multipart import Files
from chalicelib.providers.transport import HttpTransport


@dataclass(frozen=True)
class ProviderCall:
    request_type: RequestType
    model: str
    body: Mapping[str, Any]
    attempt: int = 1
    api_key: str | None = None
    files: Files = field(default_factory=dict)


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

    def variable(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def base_url(self, provider: str, default: str, *, strip: str = "", ensure: str = "") -> str:
        """``<PROVIDER>_BASE_URL`` if set, else the provider's documented root.

        ``strip`` drops a version segment a user may have added to a root that must not
        carry one (``/v1`` on Anthropic's); ``ensure`` adds one a root must carry.
        """
        url = (self.variable(f"{provider.upper()}_BASE_URL") or default).rstrip("/")
        if strip and url.endswith(strip):
            url = url[: -len(strip)]
        if ensure and not url.endswith(ensure):
            url += ensure
        return url


def key_needed(env: ProviderEnv) -> bool:
    return True


def no_key_needed(env: ProviderEnv) -> bool:
    return False


@dataclass(frozen=True)
class ProviderSpec:
    """A registry entry. ``key_variables`` name where keys live; the first is canonical."""

    name: str
    request_types: frozenset[RequestType]
    build: Callable[[ProviderEnv], Provider]
    key_variables: tuple[str, ...] = ()
    key_required: Callable[[ProviderEnv], bool] = key_needed

    def __post_init__(self) -> None:
        if not self.key_variables:
            object.__setattr__(self, "key_variables", (f"{self.name.upper()}_API_KEY",))


def missing_key_error(spec: ProviderSpec) -> ProviderError:
    return ProviderError(
        f"no API key is configured for provider {spec.name} (set {spec.key_variables[0]})",
        status=401,
        error_type="authentication_error",
        code="missing_api_key",
    )
