"""End to end: every provider adapter through the local stack against its loopback fake.

One stack serves the whole module, its environment merged from every fake's ``environ()``:
one OpenAIFake (with a key) serves openai and the keyed OpenAI-compatible family, a
keyless one serves ollama (given the bare root, so the gateway must add ``/v1``) and vllm,
and each native provider has its own fake. Every (provider, request type) pair the
registry declares completes a job (the multipart types are submitted as forms, and the fake
must receive the exact file bytes and fields); scripted provider errors end jobs failed with the
contract's §4 error; a provider answering 503 for ever falls back to ``mock/echo`` (or,
without fallbacks, fails with its 503 after the last attempt); no provider key leaks.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from chalicelib.contract import BY_TYPE, RequestType
from chalicelib.providers import azure, cohere, mistral, openai
from chalicelib.providers.registry import SPECS
from tests.support import gemini_fake, mistral_fake, openai_fake
from tests.support.anthropic_fake import AnthropicFake
from tests.support.azure_fake import DEPLOYMENT_NOT_FOUND, RESPONSES_PATH, AzureOpenAIFake, deployment_path
from tests.support.bedrock_fake import BedrockFake, converse_path, invoke_path
from tests.support.cohere_fake import CohereFake
from tests.support.fake_http import FakeHttpServer, RecordedRequest
from tests.support.gemini_fake import GeminiFake, embed_path, generate_path
from tests.support.local_stack import LocalStackProcess, local_stack
from tests.support.mistral_fake import MistralFake
from tests.support.openai_fake import OpenAIFake, ReceivedForm

pytestmark = pytest.mark.e2e

RT = RequestType
JSON = {"Content-Type": "application/json"}
COMPATIBLE_KEY = "sk-compat-e2e-7f3a9c1d2b4e"
KEYED_FAMILY = ("openai", "groq", "together", "fireworks", "deepseek", "xai", "openrouter", "perplexity", "cerebras")
SELF_HOSTED = ("ollama", "vllm")
FAST_RETRIES = {
    "ASYNCGATE_RETRY_BASE_SECONDS": "0.01",
    "ASYNCGATE_REQUEUE_BASE_SECONDS": "1",
    "ASYNCGATE_REQUEUE_MAX_SECONDS": "1",
    "ASYNCGATE_MAX_ATTEMPTS": "2",
    "ASYNCGATE_INLINE_RETRIES": "2",
}
CALLS_PER_ATTEMPT = 3  # the first call and two inline retries
BEDROCK_CHAT = "anthropic.claude-3-haiku-20240307-v1:0"
AZURE_DEPLOYMENTS = {
    RT.CHAT_COMPLETION: ("chat4o", "gpt-4o-2024-11-20"),
    RT.RESPONSES: ("chat4o", "gpt-4o-2024-11-20"),
    RT.TEXT_COMPLETION: ("instruct35", "gpt-35-turbo-instruct"),
    RT.EMBEDDING: ("embed3", "text-embedding-3-small"),
    RT.SPEECH: ("tts1", "tts-1"),
    RT.IMAGE_GENERATION: ("dalle3", "dall-e-3"),
}
CHAT_MODELS = {  # also the Responses model; the OpenAI-compatible family gets "<name>-e2e-model"
    "anthropic": "claude-3-5-haiku-20241022",
    "gemini": "gemini-2.0-flash",
    "cohere": "command-r-plus-08-2024",
    "mistral": "mistral-small-latest",
    "bedrock": BEDROCK_CHAT,
}
OTHER_MODELS = {
    ("gemini", RT.EMBEDDING): "text-embedding-004",
    ("cohere", RT.EMBEDDING): "embed-english-v3.0",
    ("cohere", RT.RERANK): "rerank-v3.5",
    ("mistral", RT.EMBEDDING): "mistral-embed",
    ("mistral", RT.OCR): "mistral-ocr-latest",
    ("bedrock", RT.EMBEDDING): "amazon.titan-embed-text-v2:0",
    **{("azure", rt): deployment for rt, (deployment, _) in AZURE_DEPLOYMENTS.items()},
}
FIELDS: dict[RequestType, dict[str, Any]] = {
    RT.TEXT_COMPLETION: {"prompt": "hello"},
    RT.CHAT_COMPLETION: {"messages": [{"role": "user", "content": "hello"}]},
    RT.RESPONSES: {"input": "hello"},
    RT.EMBEDDING: {"input": "hello"},
    RT.SPEECH: {"input": "hello", "voice": "alloy"},
    RT.IMAGE_GENERATION: {"prompt": "a red square"},
    RT.RERANK: {"query": "red fox", "documents": ["the red fox", "a blue sky"]},
    RT.OCR: {"document": {"type": "document_url", "document_url": "https://example.com/scan.pdf"}},
}

AUDIO = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00" + bytes(range(256)) + b"\r\n--x\r\n"
IMAGE = openai_fake.PNG_PIXEL + b"\x00\r\n\xff"
MASK = bytes(reversed(openai_fake.PNG_PIXEL))
Upload = tuple[str, tuple[str, bytes, str]]  # form name, (filename, bytes, content type)
FORMS: dict[RequestType, tuple[dict[str, str], list[Upload]]] = {
    RT.TRANSCRIPTION: (
        {"language": "en", "prompt": "a short clip", "response_format": "json", "temperature": "0.2"},
        [("file", ("clip.wav", AUDIO, "audio/wav"))],
    ),
    RT.IMAGE_EDIT: (
        {"prompt": "add a red hat", "n": "2", "size": "256x256", "response_format": "b64_json"},
        [("image", ("cat.png", IMAGE, "image/png")), ("mask", ("mask.png", MASK, "image/png"))],
    ),
    RT.IMAGE_VARIATION: ({"n": "1", "size": "256x256"}, [("image", ("cat.png", IMAGE, "image/png"))]),
}


@dataclass
class Fakes:
    compatible: OpenAIFake
    self_hosted: OpenAIFake
    anthropic: AnthropicFake
    gemini: GeminiFake
    cohere: CohereFake
    mistral: MistralFake
    bedrock: BedrockFake
    azure: AzureOpenAIFake

    def of(self, provider: str) -> FakeHttpServer:
        if provider in KEYED_FAMILY:
            return self.compatible
        if provider in SELF_HOSTED:
            return self.self_hosted
        fake: FakeHttpServer = getattr(self, provider)
        return fake

    def environ(self) -> dict[str, str]:
        env = {**self.compatible.environ(), **FAST_RETRIES}
        for name in KEYED_FAMILY:
            env |= {f"{name.upper()}_BASE_URL": self.compatible.base_url, f"{name.upper()}_API_KEY": COMPATIBLE_KEY}
        env |= {"OLLAMA_BASE_URL": self.self_hosted.root_url, "VLLM_BASE_URL": self.self_hosted.base_url}
        for native in (self.anthropic, self.gemini, self.cohere, self.mistral, self.bedrock, self.azure):
            env |= native.environ()
        return env

    def provider_keys(self) -> list[str]:
        keys = [COMPATIBLE_KEY, self.anthropic.api_key, self.gemini.api_key, self.cohere.api_key]
        return [key for key in [*keys, self.mistral.api_key, self.azure.api_key] if key]


def model_for(provider: str, request_type: RequestType) -> str:
    return OTHER_MODELS.get((provider, request_type)) or CHAT_MODELS.get(provider) or f"{provider}-e2e-model"


def upstream_path(provider: str, request_type: RequestType, model: str) -> str:
    """Where the provider's fake records the call for this pair."""
    if provider in KEYED_FAMILY or provider in SELF_HOSTED:
        return "/v1" + openai.PATHS[request_type]
    if provider == "anthropic":
        return "/v1/messages"
    if provider == "gemini":
        return embed_path(model) if request_type == RT.EMBEDDING else generate_path(model)
    if provider == "cohere":
        return cohere.PATHS[request_type]
    if provider == "mistral":
        return mistral.PATHS[request_type]
    if provider == "bedrock":
        return invoke_path(model) if request_type == RT.EMBEDDING else converse_path(model)
    if request_type == RT.RESPONSES:
        return RESPONSES_PATH
    return deployment_path(model, azure.DEPLOYMENT_PATHS[request_type])


