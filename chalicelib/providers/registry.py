"""The provider registry: provider name → spec, built adapters, and the keys to call them with.

Adding a provider is one module exporting ``SPEC`` plus one entry in ``SPECS``.
The submit path asks only what is known and supported (no adapter is built there);
the worker builds each adapter once per container, on first use, and asks for the
keys of each call here (rotated by the ``KeyRing``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import cached_property

from chalicelib.contract import RequestType
from chalicelib.errors import InternalError
from chalicelib.providers import anthropic, azure, bedrock, cohere, compatible, gemini, mistral, mock, openai
from chalicelib.providers.base import Provider, ProviderEnv, ProviderSpec, missing_key_error
from chalicelib.providers.credentials import KeyRing

SPECS: tuple[ProviderSpec, ...] = (
    mock.SPEC,
    openai.SPEC,
    anthropic.SPEC,
    gemini.SPEC,
    cohere.SPEC,
    mistral.SPEC,
    bedrock.SPEC,
    azure.SPEC,
    *compatible.SPECS,
)


class ProviderRegistry:
    def __init__(
        self,
        specs: Iterable[ProviderSpec],
        env: Callable[[], ProviderEnv],
        keyring: Callable[[], KeyRing] | None = None,
    ) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._env_factory = env
        self._keyring_factory = keyring
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
        spec = self._spec(provider)
        with self._lock:
            if provider not in self._built:
                self._built[provider] = spec.build(self._env)
            return self._built[provider]

    def keys_for(self, provider: str) -> tuple[str | None, ...]:
        """Keys to try for one call, in order; ``(None,)`` for a provider that needs none."""
        spec = self._spec(provider)
        keys = self._keyring.keys(provider, spec.key_variables) if self._keyring_factory else ()
        if keys:
            return keys
        if spec.key_required(self._env):
            raise missing_key_error(spec)
        return (None,)

    def demote_key(self, provider: str, key: str) -> None:
        if self._keyring_factory:
            self._keyring.demote(provider, key)

    def _spec(self, provider: str) -> ProviderSpec:
        spec = self._specs.get(provider)
        if spec is None:
            raise InternalError(f"provider {provider} is not available", code="unknown_provider")
        return spec

    @cached_property
    def _env(self) -> ProviderEnv:
        return self._env_factory()

    @cached_property
    def _keyring(self) -> KeyRing:
        assert self._keyring_factory is not None
        return self._keyring_factory()
