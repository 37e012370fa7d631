"""Deployment settings read from the environment.

Owns the names and defaults of every ``ASYNCGATE_*`` knob. Settings are read when
``Settings.from_env`` is called (never at import) and are immutable afterwards.
Provider credentials are not settings: each provider reads its own variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from chalicelib.errors import ConfigurationError

DAY_S = 24 * 3600


@dataclass(frozen=True)
class Settings:
    """Everything a deployment may tune, with production defaults."""

    jobs_table: str = "asyncgate-jobs"
    jobs_queue: str = "asyncgate-jobs"
    bucket: str = "asyncgate-payloads"
    keys_table: str = "asyncgate-keys"
    require_virtual_key: bool = False
    key_cache_s: float = 10.0
    admin_token_secret: str = ""
    default_ttl_s: int = 3600
    max_ttl_s: int = 365 * DAY_S
    open_job_horizon_s: int = 3 * DAY_S
    lease_s: int = 330
    max_attempts: int = 5
    inline_retries: int = 2
    retry_base_s: float = 0.5
    retry_max_s: float = 8.0
    requeue_base_s: int = 5
    requeue_max_s: int = 60
    min_call_s: float = 10.0
    provider_connect_timeout_s: float = 5.0
    provider_read_timeout_s: float = 240.0
    max_request_bytes: int = 6_000_000
    inline_limit_bytes: int = 32_768
    max_inline_response_bytes: int = 5_000_000
    worker_threads: int = 10
    provider_keys_secret: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``ASYNCGATE_*`` variables; unset ones keep defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            name = ENV_NAMES[field.name]
            raw = env.get(name, "").strip()
            if not raw:
                continue
            values[field.name] = _coerce(name, raw, field.type)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Reject combinations that would lose or strand jobs."""
        if self.default_ttl_s <= 0 or self.max_ttl_s < self.default_ttl_s:
            raise ConfigurationError("default TTL must be positive and not above the maximum TTL")
        if self.max_attempts < 1 or self.inline_retries < 0:
            raise ConfigurationError("max attempts must be at least 1 and inline retries not negative")
        if self.lease_s <= self.provider_read_timeout_s:
            raise ConfigurationError("the lease must outlast the provider read timeout")
        if not 0 < self.inline_limit_bytes <= 350_000:
            raise ConfigurationError("the inline limit must leave room under DynamoDB's 400 KB item size")
        if self.worker_threads < 1:
            raise ConfigurationError("worker threads must be at least 1")


ENV_NAMES: dict[str, str] = {
    "jobs_table": "ASYNCGATE_JOBS_TABLE",
    "jobs_queue": "ASYNCGATE_JOBS_QUEUE",
    "bucket": "ASYNCGATE_BUCKET",
    "keys_table": "ASYNCGATE_KEYS_TABLE",
    "require_virtual_key": "ASYNCGATE_REQUIRE_VIRTUAL_KEY",
    "key_cache_s": "ASYNCGATE_KEY_CACHE_SECONDS",
    "admin_token_secret": "ASYNCGATE_ADMIN_TOKEN_SECRET",
    "default_ttl_s": "ASYNCGATE_DEFAULT_TTL",
    "max_ttl_s": "ASYNCGATE_MAX_TTL",
    "open_job_horizon_s": "ASYNCGATE_OPEN_JOB_TTL",
    "lease_s": "ASYNCGATE_LEASE_SECONDS",
    "max_attempts": "ASYNCGATE_MAX_ATTEMPTS",
    "inline_retries": "ASYNCGATE_INLINE_RETRIES",
    "retry_base_s": "ASYNCGATE_RETRY_BASE_SECONDS",
    "retry_max_s": "ASYNCGATE_RETRY_MAX_SECONDS",
    "requeue_base_s": "ASYNCGATE_REQUEUE_BASE_SECONDS",
    "requeue_max_s": "ASYNCGATE_REQUEUE_MAX_SECONDS",
    "min_call_s": "ASYNCGATE_MIN_CALL_SECONDS",
    "provider_connect_timeout_s": "ASYNCGATE_PROVIDER_CONNECT_TIMEOUT",
    "provider_read_timeout_s": "ASYNCGATE_PROVIDER_READ_TIMEOUT",
    "max_request_bytes": "ASYNCGATE_MAX_REQUEST_BYTES",
    "inline_limit_bytes": "ASYNCGATE_INLINE_LIMIT_BYTES",
    "max_inline_response_bytes": "ASYNCGATE_MAX_INLINE_RESPONSE_BYTES",
    "worker_threads": "ASYNCGATE_WORKER_THREADS",
    "provider_keys_secret": "ASYNCGATE_PROVIDER_KEYS_SECRET",
}


def _coerce(name: str, raw: str, kind: object) -> object:
    if kind in (bool, "bool"):
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigurationError(f"{name} must be true or false, got {raw!r}")
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    return raw
