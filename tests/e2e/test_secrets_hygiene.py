"""Secrets hygiene end to end: after a full workload, nothing the stack wrote holds a secret (issue 5).

One local stack, wired to a loopback fake of every keyed provider, gets distinctive secrets:
provider keys (two for OpenAI, one refused by its fake, so keys rotate), an admin token and
seeded virtual keys, plus one key created through ``POST /api/keys``. The workload drives every
key carrier through successes, provider errors echoing the key, 400, 429, a timeout, a fallback,
S3-sized requests, results and uploads, file uploads, cancel, list, idempotent replays, admin
calls and bad keys. Then every table item, S3 object and queued message of the stack's embedded
AWS, its log and every response (but the one showing the created key) are searched for every
secret, verbatim or encoded; job items and the log also for every header value sent.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from chalicelib.contract import BY_TYPE, RequestType
from chalicelib.local import STATE_FILE
from tests.support import gemini_fake
from tests.support.anthropic_fake import AnthropicFake
from tests.support.azure_fake import AzureOpenAIFake, deployment_path
from tests.support.cohere_fake import CohereFake
from tests.support.gemini_fake import GeminiFake, generate_path
from tests.support.local_stack import LocalStackProcess
from tests.support.mistral_fake import MistralFake
from tests.support.openai_fake import PNG_PIXEL, OpenAIFake
from tests.support.secret_scan import aws_dump, flatten, leaks

pytestmark = pytest.mark.e2e

RT = RequestType
OPENAI_REFUSED = "sk-proj-HygE2e+Refused/OpenAI=3b9c0d7e1f"
OPENAI_GOOD = "sk-proj-HygE2e+Accepted/OpenAI=8a2f6c4e0d"
PROVIDER_KEYS = {
    "openai refused key": OPENAI_REFUSED,
    "openai key": OPENAI_GOOD,
    "anthropic key": "sk-ant-api03-HygE2e+Anthropic/key=51c7e2a9",
    "gemini key": "AIzaHygE2e+Gemini/key=0c4f9a7b2d6e",
    "cohere key": "co-HygE2e+Cohere/key=7d1b5e9f3a",
    "mistral key": "ms-HygE2e+Mistral/key=2e8c6a0f4b",
    "azure key": "az-HygE2e+Azure/key=9f3d7b1c5e",
    "groq key": "gsk_HygE2e+Groq/key=4a0e8c2f6d",
}
ADMIN_TOKEN = "adm-HygE2e+Admin/Token=6b2d0f8a4c"
WRONG_ADMIN = "adm-HygE2e+Wrong/Token=1e5a9c3b7d"
SEEDED = (
    "sk-bf-HygE2eSeededAlpha+/=0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b",
    "sk-bf-HygE2eSeededBeta7Q1w2e3r4t5y6u7i8o9p0a1s2d3f",
)
UNKNOWN_VK = "sk-bf-HygE2eUnknownKey9z8y7x6w5v4u3t2s1r0q9p8o7n6m5l"
COMMON_HEADERS = {"User-Agent": "hygiene-e2e-agent/ua-7Q3xV9", "X-Request-Trace": "trace-hyg-e2e-5Kp2Lm8"}
CARRIERS = ("x-bf-vk", "authorization", "x-api-key", "x-goog-api-key")
PLAIN_HEADERS = frozenset({"content-type", "x-model-provider", "x-bf-async-job-result-ttl"})
LARGE_TEXT = "lorem ipsum dolor " * 3000  # ~54 KB: the request and its echoed result go to S3, the result as a URL
AUDIO = b"RIFF$\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8
KNOBS = {
    "ASYNCGATE_INLINE_LIMIT_BYTES": "1024",
    "ASYNCGATE_MAX_INLINE_RESPONSE_BYTES": "8192",
    "ASYNCGATE_MAX_ATTEMPTS": "2",
    "ASYNCGATE_INLINE_RETRIES": "1",
    "ASYNCGATE_RETRY_BASE_SECONDS": "0.01",
    "ASYNCGATE_REQUEUE_BASE_SECONDS": "1",
    "ASYNCGATE_REQUEUE_MAX_SECONDS": "1",
    "ASYNCGATE_PROVIDER_READ_TIMEOUT": "1",
    "ASYNCGATE_KEY_CACHE_SECONDS": "0",
}
DEPLOYMENTS = {"chat4o": "gpt-4o"}
FILES = "/anthropic/v1/files"
EMBEDDINGS = BY_TYPE[RT.EMBEDDING].submit_path
MOCK_EMBEDDING = {"model": "mock/echo", "input": "x"}
HEADER_IN_LOG = re.compile(r"(?i)\b(authorization|x-api-key|x-goog-api-key|x-bf-vk|api-key)['\"]?\s*[:=]")


def chat(model: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@dataclass
class Fakes:
    openai: OpenAIFake
    groq: OpenAIFake
    anthropic: AnthropicFake
    gemini: GeminiFake
    cohere: CohereFake
    mistral: MistralFake
    azure: AzureOpenAIFake

    def environ(self) -> dict[str, str]:
        env = {"OPENAI_BASE_URL": self.openai.base_url, "OPENAI_API_KEY": f"{OPENAI_REFUSED},{OPENAI_GOOD}"}
        env |= {"GROQ_BASE_URL": self.groq.base_url, "GROQ_API_KEY": PROVIDER_KEYS["groq key"]}
        for native in (self.anthropic, self.gemini, self.cohere, self.mistral, self.azure):
            env |= native.environ()
        return env | KNOBS | {"ASYNCGATE_ADMIN_TOKEN": ADMIN_TOKEN, "ASYNCGATE_VIRTUAL_KEYS": ",".join(SEEDED)}

    def reset(self) -> None:
        for fake in (self.openai, self.groq, self.anthropic, self.gemini, self.cohere, self.mistral, self.azure):
            fake.reset()


@dataclass
class Client:
    """Every request and response of the run; header values sent, carriers used."""

    http: requests.Session
    base_url: str
    exchanges: list[tuple[str, str]] = field(default_factory=list)  # (what, headers and body)
    sent_values: set[str] = field(default_factory=set)
    carriers_used: set[str] = field(default_factory=set)
    _turn: Iterator[int] = field(default_factory=itertools.count)

    def call(
        self, method: str, path: str, key: str | None = None, headers: dict[str, str] | None = None, **kw: Any
    ) -> requests.Response:
        """One request; a virtual key goes in the next carrier in turn."""
        sent = {**COMMON_HEADERS, **(headers or {})}
        if key is not None:
            carrier = CARRIERS[next(self._turn) % len(CARRIERS)]
            self.carriers_used.add(carrier)
            sent[carrier] = f"Bearer {key}" if carrier == "authorization" else key
        self.sent_values |= {value for name, value in sent.items() if name.lower() not in PLAIN_HEADERS}
        url = path if path.startswith("http") else self.base_url + path
        answer = self.http.request(method, url, headers=sent, timeout=15, **kw)
        what = f"{method} {path} ({answer.status_code})"
        self.exchanges.append((what, flatten(dict(answer.headers)) + answer.text))
        return answer

    def status(self, method: str, path: str, key: str | None = None, **kw: Any) -> int:
        return self.call(method, path, key, **kw).status_code

    def submit(self, kind: RequestType, body: dict[str, Any], key: str | None = None, **kw: Any) -> str:
        payload = {"data": body} if "files" in kw else {"json": body}
        answer = self.call("POST", BY_TYPE[kind].submit_path, key, **payload, **kw)
        assert answer.status_code == 202, answer.text
        return str(answer.headers["Location"])

    def wait(self, location: str, key: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + 40
        while (answer := self.call("GET", location, key)).status_code == 202:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.1)
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job


def outcome(job: dict[str, Any]) -> str:
    served = (job.get("result") or {}).get("extra_fields", {}).get("provider")
    return " ".join(str(part) for part in (job["status"], job.get("status_code"), served) if part)


@dataclass
class Run:
    secrets: dict[str, str]
    observed: dict[str, object]
    aws: dict[str, str]
    log: str
    responses: dict[str, str]
    header_values: set[str]


SUCCESSES: list[tuple[str, RequestType, dict[str, Any]]] = [
    ("openai chat 1", RT.CHAT_COMPLETION, chat("openai/gpt-4o-mini")),
    ("openai chat 2", RT.CHAT_COMPLETION, chat("openai/gpt-4o-mini", "again")),
    ("openai embedding", RT.EMBEDDING, {"model": "openai/text-embedding-3-small", "input": "hello"}),
    ("openai responses", RT.RESPONSES, {"model": "openai/gpt-4o-mini", "input": "hello"}),
    ("openai speech", RT.SPEECH, {"model": "openai/tts-1", "input": "hello", "voice": "alloy"}),
    ("anthropic chat", RT.CHAT_COMPLETION, chat("anthropic/claude-3-5-haiku-20241022")),
    ("gemini chat", RT.CHAT_COMPLETION, chat("gemini/gemini-2.0-flash")),
    ("gemini embedding", RT.EMBEDDING, {"model": "gemini/text-embedding-004", "input": "hello"}),
    ("cohere chat", RT.CHAT_COMPLETION, chat("cohere/command-r-plus-08-2024")),
    ("cohere rerank", RT.RERANK, {"model": "cohere/rerank-v3.5", "query": "fox", "documents": ["a fox", "a sky"]}),
    ("mistral chat", RT.CHAT_COMPLETION, chat("mistral/mistral-small-latest")),
    ("mistral embedding", RT.EMBEDDING, {"model": "mistral/mistral-embed", "input": "hello"}),
    ("azure chat", RT.CHAT_COMPLETION, chat("azure/chat4o")),
    ("groq chat", RT.CHAT_COMPLETION, chat("groq/llama-3.3-70b")),
    ("large request and result", RT.CHAT_COMPLETION, chat("openai/gpt-4o-mini", LARGE_TEXT)),
]
AUDIO_PART = ("file", ("a.wav", AUDIO, "audio/wav"))
IMAGE_PART = ("image", ("cat.png", PNG_PIXEL * 40, "image/png"))
FORMS: list[tuple[str, RequestType, dict[str, str], list[Any]]] = [
    ("transcription upload", RT.TRANSCRIPTION, {"model": "openai/whisper-1"}, [AUDIO_PART]),
    (
        "image edit upload",
        RT.IMAGE_EDIT,
        {"model": "openai/gpt-image-1", "prompt": "add a hat", "n": "1"},
        [IMAGE_PART],
    ),
]


FAILURES: list[tuple[str, dict[str, Any], str]] = [  # label, job, outcome
    ("mistral 401 echoing its key", chat("mistral/mistral-small-latest"), "failed 401"),
    ("azure 403 echoing its key", chat("azure/chat4o"), "failed 403"),
    ("gemini 400 echoing its key", chat("gemini/gemini-2.0-flash"), "failed 400"),
    ("openai 400", chat("openai/gpt-4o-mini"), "failed 400"),
    ("cohere 429 every time", chat("cohere/command-r-plus-08-2024"), "failed 429"),
    ("anthropic 429 once", chat("anthropic/claude-3-5-haiku-20241022"), "completed 200 anthropic"),
    ("groq timeout", chat("groq/llama-3.3-70b"), "failed 504"),
]


def script_failures(fakes: Fakes, keys: dict[str, str]) -> None:
    """The provider side of ``FAILURES``: several echo the caller's key in their message."""
    fakes.mistral.script_error("/chat/completions", 401, {"message": f"Unauthorized: {keys['mistral key']}"})
    fakes.azure.script_error(deployment_path("chat4o"), 403, "403", f"key {keys['azure key']} may not use chat4o")
    invalid = gemini_fake.error_body(400, f"bad key {keys['gemini key']}", gemini_fake.error_info("API_KEY_INVALID"))
    fakes.gemini.script_error(generate_path("gemini-2.0-flash"), 400, invalid)
    fakes.openai.script_error("/chat/completions", 400)
    fakes.cohere.script_error("/chat", 429, headers={"retry-after": "0"})
    fakes.anthropic.script_error("/messages", 429, headers={"retry-after": "0"}, times=1)
    fakes.groq.script_delay("/chat/completions", 5.0)


