"""End to end: the admin CLI (``python -m chalicelib.admin --local keys …``) against a running local stack.

The stack seeds two keys from ``ASYNCGATE_VIRTUAL_KEYS`` and serves the admin API with
``ASYNCGATE_ADMIN_TOKEN``. The CLI finds a running stack through ``.asyncgate-local.json``
in the project directory, which every local stack overwrites when it starts: so each CLI
run here first points that file at this module's stack (under a lock shared by these
tests) and puts back what it found, and when the module ends the file is restored, or
removed if it would name a stack that is gone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from chalicelib.keys import key_hash, key_id_for, new_key_value
from tests.support.local_stack import PROJECT_DIR, LocalStackProcess, stack_environment

pytestmark = pytest.mark.e2e

STATE_FILE = PROJECT_DIR / ".asyncgate-local.json"
LOCK_FILE = Path(tempfile.gettempdir()) / f"asyncgate-state-{hashlib.sha256(bytes(PROJECT_DIR)).hexdigest()[:12]}.lock"
TOKEN = "e2e-admin-token-5c2a"
CHAT_PATH = "/v1/async/chat/completions"
CHAT = {"model": "mock/echo", "messages": [{"role": "user", "content": "hello"}]}


@contextmanager
def state_lock() -> Iterator[None]:
    """Serialises, between these tests, starting a stack and using the state file."""
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_state() -> str | None:
    return STATE_FILE.read_text() if STATE_FILE.exists() else None


def names_a_live_stack(state: str) -> bool:
    try:
        address = urlsplit(json.loads(state)["api_url"])
        with socket.create_connection((address.hostname, address.port), timeout=0.5):
            return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


@contextmanager
def running_stack(env: Mapping[str, str]) -> Iterator[tuple[LocalStackProcess, str]]:
    """A started stack and the state-file text naming it; the file is put back as found afterwards."""
    with state_lock():
        previous = read_state()
        for _ in range(3):
            stack = LocalStackProcess(env).start()
            state = read_state()  # written just before the stack announced its address
            if state is not None and json.loads(state)["api_url"] == stack.base_url:
                break
            stack.stop()  # another stack, started outside this lock, wrote the file meanwhile
        else:
            pytest.fail("another local stack kept overwriting .asyncgate-local.json")
    assert state is not None
    try:
        yield stack, state
    finally:
        stack.stop()
        with state_lock():
            if read_state() == state:
                if previous is not None and names_a_live_stack(previous):
                    STATE_FILE.write_text(previous)
                else:
                    STATE_FILE.unlink(missing_ok=True)


@dataclass(frozen=True)
class Stack:
    process: LocalStackProcess
    state: str
    seeded: tuple[str, str]

    def url(self, path: str) -> str:
        return self.process.url(path)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    seeded = (new_key_value(), new_key_value())
    env = {
        "ASYNCGATE_VIRTUAL_KEYS": f" {seeded[0]}, {seeded[1]} ,",
        "ASYNCGATE_ADMIN_TOKEN": TOKEN,
        "ASYNCGATE_KEY_CACHE_SECONDS": "0",
    }
    with running_stack(env) as (process, state):
        yield Stack(process, state, seeded)


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the admin CLI with ``--local`` against ``stack``, whatever stack last wrote the state file."""
    with state_lock():
        found = read_state()
        STATE_FILE.write_text(stack.state)
        try:
            return subprocess.run(
                [sys.executable, "-m", "chalicelib.admin", "--local", *args],
                cwd=PROJECT_DIR,
                env=stack_environment(),
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            if found is not None and found != stack.state and read_state() == stack.state:
                STATE_FILE.write_text(found)


def cli_json(stack: Stack, *args: str) -> Any:
    done = cli(stack, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def submit(stack: Stack, key: str | None) -> requests.Response:
    headers = {"x-bf-vk": key} if key else {}
    return requests.post(stack.url(CHAT_PATH), json=CHAT, headers=headers, timeout=10)


def poll(stack: Stack, job_id: str, key: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(stack.url(f"{CHAT_PATH}/{job_id}"), headers=headers, timeout=10)


def without_event_id(body: dict[str, Any]) -> dict[str, Any]:
    error = {k: v for k, v in body["error"].items() if k != "event_id"}
    return {**{k: v for k, v in body.items() if k != "event_id"}, "error": error}


def test_list_shows_the_seeded_keys_without_their_values(stack: Stack) -> None:
    done = cli(stack, "keys", "list")

    assert done.returncode == 0, done.stderr
    listed = {key["id"]: key for key in json.loads(done.stdout)}
    for value in stack.seeded:
        seeded = listed[key_id_for(key_hash(value))]
        assert (seeded["name"], seeded["disabled_at"]) == ("seeded", None)
        assert value not in done.stdout and key_hash(value) not in done.stdout


def test_a_created_key_works_at_once_and_disabling_it_makes_it_fail(stack: Stack) -> None:
    made = cli_json(stack, "keys", "create", "--name", "e2e-cli", "--rate-limit", "100")
    assert made["key"].startswith("sk-bf-") and made["rate_limit_per_minute"] == 100

    accepted = submit(stack, made["key"])
    assert accepted.status_code == 202, accepted.text
    assert poll(stack, accepted.json()["id"], made["key"]).status_code in (200, 202)

    disabled = cli_json(stack, "keys", "disable", made["id"])
    assert disabled["id"] == made["id"] and disabled["disabled_at"] is not None
    refused = submit(stack, made["key"])
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_virtual_key")
    listed = {key["id"]: key for key in cli_json(stack, "keys", "list")}
    assert listed[made["id"]]["disabled_at"] == disabled["disabled_at"]
    assert "key" not in listed[made["id"]]


def test_the_seeded_keys_scope_jobs(stack: Stack) -> None:
    first, second = stack.seeded
    accepted = submit(stack, first)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]

    own = poll(stack, job_id, first)
    other = poll(stack, job_id, second)
    keyless = poll(stack, job_id, None)
    unknown = poll(stack, str(uuid.uuid4()), second)

    assert own.status_code in (200, 202) and own.json()["id"] == job_id
    assert (other.status_code, keyless.status_code, unknown.status_code) == (404, 404, 404)
    assert without_event_id(other.json()) == without_event_id(unknown.json())
    listed = requests.get(stack.url("/v1/async/jobs"), headers={"x-bf-vk": second}, timeout=10)
    assert job_id not in {job["id"] for job in listed.json()["data"]}


def test_the_cli_and_the_admin_api_manage_the_same_keys(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    from_api = requests.post(stack.url("/api/keys"), json={"name": "from-api"}, headers=admin, timeout=10)
    assert from_api.status_code == 201, from_api.text
    from_cli = cli_json(stack, "keys", "create", "--name", "from-cli")

    cli_ids = {key["id"] for key in cli_json(stack, "keys", "list")}
    api_listing = requests.get(stack.url("/api/keys"), headers=admin, timeout=10)
    api_ids = {key["id"] for key in api_listing.json()["data"]}

    assert {from_api.json()["id"], from_cli["id"]} <= cli_ids == api_ids
    assert requests.get(stack.url("/api/keys"), timeout=10).status_code == 401


def test_disabling_an_unknown_key_exits_1_with_a_one_line_error(stack: Stack) -> None:
    done = cli(stack, "keys", "disable", "vk_00000000000000000000")

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_a_stopped_stack_leaves_no_state_file_naming_it() -> None:
    with running_stack({}) as (process, _):
        process.stop()
        with state_lock():
            left = read_state()

        assert left is None or json.loads(left)["api_url"] != process.base_url
