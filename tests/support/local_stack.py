"""Run ``python -m chalicelib.local`` in a subprocess for end-to-end tests.

``LocalStackProcess`` starts the local stack on an ephemeral port (``PORT=0``) with an
environment the test controls: the parent's AWS credentials, provider settings and
``ASYNCGATE_*`` knobs are stripped, and each test adds what it needs (retry knobs, a
provider fake's ``OPENAI_BASE_URL``...). The child's output (stdout and stderr, merged)
is read by a background thread so the pipe never fills. ``stop()`` sends SIGINT, waits
for the process to exit and returns its exit code and everything it printed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PROJECT_DIR = Path(__file__).resolve().parents[2]
AWS_ENDPOINT = re.compile(r"asyncgate AWS \(moto\) endpoint (http://\S+)")
LISTENING = re.compile(r"asyncgate local stack listening on (http://127\.0\.0\.1:\d+)")
STRIPPED_PREFIXES = ("AWS_", "OPENAI_", "ASYNCGATE_")
STRIPPED_SUFFIXES = ("_API_KEY", "_BASE_URL")


class LocalStackError(RuntimeError):
    """The stack did not start, or did not stop, as expected; carries its output."""


@dataclass(frozen=True)
class StackExit:
    """How the stack ended: its exit code, how long it took to stop, everything it printed."""

    returncode: int
    stop_seconds: float
    output: str


def stack_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without AWS, provider or asyncgate settings, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(STRIPPED_PREFIXES) and not name.endswith(STRIPPED_SUFFIXES)
    }
    env.update({"PORT": "0", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


class LocalStackProcess:
    """One local stack subprocess. Use ``with`` (or ``start()``/``stop()``)."""

    def __init__(self, env: Mapping[str, str] | None = None, startup_timeout_s: float = 60.0) -> None:
        self._env = stack_environment(env)
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._listening = threading.Event()
        self._base_url: str | None = None
        self._aws_endpoint: str | None = None
        self._exit: StackExit | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, known once ``start()`` has returned."""
        if self._base_url is None:
            raise LocalStackError("the stack is not listening yet")
        return self._base_url

    @property
    def aws_endpoint(self) -> str:
        """The AWS endpoint (embedded moto, or the one given) the stack uses, known once it listens."""
        if self._aws_endpoint is None:
            raise LocalStackError("the stack has not announced its AWS endpoint")
        return self._aws_endpoint

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise LocalStackError("the stack was never started")
        return self._process.pid

    def output(self) -> str:
        """Everything the stack has printed so far."""
        with self._lines_lock:
            return "".join(self._lines)

    def start(self) -> LocalStackProcess:
        """Start the subprocess and wait (bounded) until it announces its address."""
        if self._process is not None:
            raise LocalStackError("the stack was already started")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.local"],
            cwd=PROJECT_DIR,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, args=(self._process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._listening.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise LocalStackError(f"the local stack did not start; output:\n{self.output()}")
        return self

    def stop(self, timeout_s: float = 15.0) -> StackExit:
        """SIGINT, then wait up to ``timeout_s`` for a clean exit. Idempotent."""
        if self._exit is not None:
            return self._exit
        if self._process is None:
            raise LocalStackError("the stack was never started")
        started = time.monotonic()
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            returncode = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill()
            raise LocalStackError(
                f"the local stack ignored SIGINT for {timeout_s}s; output:\n{self.output()}"
            ) from None
        stopped = time.monotonic() - started
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._exit = StackExit(returncode, stopped, self.output())
        return self._exit

    def __enter__(self) -> LocalStackProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except LocalStackError:
            if exc_type is None:
                raise

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lines_lock:
                self._lines.append(line)
            if self._aws_endpoint is None and (found := AWS_ENDPOINT.search(line)):
                self._aws_endpoint = found.group(1)
            if self._base_url is None and (match := LISTENING.search(line)):
                self._base_url = match.group(1)
                self._listening.set()
        process.stdout.close()

    def _kill(self) -> None:
        """Last resort for a stack that would not start or stop: kill this one process."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)


@contextmanager
def local_stack(env: Mapping[str, str] | None = None, startup_timeout_s: float = 60.0) -> Iterator[LocalStackProcess]:
    """A running stack for the ``with`` block; stopped (SIGINT) when the block ends."""
    with LocalStackProcess(env, startup_timeout_s) as stack:
        yield stack
