"""Provider keys: environment variables, the Secrets Manager map, rotation and missing keys."""

from __future__ import annotations

import json

import pytest

from chalicelib import aws
from chalicelib.config import Settings
from chalicelib.errors import ProviderError
from chalicelib.providers.base import ProviderEnv
from chalicelib.providers.credentials import KeyRing, parse_secret
from chalicelib.providers.registry import SPECS, ProviderRegistry
from chalicelib.providers.transport import HttpTransport
from chalicelib.wiring import Container
from tests.fakes import FakeClock
from tests.support.aws import AwsStack


def registry(environ: dict[str, str], secret: str | None = None) -> ProviderRegistry:
    env = ProviderEnv(Settings(), environ, HttpTransport(1.0, 1.0), FakeClock())
    loader = (lambda: secret) if secret is not None else None
    return ProviderRegistry(SPECS, lambda: env, lambda: KeyRing(environ, loader))


def test_key_comes_from_the_providers_own_variable() -> None:
    assert registry({"DEEPSEEK_API_KEY": "sk-ds-1"}).keys_for("deepseek") == ("sk-ds-1",)


def test_a_comma_separated_variable_gives_several_keys_rotated_per_call() -> None:
    keys = registry({"GROQ_API_KEY": "g1, g2,g3"})

    firsts = [keys.keys_for("groq")[0] for _ in range(4)]

    assert firsts == ["g1", "g2", "g3", "g1"]
    assert sorted(str(k) for k in keys.keys_for("groq")) == ["g1", "g2", "g3"]


def test_a_demoted_key_is_tried_after_the_others() -> None:
    ring = KeyRing({"OPENAI_API_KEY": "a,b,c"})
    assert ring.keys("openai", ("OPENAI_API_KEY",)) == ("a", "b", "c")

    ring.demote("openai", "b")

    assert ring.keys("openai", ("OPENAI_API_KEY",)) == ("c", "a", "b")


def test_the_secret_map_wins_over_the_environment() -> None:
    secret = json.dumps({"openai": ["s1", "s2"], "deepseek": "s3"})
    keys = registry({"OPENAI_API_KEY": "env-key"}, secret)

    assert sorted(str(k) for k in keys.keys_for("openai")) == ["s1", "s2"]
    assert keys.keys_for("deepseek") == ("s3",)


def test_a_missing_key_is_a_401_naming_the_variable() -> None:
    with pytest.raises(ProviderError) as caught:
        registry({}).keys_for("deepseek")

    assert (caught.value.status, caught.value.code) == (401, "missing_api_key")
    assert "DEEPSEEK_API_KEY" in caught.value.message
    assert caught.value.retryable is False


@pytest.mark.parametrize("provider", ["mock", "ollama", "vllm"])
def test_providers_that_need_no_key_are_called_without_one(provider: str) -> None:
    assert registry({}).keys_for(provider) == (None,)


def test_openai_behind_a_custom_base_url_needs_no_key() -> None:
    assert registry({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}).keys_for("openai") == (None,)


def test_a_malformed_secret_fails_clearly_without_echoing_it() -> None:
    with pytest.raises(ProviderError) as caught:
        parse_secret("sk-not-json")

    assert caught.value.code == "provider_keys_invalid"
    assert "sk-not-json" not in caught.value.message


def test_an_unreadable_secret_is_a_retryable_503() -> None:
    def broken() -> str:
        raise ConnectionError("secrets manager unreachable")

    ring = KeyRing({}, broken)
    with pytest.raises(ProviderError) as caught:
        ring.keys("openai", ("OPENAI_API_KEY",))

    assert (caught.value.status, caught.value.retryable) == (503, True)


def test_the_deployment_reads_the_secret_from_secrets_manager_once(
    aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = aws.client("secretsmanager")
    client.create_secret(Name="asyncgate/provider-keys", SecretString=json.dumps({"together": ["c1", "c2"]}))
    monkeypatch.setenv("ASYNCGATE_PROVIDER_KEYS_SECRET", "asyncgate/provider-keys")
    container = Container(Settings.from_env(), FakeClock())

    first = container.providers.keys_for("together")
    client.put_secret_value(SecretId="asyncgate/provider-keys", SecretString=json.dumps({"together": "changed"}))
    second = container.providers.keys_for("together")

    assert sorted(map(str, first)) == sorted(map(str, second)) == ["c1", "c2"]
