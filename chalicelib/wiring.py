"""The one place that builds the object graph: settings, AWS adapters, providers, services.

Built on first use inside a handler (never at import), then cached for the life of the
Lambda container. ``reset()`` drops the cache so tests can rebuild under new settings.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cached_property

from chalicelib import aws
from chalicelib.access import Access
from chalicelib.blobs import S3BlobStore
from chalicelib.clock import Clock, SystemClock
from chalicelib.config import Settings
from chalicelib.dead_letters import DeadLetters
from chalicelib.files import FilesService
from chalicelib.job_queue import SqsJobQueue
from chalicelib.key_admin import AdminToken, KeyAdmin
from chalicelib.key_store import CachedKeys, DynamoKeyStore
from chalicelib.keys import Callers
from chalicelib.payloads import Payloads
from chalicelib.providers.base import ProviderEnv
from chalicelib.providers.credentials import KeyRing
from chalicelib.providers.registry import SPECS, ProviderRegistry
from chalicelib.providers.transport import HttpTransport
from chalicelib.rate_limit import RateLimiter
from chalicelib.secrets import read_secret
from chalicelib.service import JobService
from chalicelib.store import DynamoJobStore
from chalicelib.worker import Worker


@dataclass
class Container:
    settings: Settings
    clock: Clock

    @cached_property
    def store(self) -> DynamoJobStore:
        return DynamoJobStore(aws.client("dynamodb"), self.settings.jobs_table)

    @cached_property
    def queue(self) -> SqsJobQueue:
        return SqsJobQueue(aws.client("sqs"), self.settings.jobs_queue)

    @cached_property
    def providers(self) -> ProviderRegistry:
        return ProviderRegistry(SPECS, self._provider_env, self._keyring)

    @cached_property
    def payloads(self) -> Payloads:
        return Payloads(S3BlobStore(aws.client("s3"), self.settings.bucket), self.settings)

    @cached_property
    def keys(self) -> DynamoKeyStore:
        return DynamoKeyStore(aws.client("dynamodb"), self.settings.keys_table)

    @cached_property
    def access(self) -> Access:
        callers = Callers(CachedKeys(self.keys, self.settings.key_cache_s), self.settings.require_virtual_key)
        return Access(callers, RateLimiter(self.keys, self.clock))

    @cached_property
    def key_admin(self) -> KeyAdmin:
        return KeyAdmin(self.keys, self.clock)

    @cached_property
    def admin_token(self) -> AdminToken:
        secret_id = self.settings.admin_token_secret

        def load() -> str | None:
            if secret_id:
                return read_secret(secret_id)
            return os.environ.get("ASYNCGATE_ADMIN_TOKEN") or None

        return AdminToken(load)

    @cached_property
    def service(self) -> JobService:
        return JobService(self.store, self.queue, self.payloads, self.access, self.providers, self.settings, self.clock)

    @cached_property
    def worker(self) -> Worker:
        return Worker(self.store, self.queue, self.payloads, self.providers, self.settings, self.clock)

    @cached_property
    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.store, self.payloads, self.clock)

    @cached_property
    def files(self) -> FilesService:
        return FilesService(self._provider_env, self.providers)

    @cached_property
    def transport(self) -> HttpTransport:
        return HttpTransport(
            self.settings.provider_connect_timeout_s,
            self.settings.provider_read_timeout_s,
            pool_size=self.settings.worker_threads,
        )

    def _provider_env(self) -> ProviderEnv:
        return ProviderEnv(self.settings, dict(os.environ), self.transport, self.clock)

    def _keyring(self) -> KeyRing:
        secret_id = self.settings.provider_keys_secret
        if not secret_id:
            return KeyRing(dict(os.environ))

        return KeyRing(dict(os.environ), lambda: read_secret(secret_id))


_lock = threading.Lock()
_container: Container | None = None


def container() -> Container:
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                _container = Container(Settings.from_env(), SystemClock())
    return _container


def reset() -> None:
    global _container
    with _lock:
        _container = None
    aws.reset()