PAIRS = [(spec.name, rt) for spec in SPECS if spec.name != "mock" for rt in sorted(spec.request_types)]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with ExitStack() as running:
        yield Fakes(
            running.enter_context(OpenAIFake(api_key=COMPATIBLE_KEY)),
            running.enter_context(OpenAIFake(api_key=None)),
            running.enter_context(AnthropicFake()),
            running.enter_context(GeminiFake()),
            running.enter_context(CohereFake()),
            running.enter_context(MistralFake()),
            running.enter_context(BedrockFake()),
            running.enter_context(AzureOpenAIFake(deployments=dict(AZURE_DEPLOYMENTS.values()))),
        )


@pytest.fixture(scope="module")
def stack(fakes: Fakes) -> Iterator[LocalStackProcess]:
    with local_stack(fakes.environ()) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def poll_bodies() -> list[str]:
    """Every submit and poll body the module saw, for the secret check."""
    return []


def run_job(
    http: requests.Session,
    stack: LocalStackProcess,
    bodies: list[str],
    request_type: RequestType,
    body: dict[str, Any],
    uploads: list[Upload] | None = None,
) -> dict[str, Any]:
    """Submit (as JSON, or as a multipart form with ``uploads``) and poll until the job ends."""
    url = stack.url(BY_TYPE[request_type].submit_path)
    if uploads is None:
        submitted = http.post(url, json=body, headers=JSON, timeout=10)
    else:
        submitted = http.post(url, data=body, files=uploads, timeout=10)
    bodies.append(submitted.text)
    assert submitted.status_code == 202, submitted.text
    url = stack.url(submitted.headers["Location"])
    deadline = time.monotonic() + 10
    while True:
        polled = http.get(url, timeout=10)
        bodies.append(polled.text)
        if polled.status_code != 202:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"job still open after 10 s: {polled.text}")
        time.sleep(0.05)
    assert polled.status_code == 200, polled.text
    job: dict[str, Any] = polled.json()
    return job