def drive_jobs(client: Client, fakes: Fakes, keys: list[str | None], observed: dict[str, object]) -> None:
    """Jobs that succeed, fail at the provider, fall back; each under the next key (or none)."""
    turn = itertools.cycle(keys)

    def run_all(batch: list[tuple[str, RequestType, dict[str, Any], dict[str, Any]]]) -> None:
        placed = [(label, client.submit(kind, body, key := next(turn), **kw), key) for label, kind, body, kw in batch]
        observed.update({label: outcome(client.wait(location, key)) for label, location, key in placed})

    forms = [(label, kind, fields, {"files": files}) for label, kind, fields, files in FORMS]
    run_all([(label, kind, body, {}) for label, kind, body in SUCCESSES] + forms)
    refused = [r for r in fakes.openai.requests if r.headers.get("authorization") == f"Bearer {OPENAI_REFUSED}"]
    observed["openai refused key rotated past"] = bool(refused)
    large = client.wait(client.submit(RT.CHAT_COMPLETION, chat("openai/gpt-4o-mini", LARGE_TEXT)))
    observed["large result fetched"] = client.call("GET", large["result_url"]).status_code
    script_failures(fakes, PROVIDER_KEYS)
    run_all([(label, RT.CHAT_COMPLETION, body, {}) for label, body, _ in FAILURES])
    fakes.reset()
    fakes.groq.script_error("/chat/completions", 401, {"error": {"message": f"bad key {PROVIDER_KEYS['groq key']}"}})
    run_all([("groq 401 falling back", RT.CHAT_COMPLETION, chat("groq/llama-3.3-70b", fallbacks=["mock/echo"]), {})])
    fakes.reset()


