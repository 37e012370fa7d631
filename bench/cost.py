"""Cost per job: AWS requests, Lambda time and log bytes per job, priced at us-east-1 list prices.

Runs jobs through the real code in one process: moto for AWS, ``chalice.test.Client`` for
the API, the worker handler fed real-shaped SQS events, and an OpenAI-compatible fake on
127.0.0.1 that answers at once (its key comes from the provider-keys secret, as in AWS).
Botocore handlers on the clients ``chalicelib.aws`` makes count every request by service
and operation and the DynamoDB capacity it consumes (item sizes, index writes); handler wall
time and the ``chalicelib`` log lines (INFO, in Lambda's format) are measured per
invocation. Provider latency is assumed, not measured, and prices come from
``bench.pricing``. Prints a table per scenario, then totals, ratios and what dominates.

    python -m bench.cost --jobs 20
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

from bench.meter import Meter, TableShape, Tally
from bench.pricing import (
    PLATFORM_LINES,
    PRICES,
    REQUEST_ID,
    Assumed,
    Line,
    combine,
    ms_per_invocation,
    polls_for,
    price,
    total,
    worker_duration,
)
from chalicelib import aws, wiring
from chalicelib.sqs_poller import SqsPoller
from tests.support.aws import PROJECT_DIR, AwsStack, fake_aws_environment
from tests.support.fake_http import FakeHttpServer, RecordedRequest, Reply, json_reply

PHASES = {
    "submit": "API: submit",
    "poll_open": "API: each poll while open (202)",
    "poll_done": "API: final poll (200)",
    "worker": "worker handler",
    "esm": "SQS event source mapping",
}
SUBMIT_PATH = "/v1/async/chat/completions"


class LambdaLogBytes(logging.Handler):
    """Sizes each ``chalicelib`` record as Lambda's text format writes it to CloudWatch Logs."""

    def __init__(self, meter: Meter) -> None:
        super().__init__(logging.INFO)
        self._meter = meter
        line = f"[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t{REQUEST_ID}\t%(message)s"
        self.setFormatter(logging.Formatter(line, "%Y-%m-%dT%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self._meter.add("log_bytes", len(self.format(record).encode()) + 1)
        self._meter.add("log_events")


# the provider, the scenarios and the run -----------------------------------------------------------
class InstantProvider(FakeHttpServer):
    """OpenAI chat completions answered at once; ``max_completion_tokens`` sets the answer (4 bytes a token)."""

    def respond(self, request: RecordedRequest) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        tokens = int(body.get("max_completion_tokens") or 75)
        content = ("All queues drain in time. " * (tokens // 6 + 1))[: tokens * 4]
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        usage = {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}
        reply = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body.get("model")}
        return json_reply(200, reply | {"choices": [choice], "usage": usage})


@dataclass(frozen=True)
class Scenario:
    name: str
    body: dict[str, Any]
    keyed: bool = False


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


SCENARIOS = (
    Scenario("small chat job (300-byte answer)", chat("Write a haiku about queues.")),
    Scenario("request > 32 KB (kept in S3)", chat("Summarise this report. " * 1800)),
    Scenario("result > 32 KB (kept in S3)", chat("Write a long story.", max_completion_tokens=12000)),
    Scenario("small chat job, rate-limited virtual key", chat("Write a haiku about queues."), keyed=True),
)


@dataclass(frozen=True)
class Measured:
    scenario: Scenario
    per_job: dict[str, Tally]  # steady state, per phase
    per_container: dict[str, Tally]  # the first job's extra requests, per phase


class Bench:
    """Drives jobs through the API (Chalice's test client) and the worker (fed by an SQS poller)."""

    def __init__(self, meter: Meter, client: Client, worker: Any, queue_url: str, key: str) -> None:
        self._meter, self._client, self._worker, self._key = meter, client, worker, key
        self._poller = SqsPoller(aws.client("sqs"), queue_url, self._run_worker, "worker", 300, wait_s=0)

    def measure(self, scenario: Scenario, jobs: int) -> Measured:
        self._meter.take()
        self._job(scenario)
        first = self._meter.take()
        for _ in range(jobs):
            self._job(scenario)
        steady = {phase: combine([(tally, 1 / jobs)]) for phase, tally in self._meter.take().items()}
        once: dict[str, Tally] = {}
        for phase, tally in first.items():
            extra = {n: v - steady.get(phase, {}).get(n, 0.0) for n, v in tally.items() if "." in n}
            if any(v >= 0.5 for v in extra.values()):
                once[phase] = {n: round(v) for n, v in extra.items() if v >= 0.5}
        return Measured(scenario, steady, once)

    def _job(self, scenario: Scenario) -> None:
        """Submit, poll once while open, run the worker on the message, poll to the end."""
        submitted = self._api("submit", "POST", SUBMIT_PATH, scenario, json.dumps(scenario.body).encode())
        assert submitted.status_code == 202, submitted.body
        path = f"{SUBMIT_PATH}/{json.loads(submitted.body)['id']}"
        assert self._api("poll_open", "GET", path, scenario).status_code == 202
        self._meter.phase = "esm"
        assert self._poller.poll_once() == 1
        self._meter.phase = "setup"
        done = self._api("poll_done", "GET", path, scenario)
        assert done.status_code == 200 and json.loads(done.body)["status"] == "completed", done.body[:300]

    def _api(self, phase: str, method: str, path: str, scenario: Scenario, body: bytes = b"") -> Any:
        headers = {"Content-Type": "application/json"} | ({"x-bf-vk": self._key} if scenario.keyed else {})
        with self._meter.invocation(phase):
            response = self._client.http.request(method, path, headers=headers, body=body)
        sent = len(response.body) + sum(len(k) + len(v) + 4 for k, v in response.headers.items())
        self._meter.tallies[phase]["out_bytes"] += sent
        return response

    def _run_worker(self, event: dict[str, Any], context: Any) -> Any:
        with self._meter.invocation("worker"):
            return self._worker(event, context)


def measure_all(jobs: int) -> list[Measured]:
    from app import app

    with pytest.MonkeyPatch.context() as env, mock_aws(), InstantProvider() as provider:
        fake_aws_environment(env)
        wiring.reset()
        stack = AwsStack.create()
        keys = json.dumps({"openai": "sk-bench-0123456789"})
        secret = aws.client("secretsmanager").create_secret(Name="bench-provider-keys", SecretString=keys)
        env.setenv("ASYNCGATE_PROVIDER_KEYS_SECRET", secret["ARN"])
        env.setenv("OPENAI_BASE_URL", f"{provider.root_url}/v1")
        env.setenv("ASYNCGATE_JOBS_QUEUE", stack.queue_url)  # a URL, as CloudFormation's Ref gives the Lambdas
        key = wiring.container().key_admin.create("bench", rate_limit_per_minute=1_000_000).value
        describe = aws.client("dynamodb").describe_table
        tables = (stack.settings.jobs_table, stack.settings.keys_table)
        meter = Meter({name: TableShape.of(describe(TableName=name)["Table"]) for name in tables})
        with Client(app, project_dir=str(PROJECT_DIR), stage_name="local") as client:
            bench = Bench(meter, client, app.handler_map["worker"], stack.queue_url, key)
            for service in ("dynamodb", "sqs", "s3", "secretsmanager"):
                meter.attach(aws.client(service))
            handler = LambdaLogBytes(meter)
            logging.getLogger("chalicelib").addHandler(handler)
            try:
                return [bench.measure(scenario, jobs) for scenario in SCENARIOS]
            finally:
                logging.getLogger("chalicelib").removeHandler(handler)


def cold_start_ms() -> float:
    """Import time of the app in a fresh interpreter, best of three: our part of Lambda's INIT."""
    code = "import time; t = time.perf_counter(); import app; print((time.perf_counter() - t) * 1000)"
    command = [sys.executable, "-c", code]
    return min(float(subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, check=True).stdout) for _ in "abc")


# report ----------------------------------------------------------------------------------------------
def per_million(dollars_per_job: float) -> str:
    return f"{dollars_per_job * 1e6:,.2f}"


def quantity(line: Line) -> str:
    return f"{line.quantity / 1024:,.1f} KiB" if line.unit == "B" else f"{line.quantity:.3g} {line.unit}"


def requests_text(tally: Tally) -> str:
    listed = " · ".join(f"{name} {tally[name]:g}" for name in sorted(tally) if "." in name) or "none"
    units = [f"{tally[u]:g} {u[-3:].upper()}" for u in ("dynamodb_wru", "dynamodb_rru") if tally.get(u)]
    return listed + (f" ({', '.join(units)})" if units else "")


def scenario_report(measured: Measured, assumed: Assumed, init_ms: float) -> list[str]:
    latencies = assumed.provider_latency_s
    body_bytes = len(json.dumps(measured.scenario.body).encode())
    out = [f"== {measured.scenario.name}: request body {body_bytes:,} B =="]
    for phase, label in PHASES.items():
        tally = measured.per_job.get(phase, {})
        logged = f", {tally.get('log_bytes', 0.0):.0f} B logged" if tally.get("invocations") else ""
        timing = f" [{ms_per_invocation(measured.per_job, phase):.1f} ms{logged}]" if tally.get("invocations") else ""
        out.append(f"  {label:37} {requests_text(tally)}{timing}")
    for phase, tally in measured.per_container.items():
        out.append(f"  {'once per container (' + PHASES[phase] + ')':37} {requests_text(tally)}")
    polls = ", ".join(f"{polls_for(latency)} at {latency:g} s" for latency in latencies)
    out.append(f"  polls (Retry-After honoured): {polls}; [handler wall time, provider excluded; our log lines]")
    priced = [price(measured, latency, assumed, init_ms) for latency in latencies]
    head = "".join(f"{f'$/M jobs @ {s:g} s':>17}" for s in latencies)
    out.append(
        f"  {f'line item ({assumed.architecture}), per job at ' + ' / '.join(f'{s:g} s' for s in latencies):66}{head}"
    )
    for row in zip(*priced, strict=True):
        amounts = " / ".join(quantity(line) for line in row)
        out.append(f"  {row[0].name:40}{amounts:>26}" + "".join(f"{per_million(line.dollars):>17}" for line in row))
    out.append(f"  {'total':66}" + "".join(f"{per_million(total(lines)):>17}" for lines in priced))
    for latency, lines in zip(latencies, priced, strict=True):
        top = max(lines, key=lambda line: line.dollars)
        out.append(f"  dominant at {latency:g} s: {top.name}, {top.dollars / total(lines):.0%} of the total")
    return out


def summary(results: list[Measured], assumed: Assumed, init_ms: float) -> list[str]:
    cases = [(s, replace(assumed, architecture=a)) for s in assumed.provider_latency_s for a in ("x86_64", "arm64")]
    head = "".join(f"{f'{a.architecture} {s:g} s':>14}" for s, a in cases)
    out = ["== $ per million jobs ==", f"  {'scenario':46}{head}"]
    small = [total(price(results[0], s, a, init_ms)) for s, a in cases]
    for measured in results:
        totals = [total(price(measured, s, a, init_ms)) for s, a in cases]
        out.append(f"  {measured.scenario.name:46}" + "".join(f"{per_million(t):>14}" for t in totals))
        if measured is not results[0]:
            ratios = "".join(f"{f'{t / b:.2f}x':>14}" for t, b in zip(totals, small, strict=True))
            out.append(f"  {'  ratio to the small job':46}{ratios}")
    arm = ", ".join(f"{small[i + 1] / small[i]:.2f} at {cases[i][0]:g} s" for i in range(0, len(cases), 2))
    out += [f"  arm64 / x86_64, small job: {arm}", f"  {'worker duration of a small job, by memory':46}{head}"]
    for memory in (128, 256, 512, 1024, 1769):
        row = [worker_duration(price(results[0], s, replace(a, worker_memory_mb=memory), init_ms)) for s, a in cases]
        out.append(f"  {f'{memory} MB':46}" + "".join(f"{per_million(d):>14}" for d in row))
    for latency in assumed.provider_latency_s:
        one = total(price(results[0], latency, assumed, init_ms))
        ten = total(price(results[0], latency, replace(assumed, jobs_per_worker_invocation=10), init_ms))
        out.append(
            f"  10 jobs a worker invocation (full SQS batches, run concurrently) at {latency:g} s: "
            f"{per_million(ten)} instead of {per_million(one)} ({ten / one:.2f}x)"
        )
    template = json.loads((PROJECT_DIR / "deploy" / "resources.json").read_text())["Resources"]
    secrets = sum(resource.get("Type") == "AWS::SecretsManager::Secret" for resource in template.values())
    out.append(
        f"fixed, not per job: {secrets} secrets x ${PRICES['secret_month']:.2f} = "
        f"${secrets * PRICES['secret_month']:.2f} a month; idle SQS long polls of the event source mappings, "
        "table storage and backups are not modelled"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs measured per scenario, after one warm-up job")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    started = time.perf_counter()
    functions = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())["lambda_functions"]
    memory = {"api_memory_mb": functions["api_handler"]["lambda_memory_size"]}
    assumed = Assumed(**memory, worker_memory_mb=functions["worker"]["lambda_memory_size"])
    init_ms = cold_start_ms()
    results = measure_all(args.jobs)
    print(f"asyncgate cost per job: {args.jobs} jobs a scenario through the real code on moto, us-east-1 prices")
    print("prices ($ per unit):\n" + "\n".join(f"  {name:34} {value:.10g}" for name, value in PRICES.items()))
    print("assumptions:\n" + "\n".join(f"  {name:34} {value}" for name, value in asdict(assumed).items()))
    print(f"  {'cold start (import app, measured)':34} {init_ms:.0f} ms a container, billed like duration")
    print(f"  {'platform log lines per invocation':34} START, END, REPORT: {sum(map(len, PLATFORM_LINES)) + 3} B")
    print("  handler times: this machine against in-process moto, which stands in for AWS round trips;")
    print("  a 512 MB Lambda has about 0.3 vCPU, so CPU-bound parts run slower there")
    for measured in results:
        print("\n" + "\n".join(scenario_report(measured, assumed, init_ms)))
        unmodelled = sorted({n for tally in measured.per_job.values() for n in tally if n.startswith("unmodelled")})
        if unmodelled:
            print(f"  DynamoDB operations not priced: {', '.join(unmodelled)}")
    print("\n" + "\n".join(summary(results, assumed, init_ms)))
    print(f"(bench wall time {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
