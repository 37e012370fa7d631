"""What a job costs at us-east-1 list prices, from the AWS usage ``bench.cost`` measured.

``PRICES`` holds every price with its page; ``Assumed`` what is not measured (provider
latency, container reuse, batch size, memory, architecture). ``price`` turns one job's
usage (per phase, plus a container's one-off requests) into priced line items.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from bench.meter import Tally
from chalicelib.contract import RequestType
from chalicelib.jobs import Job, JobStatus, poll_interval_s

# us-east-1 list prices in dollars per unit (the key names the unit).
PRICES = {
    "api_gateway_rest_request": 3.50e-6,  # https://aws.amazon.com/api-gateway/pricing/ (REST, first 333 M a month)
    "lambda_request": 0.20e-6,  # https://aws.amazon.com/lambda/pricing/
    "lambda_gb_second_x86_64": 0.0000166667,  # same page; billed in 1 ms steps, INIT included
    "lambda_gb_second_arm64": 0.0000133334,
    "dynamodb_write_request_unit": 0.625e-6,  # https://aws.amazon.com/dynamodb/pricing/on-demand/
    "dynamodb_read_request_unit": 0.125e-6,  # 1 KB a WRU, 4 KB a strongly consistent RRU (0.5 eventual)
    "sqs_request": 0.40e-6,  # https://aws.amazon.com/sqs/pricing/ (standard; each 64 KB chunk a request)
    "s3_put_copy_post_list_request": 0.005e-3,  # https://aws.amazon.com/s3/pricing/ (S3 Standard)
    "s3_get_and_other_request": 0.0004e-3,  # same page; storage is negligible at these TTLs
    "secrets_manager_api_call": 0.05e-4,  # https://aws.amazon.com/secrets-manager/pricing/
    "secret_month": 0.40,  # same page: per secret, fixed
    "cloudwatch_logs_ingested_gb": 0.50,  # https://aws.amazon.com/cloudwatch/pricing/ (Logs, standard)
    "data_transfer_out_gb": 0.09,  # https://aws.amazon.com/ec2/pricing/on-demand/ (to the internet, first 10 TB)
}
GB = 2**30
S3_PUT_CLASS = ("PutObject", "CopyObject", "DeleteObjects", "ListObjectsV2")  # DeleteObjects is a POST
REQUEST_ID = "8f5b2c1e-4d3a-4b6f-9e21-0c7d5a9b3e14"
PLATFORM_LINES = (  # what Lambda itself logs per invocation (typical values; the size is what counts)
    f"START RequestId: {REQUEST_ID} Version: $LATEST",
    f"END RequestId: {REQUEST_ID}",
    f"REPORT RequestId: {REQUEST_ID}\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\t"
    "Max Memory Used: 98 MB\t",
)
API_PHASES = ("submit", "poll_open", "poll_done")
WORKER_DURATION = "Lambda worker duration (provider wait)"


@dataclass(frozen=True)
class Assumed:
    provider_latency_s: tuple[float, ...] = (5.0, 20.0)  # what the worker Lambda waits on the provider
    jobs_per_container: int = 500  # per warm container: amortises secret reads and cold starts
    jobs_per_worker_invocation: int = 1  # SQS batches hold one job at low traffic (summary: 10)
    log_event_overhead_bytes: int = 26  # per log event, as CloudWatch Logs sizes PutLogEvents
    api_memory_mb: int = 512  # replaced by .chalice/config.json
    worker_memory_mb: int = 512
    architecture: str = "x86_64"


def combine(parts: list[tuple[Tally, float]]) -> Tally:
    total: Tally = defaultdict(float)
    for tally, weight in parts:
        for name, value in tally.items():
            total[name] += value * weight
    return total


class Usage(Protocol):
    @property
    def per_job(self) -> dict[str, Tally]: ...  # steady state, per phase

    @property
    def per_container(self) -> dict[str, Tally]: ...  # a container's first job's extra requests, per phase


# pricing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    name: str
    quantity: float  # per job
    unit: str
    dollars: float  # per job


def polls_for(latency_s: float) -> int:
    """Polls by a client that honours Retry-After (1 s after the submit, then each poll's) for a job that
    ends just after ``latency_s``: all but the last answer 202."""
    job = Job("0", RequestType.CHAT_COMPLETION, JobStatus.PENDING, created_at_ms=0, result_ttl_s=3600)
    at_s, polls = 1, 1
    while at_s <= latency_s:
        at_s += poll_interval_s(job, at_s * 1000)
        polls += 1
    return polls


def ms_per_invocation(per_job: dict[str, Tally], phase: str) -> float:
    tally = per_job.get(phase, {})
    return tally.get("handler_ms", 0.0) / max(1.0, tally.get("invocations", 1.0))


def price(usage: Usage, latency_s: float, assumed: Assumed, init_ms: float) -> list[Line]:
    """Every line item of one job, with the job's duration set by the provider's latency."""
    per_job = usage.per_job
    batch, per_container = assumed.jobs_per_worker_invocation, 1 / assumed.jobs_per_container
    weights = {"submit": 1.0, "poll_open": polls_for(latency_s) - 1.0, "poll_done": 1.0, "worker": 1.0}
    parts = [(per_job.get(phase, {}), weight) for phase, weight in (weights | {"esm": 1 / batch}).items()]
    tally = combine(parts + [(once, per_container) for once in usage.per_container.values()])
    api_calls = sum(weights[phase] for phase in API_PHASES)
    api_ms = sum(math.ceil(ms_per_invocation(per_job, phase)) * weights[phase] for phase in API_PHASES)
    worker_ms = math.ceil(latency_s * 1000 + batch * ms_per_invocation(per_job, "worker")) / batch
    invocations = api_calls + 1 / batch
    events = tally["log_events"] + len(PLATFORM_LINES) * invocations
    platform_bytes = sum(len(line.encode()) + 1 for line in PLATFORM_LINES)
    log_bytes = tally["log_bytes"] + platform_bytes * invocations + events * assumed.log_event_overhead_bytes

    def requests(prefix: str, only: tuple[str, ...] = ()) -> float:
        return sum(v for n, v in tally.items() if n.startswith(prefix) and (not only or n.split(".")[1] in only))

    gb_s = PRICES[f"lambda_gb_second_{assumed.architecture}"]
    api_gb, worker_gb = assumed.api_memory_mb / 1024, assumed.worker_memory_mb / 1024
    s3_put = requests("s3.", S3_PUT_CLASS)
    rows = [
        ("API Gateway REST requests", api_calls, "req", PRICES["api_gateway_rest_request"]),
        ("Lambda API requests", api_calls, "req", PRICES["lambda_request"]),
        ("Lambda API duration", api_ms / 1000 * api_gb, "GB-s", gb_s),
        ("Lambda worker requests", 1 / batch, "req", PRICES["lambda_request"]),
        (WORKER_DURATION, worker_ms / 1000 * worker_gb, "GB-s", gb_s),
        ("Lambda cold starts (amortised)", init_ms / 1000 * (api_gb + worker_gb) * per_container, "GB-s", gb_s),
        ("DynamoDB writes", tally["dynamodb_wru"], "WRU", PRICES["dynamodb_write_request_unit"]),
        ("DynamoDB reads", tally["dynamodb_rru"], "RRU", PRICES["dynamodb_read_request_unit"]),
        ("SQS requests", requests("sqs."), "req", PRICES["sqs_request"]),
        ("S3 PUT/POST/LIST requests", s3_put, "req", PRICES["s3_put_copy_post_list_request"]),
        ("S3 GET requests", requests("s3.") - s3_put, "req", PRICES["s3_get_and_other_request"]),
        ("Secrets Manager calls (amortised)", requests("secretsmanager."), "req", PRICES["secrets_manager_api_call"]),
        ("CloudWatch Logs ingestion", log_bytes, "B", PRICES["cloudwatch_logs_ingested_gb"] / GB),
        ("Data transfer out (responses)", tally["out_bytes"], "B", PRICES["data_transfer_out_gb"] / GB),
    ]
    return [Line(name, quantity, unit, quantity * unit_price) for name, quantity, unit, unit_price in rows]


def total(lines: list[Line]) -> float:
    return sum(line.dollars for line in lines)


def worker_duration(lines: list[Line]) -> float:
    return next(line.dollars for line in lines if line.name == WORKER_DURATION)
