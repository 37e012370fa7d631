"""Settings from the environment: defaults, overrides, malformed values and the safety rules."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from chalicelib.config import ENV_NAMES, Settings
from chalicelib.errors import ConfigurationError


def test_empty_environment_gives_production_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.default_ttl_s == 3600
    assert settings.jobs_table == "asyncgate-jobs"
    assert settings.max_attempts >= 1


def test_every_setting_has_an_asyncgate_variable() -> None:
    assert set(ENV_NAMES) == {f.name for f in fields(Settings)}
    assert all(name.startswith("ASYNCGATE_") for name in ENV_NAMES.values())


def test_variables_override_defaults_with_their_types() -> None:
    settings = Settings.from_env(
        {
            "ASYNCGATE_JOBS_TABLE": "jobs-prod",
            "ASYNCGATE_JOBS_QUEUE": "https://sqs.us-east-1.amazonaws.com/123/jobs",
            "ASYNCGATE_DEFAULT_TTL": "60",
            "ASYNCGATE_MAX_ATTEMPTS": " 3 ",
            "ASYNCGATE_RETRY_BASE_SECONDS": "0.25",
            "ASYNCGATE_PROVIDER_READ_TIMEOUT": "100",
        }
    )

    assert settings.jobs_table == "jobs-prod"
    assert settings.jobs_queue == "https://sqs.us-east-1.amazonaws.com/123/jobs"
    assert settings.default_ttl_s == 60
    assert settings.max_attempts == 3
    assert settings.retry_base_s == 0.25
    assert settings.provider_read_timeout_s == 100.0
    assert type(settings.default_ttl_s) is int
    assert type(settings.provider_read_timeout_s) is float


def test_blank_variables_keep_defaults() -> None:
    settings = Settings.from_env({"ASYNCGATE_DEFAULT_TTL": "", "ASYNCGATE_JOBS_TABLE": "   "})

    assert settings == Settings()


def test_from_env_reads_the_process_environment_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCGATE_DEFAULT_TTL", "120")
    monkeypatch.setenv("ASYNCGATE_WORKER_THREADS", "4")

    settings = Settings.from_env()

    assert settings.default_ttl_s == 120
    assert settings.worker_threads == 4


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ASYNCGATE_DEFAULT_TTL", "an hour"),
        ("ASYNCGATE_DEFAULT_TTL", "1.5"),
        ("ASYNCGATE_MAX_ATTEMPTS", "5x"),
        ("ASYNCGATE_WORKER_THREADS", "ten"),
        ("ASYNCGATE_RETRY_BASE_SECONDS", "half"),
        ("ASYNCGATE_PROVIDER_READ_TIMEOUT", "1,5"),
    ],
)
def test_malformed_numbers_raise_configuration_error(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({name: raw})


@pytest.mark.parametrize(
    "broken",
    [
        {"default_ttl_s": 0},
        {"default_ttl_s": -1},
        {"max_ttl_s": 60, "default_ttl_s": 3600},
        {"max_attempts": 0},
        {"inline_retries": -1},
        {"lease_s": 240, "provider_read_timeout_s": 240.0},
        {"lease_s": 100},
        {"worker_threads": 0},
    ],
)
def test_check_rejects_settings_that_would_lose_or_strand_jobs(broken: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        replace(Settings(), **broken).check()


def test_check_accepts_the_defaults_and_edge_values() -> None:
    Settings().check()
    Settings(default_ttl_s=60, max_ttl_s=60, max_attempts=1, inline_retries=0, worker_threads=1).check()
    Settings(lease_s=241, provider_read_timeout_s=240.0).check()


def test_from_env_applies_the_check() -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({"ASYNCGATE_LEASE_SECONDS": "60"})
    with pytest.raises(ConfigurationError):
        Settings.from_env({"ASYNCGATE_MAX_TTL": "10"})