def drive_routes(client: Client, fakes: Fakes, keys: list[str | None], observed: dict[str, object]) -> None:
    """File uploads, cancel, idempotent replays, scoping, listing and bad keys."""
    upload = {"files": [("file", ("notes.pdf", b"%PDF-1.7 hygiene", "application/pdf"))]}
    observed["file upload"] = client.status("POST", FILES, SEEDED[0], **upload)
    fakes.anthropic.script_error("/files", 401, message=f"invalid x-api-key {PROVIDER_KEYS['anthropic key']}")
    observed["file upload echoing the key"] = client.status("POST", FILES, None, **upload)
    observed["file upload with unknown key"] = client.status("POST", FILES, UNKNOWN_VK, **upload)
    fakes.reset()
    cancelled = client.submit(RT.CHAT_COMPLETION, chat("mock/sleep-2s"), SEEDED[1])
    observed["cancel"] = client.status("DELETE", cancelled, SEEDED[1]) in (200, 202)
    observed["cancelled job"] = outcome(client.wait(cancelled, SEEDED[1]))
    observed["cancel again"] = client.status("DELETE", cancelled, SEEDED[1])
    replay = {"Idempotency-Key": "idem-HygE2e-4f7a"}
    first = client.submit(RT.EMBEDDING, MOCK_EMBEDDING, SEEDED[0], headers=replay)
    observed["idempotent replay"] = first == client.submit(RT.EMBEDDING, MOCK_EMBEDDING, SEEDED[0], headers=replay)
    other = {**MOCK_EMBEDDING, "input": "y"}
    observed["idempotency key reused"] = client.status("POST", EMBEDDINGS, SEEDED[0], headers=replay, json=other)
    observed["poll with another key"] = client.status("GET", first, SEEDED[1])
    observed["poll without key"] = client.status("GET", first)
    observed["poll with unknown key"] = client.status("GET", first, UNKNOWN_VK)
    observed["submit with unknown key"] = client.status("POST", EMBEDDINGS, UNKNOWN_VK, json=MOCK_EMBEDDING)
    two = {"x-bf-vk": SEEDED[0], "Authorization": f"Bearer {SEEDED[1]}"}
    observed["submit with two keys"] = client.status("POST", EMBEDDINGS, headers=two, json=MOCK_EMBEDDING)
    observed["list"] = sorted({client.status("GET", "/v1/async/jobs", key) for key in keys})
    observed["list with unknown key"] = client.status("GET", "/v1/async/jobs", UNKNOWN_VK)


