"""The provider registry: a dict from provider name to its spec, and built adapters.

Adding a provider is one module exporting ``SPEC`` plus one entry in ``SPECS``.
The submit path asks only what is known and supported (no adapter is built there);
the worker builds each adapter once per container, on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from chalicelib.contract import RequestType
from chalicelib.errors import InternalError
from chalicelib.providers import mock, openai
from chalicelib.providers.base import Provider, ProviderEnv, ProviderSpec

SPECS: tuple[ProviderSpec, ...] = (mock.SPEC, openai.SPEC)


class ProviderRegistry:
    def __init__(self, specs: Iterable[ProviderSpec], env: Callable[[], ProviderEnv]) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._env = env
        self._built: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def is_known(self, provider: str) -> bool:
        return provider in self._specs

    def supports(self, provider: str, request_type: RequestType) -> bool:
        spec = self._specs.get(provider)
        return spec is not None and request_type in spec.request_types

    def get(self, provider: str) -> Provider:
        built = self._built.get(provider)
        if built is not None:
            return built
        if provider not in self._specs:
            raise InternalError(f"provider {provider} is not available", code="unknown_provider")
        with self._lock:
            if provider not in self._built:
                self._built[provider] = self._specs[provider].build(self._env())
            return self._built[provider]
