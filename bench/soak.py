"""Soak run: many jobs through the local stack while workers crash and messages repeat.

Starts, on loopback: an embedded AWS (moto), a fake OpenAI-compatible provider with
random latency and injected 503s, the API in one process and several worker processes
(each delivering a share of messages twice), then submits N jobs from concurrent
clients (with ``Idempotency-Key``, retried on connection errors) and polls each to its
end, while a chaos thread SIGKILLs a random worker every few seconds and restarts it.

Prints jobs submitted, completed, failed, lost (no end within five minutes of its
submit), duplicated
provider calls (successful upstream answers beyond one per job) and p50/p99
time-to-terminal. Zero lost is the bar: the exit status is 1 otherwise.

    python -m bench.soak --jobs 2000            # or: make soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from chalicelib.local_aws import EmbeddedAws
from tests.support.fake_http import FakeHttpServer, RecordedRequest, Reply, json_reply

PROJECT_DIR = Path(__file__).resolve().parent.parent
KEY = "sk-soak"


@dataclass
class Options:
    jobs: int = 2000
    clients: int = 16
    workers: int = 2
    kill_every_s: float = 5.0
    duplicate_rate: float = 0.05
    error_rate: float = 0.05
    latency_ms: tuple[int, int] = (20, 400)
    job_deadline_s: float = 300.0


class SoakProvider(FakeHttpServer):
    """OpenAI chat completions with random latency and 503s; counts successes per job marker."""

    def __init__(self, options: Options) -> None:
        super().__init__()
        self._options = options
        self._rng = random.Random(7)
        self.successes: Counter[str] = Counter()
        self.calls = 0

    def respond(self, request: RecordedRequest) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        marker = str(body.get("user", ""))
        with self._lock:
            self.calls += 1
            latency = self._rng.uniform(*self._options.latency_ms) / 1000
            failing = self._rng.random() < self._options.error_rate
        time.sleep(latency)
        if failing:
            return json_reply(503, {"error": {"message": "overloaded", "type": "server_error"}})
        with self._lock:
            self.successes[marker] += 1
        message = {"role": "assistant", "content": marker}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        reply = {"id": "chatcmpl-soak", "object": "chat.completion", "created": 0, "model": body.get("model")}
        return json_reply(200, reply | {"choices": [choice], "usage": usage})


class Process:
    """One local-stack process (api or worker), its output in a log file."""

    def __init__(self, role: str, env: dict[str, str], logs: Path) -> None:
        self.role = role
        self._env = env
        self._log_path = logs / f"{role}-{time.monotonic_ns()}.log"
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._log = open(self._log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**self._env, "ASYNCGATE_LOCAL_ROLE": self.role}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.local"], cwd=PROJECT_DIR, env=env, stdout=self._log, stderr=self._log
        )

    def wait_for(self, text: str, timeout_s: float = 60) -> str:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for line in self._log_path.read_text(errors="replace").splitlines():
                if text in line:
                    return line
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.role} did not start: {self._log_path.read_text(errors='replace')[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()


@dataclass
class Report:
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    refused: int = 0
    duplicated_provider_calls: int = 0
    provider_calls: int = 0
    worker_kills: int = 0
    p50_s: float = 0.0
    p99_s: float = 0.0
    wall_s: float = 0.0
    times: list[float] = field(default_factory=list, repr=False)
    lost_ids: list[str] = field(default_factory=list)


def stack_env(options: Options, aws_endpoint: str, provider_url: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ASYNCGATE_", "OPENAI_"))}
    return keep | {
        "PORT": "0",
        "PYTHONUNBUFFERED": "1",
        "ASYNCGATE_LOCAL_AWS_ENDPOINT": aws_endpoint,
        "ASYNCGATE_LOCAL_DUPLICATES": str(options.duplicate_rate),
        "ASYNCGATE_LEASE_SECONDS": "8",
        "ASYNCGATE_PROVIDER_READ_TIMEOUT": "5",
        "ASYNCGATE_MIN_CALL_SECONDS": "1",
        "ASYNCGATE_RETRY_BASE_SECONDS": "0.05",
        "ASYNCGATE_REQUEUE_BASE_SECONDS": "1",
        "ASYNCGATE_REQUEUE_MAX_SECONDS": "4",
        "ASYNCGATE_MAX_ATTEMPTS": "10",
        "OPENAI_BASE_URL": provider_url,
        "OPENAI_API_KEY": KEY,
    }


def run_job(base: str, index: int, report: Report, lock: threading.Lock, patience_s: float) -> None:
    """Submit one job (retrying safely with its Idempotency-Key) and poll it to its end."""
    marker = f"soak-{index}"
    body = {"model": "openai/soak-model", "user": marker, "messages": [{"role": "user", "content": marker}]}
    headers = {"Idempotency-Key": marker}
    job_id = None
    for _ in range(50):
        try:
            reply = requests.post(f"{base}/v1/async/chat/completions", json=body, headers=headers, timeout=10)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        if reply.status_code == 202:
            job_id = reply.json()["id"]
            break
        time.sleep(0.2)
    started = time.monotonic()
    if job_id is None:
        with lock:
            report.refused += 1
        return
    with lock:
        report.submitted += 1
    deadline = started + patience_s
    while time.monotonic() < deadline:
        try:
            polled = requests.get(f"{base}/v1/async/chat/completions/{job_id}", timeout=10)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        if polled.status_code == 200:
            status = polled.json()["status"]
            with lock:
                report.completed += status == "completed"
                report.failed += status != "completed"
                report.times.append(time.monotonic() - started)
            return
        time.sleep(0.2)
    with lock:
        report.lost += 1
        report.lost_ids.append(job_id)


def chaos(workers: list[Process], options: Options, report: Report, stop: threading.Event) -> None:
    rng = random.Random(11)
    while not stop.wait(options.kill_every_s * rng.uniform(0.5, 1.5)):
        victim = rng.choice(workers)
        victim.kill()
        report.worker_kills += 1
        victim.start()


def soak(options: Options) -> Report:
    report, lock = Report(), threading.Lock()
    aws, provider = EmbeddedAws(), SoakProvider(options)
    endpoint = aws.start()
    provider.start()
    logs = Path(tempfile.mkdtemp(prefix="asyncgate-soak-"))
    env = stack_env(options, endpoint, f"{provider.root_url}/v1")
    api = Process("api", env, logs)
    workers = [Process("worker", env, logs) for _ in range(options.workers)]
    stop = threading.Event()
    try:
        api.start()
        base = api.wait_for("listening on").rsplit(" ", 1)[-1]
        for worker in workers:
            worker.start()
            worker.wait_for("worker running")
        killer = threading.Thread(target=chaos, args=(workers, options, report, stop), daemon=True)
        if options.kill_every_s > 0:
            killer.start()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=options.clients) as pool:
            for index in range(options.jobs):
                pool.submit(run_job, base, index, report, lock, options.job_deadline_s)
        report.wall_s = round(time.monotonic() - started, 1)
    finally:
        stop.set()
        for process in [*workers, api]:
            process.stop()
        provider.stop()
        aws.stop()
    report.provider_calls = provider.calls
    report.duplicated_provider_calls = sum(count - 1 for count in provider.successes.values() if count > 1)
    if report.times:
        ordered = sorted(report.times)
        report.p50_s = round(statistics.median(ordered), 3)
        report.p99_s = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=Options.jobs)
    parser.add_argument("--clients", type=int, default=Options.clients)
    parser.add_argument("--workers", type=int, default=Options.workers)
    parser.add_argument("--kill-every", type=float, default=Options.kill_every_s, help="seconds; 0 disables")
    parser.add_argument("--duplicates", type=float, default=Options.duplicate_rate)
    parser.add_argument("--errors", type=float, default=Options.error_rate)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    options = Options(args.jobs, args.clients, args.workers, args.kill_every, args.duplicates, args.errors)
    report = soak(options)
    figures: dict[str, Any] = {k: v for k, v in asdict(report).items() if k != "times"}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"soak: {options.jobs} jobs, {options.clients} clients, {options.workers} workers")
        for name, value in figures.items():
            print(f"  {name:28} {value}")
    return 0 if report.lost == 0 and report.refused == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