def drive_admin(client: Client, key_id: str, created_value: str, observed: dict[str, object]) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    observed["admin list"] = client.status("GET", "/api/keys", headers=admin)
    wrong = [{}, {"Authorization": f"Bearer {WRONG_ADMIN}"}, {"x-api-key": ADMIN_TOKEN}, {"Authorization": ADMIN_TOKEN}]
    denied = {client.status("GET", "/api/keys", headers=headers) for headers in wrong}
    observed["admin denied"] = sorted(denied | {client.status("GET", "/api/keys", SEEDED[0])})
    observed["admin disable"] = client.status("POST", f"/api/keys/{key_id}/disable", headers=admin)
    observed["submit with disabled key"] = client.status("POST", EMBEDDINGS, created_value, json=MOCK_EMBEDDING)
    observed["carriers"] = sorted(client.carriers_used)


def drive(client: Client, fakes: Fakes, observed: dict[str, object]) -> str:
    """The whole workload; returns the value of the virtual key it created."""
    created = client.call("POST", "/api/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, json={"name": "h"})
    client.exchanges.pop()  # the one response allowed to show a key value
    key_id, created_value = str(created.json()["id"]), str(created.json()["key"])
    keys: list[str | None] = [SEEDED[0], SEEDED[1], created_value, None]
    drive_jobs(client, fakes, keys, observed)
    drive_routes(client, fakes, keys, observed)
    drive_admin(client, key_id, created_value, observed)
    return created_value


def keep_inputs_in_flight(client: Client) -> None:
    """Jobs still running at collection time, so their request and upload objects are in S3."""
    client.submit(RT.CHAT_COMPLETION, chat("mock/sleep-6s", LARGE_TEXT), SEEDED[0])
    client.submit(RT.TRANSCRIPTION, {"model": "mock/sleep-6s"}, SEEDED[1], files=[AUDIO_PART])


def restore(previous: bytes | None) -> None:
    """Put back the state file of whatever stack ran before this one (or none)."""
    if previous is None:
        STATE_FILE.unlink(missing_ok=True)
    else:
        STATE_FILE.write_bytes(previous)


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    previous_state = STATE_FILE.read_bytes() if STATE_FILE.exists() else None
    with ExitStack() as running:
        fakes = Fakes(
            running.enter_context(OpenAIFake(api_key=OPENAI_GOOD)),
            running.enter_context(OpenAIFake(api_key=PROVIDER_KEYS["groq key"])),
            running.enter_context(AnthropicFake(api_key=PROVIDER_KEYS["anthropic key"])),
            running.enter_context(GeminiFake(api_key=PROVIDER_KEYS["gemini key"])),
            running.enter_context(CohereFake(api_key=PROVIDER_KEYS["cohere key"])),
            running.enter_context(MistralFake(api_key=PROVIDER_KEYS["mistral key"])),
            running.enter_context(AzureOpenAIFake(api_key=PROVIDER_KEYS["azure key"], deployments=DEPLOYMENTS)),
        )
        running.callback(restore, previous_state)
        stack = running.enter_context(LocalStackProcess(fakes.environ()))
        state = json.loads(STATE_FILE.read_text())  # written by the stack as it started
        assert state["api_url"] == stack.base_url, "another stack rewrote the state file"
        client = Client(running.enter_context(requests.Session()), stack.base_url)
        observed: dict[str, object] = {}
        created_value = drive(client, fakes, observed)
        keep_inputs_in_flight(client)
        dumped = aws_dump(state["aws_endpoint"])
        log = stack.stop(timeout_s=30).output
    items = {where: text for where, text in dumped.items() if where.startswith("dynamodb ")}
    objects = {where: text for where, text in dumped.items() if where.startswith("s3 ")}
    observed["redacted echoes in job items"] = sum("[redacted]" in text for text in items.values())
    observed["the search finds a known text in S3"] = bool(leaks({"canary": LARGE_TEXT[:60]}, objects))
    observed["s3 kinds"] = sorted({where.split("/")[1] for where in objects})
    secrets = {**PROVIDER_KEYS, "admin token": ADMIN_TOKEN, "created virtual key": created_value}
    secrets |= {f"seeded virtual key {i}": value for i, value in enumerate(SEEDED)}
    secrets |= {"unknown virtual key": UNKNOWN_VK, "wrong admin token": WRONG_ADMIN}
    responses = {f"response {i} {what}": text for i, (what, text) in enumerate(client.exchanges)}
    yield Run(secrets, observed, dumped, log, responses, client.sent_values)


EXPECTED: dict[str, object] = {
    **{label: "completed 200 " + body["model"].split("/")[0] for label, _, body in SUCCESSES[:-1]},
    SUCCESSES[-1][0]: "completed 200",  # the result is too large to show inline: a URL instead
    **{label: "completed 200 openai" for label, _, _, _ in FORMS},
    "large result fetched": 200,
    **{label: expected for label, _, expected in FAILURES},
    "groq 401 falling back": "completed 200 mock",
    "openai refused key rotated past": True,
    "file upload": 200,
    "file upload echoing the key": 401,
    "file upload with unknown key": 401,
    "cancel": True,
    "cancelled job": "cancelled",
    "cancel again": 409,
    "idempotent replay": True,
    "idempotency key reused": 422,
    **dict.fromkeys(["poll with another key", "poll without key", "poll with unknown key"], 404),
    **dict.fromkeys(["submit with unknown key", "submit with two keys", "submit with disabled key"], 400),
    "list": [200],
    "list with unknown key": 401,
    "admin list": 200,
    "admin denied": [401],
    "admin disable": 200,
    "carriers": sorted(CARRIERS),
    "redacted echoes in job items": 3,  # mistral, azure, gemini: each echo was received and masked
    "the search finds a known text in S3": True,
    "s3 kinds": ["requests", "results", "uploads"],
}


def test_the_workload_reaches_every_path_that_could_leak_a_secret(run: Run) -> None:
    assert run.observed == EXPECTED


@pytest.mark.parametrize("place", ["dynamodb", "s3", "sqs"])
def test_no_secret_is_stored_in_any_table_item_object_or_message(run: Run, place: str) -> None:
    stored = {where: text for where, text in run.aws.items() if where.startswith(place + " ")}
    assert place == "sqs" or stored, f"nothing found in {place}"
    assert leaks(run.secrets, stored) == []


def test_no_secret_appears_in_the_stack_log(run: Run) -> None:
    assert "job" in run.log and "submitted" in run.log  # the log was captured
    assert leaks(run.secrets, {"log": run.log}) == []


def test_no_secret_appears_in_any_response_body_or_header(run: Run) -> None:
    assert len(run.responses) > 100
    assert leaks(run.secrets, run.responses) == []


def test_job_items_never_hold_a_header_value(run: Run) -> None:
    jobs = {where: text for where, text in run.aws.items() if where.startswith("dynamodb ") and "request_type" in text}
    assert len(jobs) >= 25
    assert leaks({value: value for value in run.header_values}, jobs) == []


def test_the_log_never_shows_authorization_or_api_key_headers(run: Run) -> None:
    assert leaks({value: value for value in run.header_values}, {"log": run.log}) == []
    assert HEADER_IN_LOG.findall(run.log) == []