def check_result(request_type: RequestType, result: dict[str, Any]) -> None:
    """``result`` has the synchronous OpenAI-style shape of its type (contract §3)."""
    if request_type == RT.CHAT_COMPLETION:
        assert result["object"] == "chat.completion"
        assert result["choices"][0]["message"]["role"] == "assistant"
        assert "hello" in result["choices"][0]["message"]["content"]
        assert set(result["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    elif request_type == RT.TEXT_COMPLETION:
        assert result["object"] == "text_completion"
        assert result["choices"][0]["text"] == "hello"
    elif request_type == RT.RESPONSES:
        assert result["object"] == "response"
        assert result["output"], result
    elif request_type == RT.EMBEDDING:
        assert result["object"] == "list"
        assert result["data"][0]["object"] == "embedding"
        assert result["data"][0]["embedding"] and all(isinstance(v, float) for v in result["data"][0]["embedding"])
    elif request_type == RT.SPEECH:
        assert base64.b64decode(result["audio"]) == openai_fake.SPEECH_AUDIO
    elif request_type == RT.IMAGE_GENERATION:
        assert base64.b64decode(result["data"][0]["b64_json"]) == openai_fake.PNG_PIXEL
    elif request_type == RT.TRANSCRIPTION:
        assert result["text"] == openai_fake.transcript(AUDIO)
    elif request_type in (RT.IMAGE_EDIT, RT.IMAGE_VARIATION):
        count = int(FORMS[request_type][0]["n"])
        assert [base64.b64decode(item["b64_json"]) for item in result["data"]] == [openai_fake.PNG_PIXEL] * count
    elif request_type == RT.RERANK:
        assert [item["index"] for item in result["results"]] == [0, 1]
        assert all(isinstance(item["relevance_score"], float) for item in result["results"])
    else:
        assert request_type == RT.OCR
        assert result["pages"][0]["index"] == 0
        assert isinstance(result["pages"][0]["markdown"], str)


def received(new: list[RecordedRequest], path: str, model: str) -> list[RecordedRequest]:
    """The recorded calls to ``path``, for ``model`` when the body names one."""
    return [r for r in new if r.path == path and (not isinstance(r.json, dict) or r.json.get("model", model) == model)]


@pytest.mark.parametrize(("provider", "request_type"), PAIRS, ids=[f"{p}-{rt.value}" for p, rt in PAIRS])
def test_every_provider_completes_each_of_its_request_types(
    fakes: Fakes,
    stack: LocalStackProcess,
    http: requests.Session,
    poll_bodies: list[str],
    provider: str,
    request_type: RequestType,
) -> None:
    fake, model = fakes.of(provider), model_for(provider, request_type)
    before = len(fake.requests)
    multipart = BY_TYPE[request_type].multipart
    fields, uploads = FORMS[request_type] if multipart else (FIELDS[request_type], None)

    job = run_job(http, stack, poll_bodies, request_type, {"model": f"{provider}/{model}", **fields}, uploads)

    assert job["status"] == "completed", job
    assert job["status_code"] == 200
    check_result(request_type, job["result"])
    extra = job["result"]["extra_fields"]
    assert (extra["provider"], extra["model_requested"], extra["request_type"]) == (provider, model, request_type)
    path = upstream_path(provider, request_type, model)
    sent = received(fake.requests[before:], path, model)
    assert sent, [(r.path, r.json) for r in fake.requests[before:]]
    if uploads is not None:
        [form] = [ReceivedForm.of(request) for request in sent]
        assert form.fields == {"model": model, **fields}
        files = [(p.name, (p.filename, p.content, p.content_type)) for p in form.parts if p.filename is not None]
        assert files == uploads


GEMINI_MISSING = "models/gemini-2.0-flash is not found for API version v1beta"
ANTHROPIC_TOO_MANY = "max_tokens: 999999 > 8192, which is the maximum allowed"
COHERE_INVALID = "invalid request: temperature must be between 0 and 1"
GROQ_INVALID = "'messages.0.content' must be a string"


@dataclass(frozen=True)
class Failure:
    """A permanent provider error: who answers it, how, and what the job's §4 error must say."""

    provider: str
    status: int
    message: str
    fields: dict[str, str]  # error.type / code / param taken from the provider's body
    script: Callable[[Fakes], None]


FAILURES = [
    Failure(
        "anthropic",
        400,
        ANTHROPIC_TOO_MANY,
        {"type": "invalid_request_error"},
        lambda f: f.anthropic.script_error("/messages", 400, "invalid_request_error", ANTHROPIC_TOO_MANY),
    ),
    Failure(
        "gemini",
        404,
        GEMINI_MISSING,
        {"type": "NOT_FOUND"},
        lambda f: f.gemini.script_error(
            generate_path("gemini-2.0-flash"), 404, gemini_fake.error_body(404, GEMINI_MISSING)
        ),
    ),
    Failure("cohere", 400, COHERE_INVALID, {}, lambda f: f.cohere.script_error("/chat", 400, COHERE_INVALID)),
    Failure(
        "mistral",
        400,
        "Invalid model: mistral-nope",
        {"type": "invalid_model", "code": "1500", "param": "model"},
        lambda f: f.mistral.script_error("/chat/completions", 400, mistral_fake.DEFAULT_ERRORS[400]),
    ),
    Failure(
        "bedrock",
        400,
        "The provided model identifier is invalid.",
        {"code": "ValidationException"},
        lambda f: f.bedrock.script_error(
            converse_path(BEDROCK_CHAT), 400, "ValidationException", "The provided model identifier is invalid."
        ),
    ),
    Failure(
        "azure",
        404,
        DEPLOYMENT_NOT_FOUND,
        {"code": "DeploymentNotFound"},
        lambda f: f.azure.script_error(deployment_path("chat4o"), 404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND),
    ),
    Failure(
        "groq",
        400,
        GROQ_INVALID,
        {"type": "invalid_request_error", "param": "messages"},
        lambda f: f.compatible.script_error(
            "/chat/completions", 400, openai_fake.error_body(GROQ_INVALID, "invalid_request_error", "messages")
        ),
    ),
]


def chat_job(provider: str, **extra: Any) -> dict[str, Any]:
    model = model_for(provider, RT.CHAT_COMPLETION)
    return {"model": f"{provider}/{model}", **FIELDS[RT.CHAT_COMPLETION], **extra}


@pytest.mark.parametrize("case", FAILURES, ids=[case.provider for case in FAILURES])
def test_provider_error_ends_the_job_failed_with_the_providers_error(
    fakes: Fakes, stack: LocalStackProcess, http: requests.Session, poll_bodies: list[str], case: Failure
) -> None:
    fake = fakes.of(case.provider)
    before = len(fake.requests)
    case.script(fakes)
    try:
        job = run_job(http, stack, poll_bodies, RT.CHAT_COMPLETION, chat_job(case.provider))
        calls = len(fake.requests) - before
    finally:
        fake.reset()

    assert job["status"] == "failed", job
    assert job["status_code"] == case.status
    assert "result" not in job
    assert calls == 1  # a permanent error is not retried
    error = job["error"]
    assert error["event_id"]
    assert error["is_bifrost_error"] is False
    assert error["status_code"] == case.status
    assert error["error"]["message"] == case.message
    assert {name: error["error"].get(name) for name in case.fields} == case.fields
    assert error["extra_fields"] == {
        "provider": case.provider,
        "model_requested": model_for(case.provider, RT.CHAT_COMPLETION),
        "request_type": "chat_completion",
    }


def test_provider_answering_503_every_time_falls_back_to_mock(
    fakes: Fakes, stack: LocalStackProcess, http: requests.Session, poll_bodies: list[str]
) -> None:
    fakes.cohere.script_error("/chat", 503)
    try:
        job = run_job(http, stack, poll_bodies, RT.CHAT_COMPLETION, chat_job("cohere", fallbacks=["mock/echo"]))
        calls = len(fakes.cohere.requests_to("/chat"))
    finally:
        fakes.cohere.reset()

    assert job["status"] == "completed", job
    assert job["result"]["object"] == "chat.completion"
    assert job["result"]["extra_fields"]["provider"] == "mock"
    assert job["result"]["extra_fields"]["model_requested"] == "echo"
    assert calls == CALLS_PER_ATTEMPT  # the primary was retried inline, then the fallback served


def test_provider_answering_503_every_time_fails_with_its_503_after_the_last_attempt(
    fakes: Fakes, stack: LocalStackProcess, http: requests.Session, poll_bodies: list[str]
) -> None:
    path = generate_path(model_for("gemini", RT.CHAT_COMPLETION))
    fakes.gemini.script_error(path, 503)
    try:
        job = run_job(http, stack, poll_bodies, RT.CHAT_COMPLETION, chat_job("gemini"))
        calls = len(fakes.gemini.requests_to(path))
    finally:
        fakes.gemini.reset()

    assert job["status"] == "failed", job
    assert job["status_code"] == 503
    assert job["error"]["is_bifrost_error"] is False
    assert job["error"]["error"]["message"] == gemini_fake.DEFAULT_ERRORS[503]["error"]["message"]
    assert job["error"]["extra_fields"]["provider"] == "gemini"
    assert calls == 2 * CALLS_PER_ATTEMPT  # ASYNCGATE_MAX_ATTEMPTS deliveries, each retried inline


def test_no_provider_key_appears_in_any_poll_body(
    fakes: Fakes, stack: LocalStackProcess, http: requests.Session, poll_bodies: list[str]
) -> None:
    for provider in sorted({name for name, _ in PAIRS}):
        assert run_job(http, stack, poll_bodies, RT.CHAT_COMPLETION, chat_job(provider))["status"] == "completed"

    keys = fakes.provider_keys()
    assert len(keys) == 6
    leaks = [(key, body) for body in poll_bodies for key in keys if key in body]
    assert not leaks
