"""Least privilege, proven by running the code: each function's IAM policy (``chalicelib.iam``) allows
every AWS action its code performs, on the resource it touches, and nothing more.

One workload drives every AWS path of the three functions through the real code: moto for AWS,
``BedrockFake`` for Bedrock Runtime, ``AnthropicFake`` for the Files API. Each invocation runs in a
fresh container (``wiring.reset``) configured as the deployment configures it: the jobs queue as
a URL (CloudFormation's ``Ref``, so ``GetQueueUrl`` is never needed), the admin token and provider
keys as Secrets Manager ARNs. ``AwsCalls`` records each call (and presigned URL) as the function
that made it; the policies are built from the ARNs of the very resources moto holds.

What the code does not call but the function's role must allow is listed here: the SQS event
source mapping polls the function's queue with its role, and Lambda writes its logs with it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from chalice.test import Client, HTTPResponse
from moto import mock_aws

from chalicelib import aws, iam, wiring
from chalicelib.items import CALLER_INDEX
from chalicelib.key_store import KEY_ID_INDEX
from chalicelib.sqs_poller import SqsPoller
from tests.faults.hooks import Fault, client_error, hooked
from tests.functional.forms import EDITS, IMAGE, MASK, bucket_keys, encode_form
from tests.functional.payloads import CHAT, EMBEDDINGS, JSON_HEADERS, Kind
from tests.support.anthropic_fake import AnthropicFake
from tests.support.aws import PROJECT_DIR, AwsStack, fake_aws_environment
from tests.support.aws_calls import Access, AwsCalls, accesses, allowed_pairs, grants, is_allowed
from tests.support.bedrock_fake import BedrockFake, converse_path, invoke_path

EVENT_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")  # Lambda's SQS poller
LOGGING_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")  # the Lambda runtime's log writer
LAMBDA_NAMES = {"api_handler": "asyncgate-test", "worker": "asyncgate-test-worker", "dead_letters": "asyncgate-test-dl"}
SHARED_CLIENTS = ("dynamodb", "sqs", "s3", "secretsmanager")  # every service chalicelib.aws serves

ADMIN_TOKEN = "admin-token-iam-5e21"
ANTHROPIC_KEY = "sk-ant-iam-7d0c"
INLINE_LIMIT = 4096
MAX_INLINE_RESPONSE = 12_000
LONG_TEXT = "a prompt long enough for S3 " * 300  # over the inline limit
MID_DIMENSIONS = 400  # a mock embedding result between the inline limit and the inline response limit
WIDE_DIMENSIONS = 2000  # one above the inline response limit: polled as a presigned URL
BEDROCK_PROFILE = "us.amazon.nova-lite-v1:0"  # an inference profile
BEDROCK_EMBEDDER = "amazon.titan-embed-text-v2:0"  # a foundation model

Hook = tuple[str, str, Callable[..., Any]]


@dataclass(frozen=True)
class Observed:
    calls: AwsCalls
    arns: iam.Arns
    account: str
    region: str

    def accesses(self, function: str) -> list[Access]:
        """Recorded calls of ``function`` ∪ its event source's ∪ its logging's accesses."""
        found = [access for call in self.calls.of(function) for access in accesses(call, self.account)]
        group = f"arn:aws:logs:{self.region}:{self.account}:log-group:/aws/lambda/{LAMBDA_NAMES[function]}"
        found += [Access(action, f"{group}:log-stream:2025/01/01/[$LATEST]0f1e2d3c") for action in LOGGING_ACTIONS]
        queue = {"worker": self.arns.jobs_queue, "dead_letters": self.arns.dead_letter_queue}.get(function)
        if queue is not None:
            found += [Access(action, queue) for action in EVENT_SOURCE_ACTIONS]
        return found


class Gateway:
    """The three functions as deployed: each invocation a fresh container with the deployment's settings."""

    def __init__(self, calls: AwsCalls, stack: AwsStack) -> None:
        from app import app

        self._app = app
        self._calls = calls
        self._stack = stack
        self._client = Client(app, project_dir=str(PROJECT_DIR), stage_name="local")
        self._handed_out: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def invocation(self, function: str) -> Iterator[None]:
        wiring.reset()
        # Settings are read now, from this environment: Chalice's test client lays the stage's
        # variables (the queue by name) over it while serving, where the deployment has the URL.
        wiring.container()
        for service in SHARED_CLIENTS:
            self._calls.attach(aws.client(service))
        with self._calls.acting_as(function):
            yield

    # api_handler --------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        hooks: Sequence[Hook] = (),
    ) -> HTTPResponse:
        """Serve one request; ``hooks`` (service, botocore event, handler) go on the fresh container's clients."""
        with self.invocation("api_handler"), contextlib.ExitStack() as hooked_clients:
            for service, event, handler in hooks:
                hooked_clients.enter_context(hooked(service, event, handler))
            return self._client.http.request(method, path, headers=headers or {}, body=body)

    def post_json(
        self, path: str, body: Any, headers: dict[str, str] | None = None, hooks: Sequence[Hook] = ()
    ) -> HTTPResponse:
        return self.request("POST", path, {**JSON_HEADERS, **(headers or {})}, json.dumps(body).encode(), hooks)

    def submit(self, kind: Kind, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        response = self.post_json(kind.submit_path, body, headers)
        assert response.status_code == 202, response.body
        job_id: str = response.json_body["id"]
        return job_id

    def submit_edit(self, prompt: str) -> str:
        uploads = [("image", ("cat.png", IMAGE, "image/png")), ("mask", ("mask.png", MASK, "image/png"))]
        body, content_type = encode_form({"model": "mock/echo", "prompt": prompt}, uploads)
        response = self.request("POST", EDITS, {"Content-Type": content_type}, body)
        assert response.status_code == 202, response.body
        job_id: str = response.json_body["id"]
        return job_id

    def poll(self, path: str, job_id: str) -> dict[str, Any]:
        response = self.request("GET", f"{path}/{job_id}")
        assert response.status_code == 200, response.body
        body: dict[str, Any] = response.json_body
        return body

    # worker and dead_letters, fed as Lambda's event source feeds them ---------------------
    def drain(self, function: str, queue_url: str) -> int:
        def handler(event: dict[str, Any], context: Any) -> Any:
            self._handed_out.extend((queue_url, record["receiptHandle"]) for record in event["Records"])
            with self.invocation(function):
                return self._app.handler_map[function](event, context)

        poller = SqsPoller(aws.client("sqs"), queue_url, handler, function, 300, wait_s=0)
        handled = 0
        while count := poller.poll_once():
            handled += count
        return handled

    def make_all_visible(self) -> None:
        """Hand back now the messages the worker deferred, instead of waiting out their delay."""
        sqs = aws.client("sqs")
        for queue_url, handle in self._handed_out:
            with contextlib.suppress(ClientError):  # deleted: its job is done
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        self._handed_out.clear()


def create_secret(name: str, value: str) -> str:
    arn: str = aws.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
    return arn


def index_arn(table: dict[str, Any], index: str) -> str:
    """The index's ARN (moto leaves ``IndexArn`` out, so it is spelled as AWS spells it)."""
    assert index in [gsi["IndexName"] for gsi in table["GlobalSecondaryIndexes"]]
    return iam.index_arn(table["TableArn"], index)


def deployed_arns(stack: AwsStack, secrets: dict[str, str], account: str, region: str) -> iam.Arns:
    """``iam.Arns`` of the resources moto holds, read back from moto."""
    dynamodb, sqs = aws.client("dynamodb"), aws.client("sqs")
    jobs = dynamodb.describe_table(TableName=stack.settings.jobs_table)["Table"]
    keys = dynamodb.describe_table(TableName=stack.settings.keys_table)["Table"]

    def queue_arn(url: str) -> str:
        found: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return found

    known: dict[str, Any] = {
        "jobs_table": jobs["TableArn"],
        "jobs_index": index_arn(jobs, CALLER_INDEX),
        "keys_table": keys["TableArn"],
        "keys_index": index_arn(keys, KEY_ID_INDEX),
        "jobs_queue": queue_arn(stack.queue_url),
        "dead_letter_queue": queue_arn(stack.dlq_url),
        "payload_bucket": f"arn:aws:s3:::{stack.settings.bucket}",
        "payload_objects": f"arn:aws:s3:::{stack.settings.bucket}/*",
        "admin_token_secret": secrets["admin"],
        "provider_keys_secret": secrets["providers"],
        "log_group": {
            function: f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{name}:*"
            for function, name in LAMBDA_NAMES.items()
        },
        "bedrock_models": iam.bedrock_arns("aws", account),
    }
    unknown = [field.name for field in fields(iam.Arns) if field.name not in known]
    assert unknown == [], f"teach deployed_arns the ARN of {unknown}"
    return iam.Arns(**{field.name: known[field.name] for field in fields(iam.Arns)})


def run_workload(gateway: Gateway, stack: AwsStack, bedrock: BedrockFake, anthropic: AnthropicFake) -> None:
    """Every AWS path of every function, each checked to have done what it is there for."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    # api_handler: admin routes (token from Secrets Manager), virtual keys, the rate limit
    limited = gateway.post_json("/api/keys", {"name": "limited", "rate_limit_per_minute": 1}, admin)
    assert limited.status_code == 201, limited.body
    spare = gateway.post_json("/api/keys", {"name": "spare"}, admin)
    assert spare.status_code == 201, spare.body
    listed = gateway.request("GET", "/api/keys", admin)
    assert listed.status_code == 200 and len(listed.json_body["data"]) == 2
    disabled = gateway.request("POST", f"/api/keys/{spare.json_body['id']}/disable", admin)
    assert disabled.status_code == 200 and disabled.json_body["disabled_at"] is not None
    keyed = {"x-bf-vk": limited.json_body["key"]}
    gateway.submit(CHAT, CHAT.body, keyed)
    # one per minute: a third try is over the limit even if the first two straddle a minute
    assert 429 in [gateway.post_json(CHAT.submit_path, CHAT.body, keyed).status_code for _ in range(2)]

    # api_handler: submits, small, large (request in S3) and multipart (uploads in S3)
    small = gateway.submit(CHAT, CHAT.body)
    large = gateway.submit(CHAT, CHAT.with_fields(messages=[{"role": "user", "content": LONG_TEXT}]))
    edit = gateway.submit_edit(LONG_TEXT)
    assert {f"requests/{large}.json", f"uploads/{edit}/image/0", f"requests/{edit}.json"} <= set(bucket_keys(stack))
    mid_result = gateway.submit(EMBEDDINGS, EMBEDDINGS.with_fields(dimensions=MID_DIMENSIONS))
    wide_result = gateway.submit(EMBEDDINGS, EMBEDDINGS.with_fields(dimensions=WIDE_DIMENSIONS))
    flaky = gateway.submit(CHAT, CHAT.with_fields(model="mock/flaky-1"))
    bedrock_chat = gateway.submit(CHAT, CHAT.with_fields(model=f"bedrock/{BEDROCK_PROFILE}"))
    bedrock_embedding = gateway.submit(EMBEDDINGS, EMBEDDINGS.with_fields(model=f"bedrock/{BEDROCK_EMBEDDER}"))

    # api_handler: Idempotency-Key, replayed and reused with another body
    once = {"Idempotency-Key": "iam-order-1"}
    first = gateway.submit(CHAT, CHAT.body, once)
    assert gateway.submit(CHAT, CHAT.body, once) == first
    reused = gateway.post_json(CHAT.submit_path, CHAT.with_fields(temperature=0.5), once)
    assert reused.status_code == 422, reused.body

    # api_handler: the queue refusing a job rolls it back (item, idempotency record, request blob)
    before = set(bucket_keys(stack))
    for headers in ({}, {"Idempotency-Key": "iam-order-2"}):
        queue_down = Fault(lambda: client_error("AWS.SimpleQueueService.ServiceUnavailable", "SendMessage", 503))
        body = CHAT.with_fields(messages=[{"role": "user", "content": LONG_TEXT}])
        hooks = [("sqs", "before-call.sqs.SendMessage", queue_down)]
        refused = gateway.post_json(CHAT.submit_path, body, headers, hooks)
        assert refused.status_code == 503 and queue_down.injected == 1, refused.body
    assert set(bucket_keys(stack)) == before

    # api_handler: cancel a pending job with uploads, which deletes its inputs
    cancelled = gateway.submit_edit(LONG_TEXT)
    assert gateway.request("DELETE", f"{EDITS}/{cancelled}").status_code == 200
    assert not [key for key in bucket_keys(stack) if cancelled in key]

    # api_handler: a file upload, with the Anthropic key from the provider keys secret
    pdf = {"file": ("a.pdf", b"%PDF-1.7", "application/pdf")}
    prepared = requests.Request("POST", "http://x/", files=pdf).prepare()
    assert isinstance(prepared.body, bytes)
    form = {"Content-Type": prepared.headers["Content-Type"]}
    uploaded = gateway.request("POST", "/anthropic/v1/files", form, prepared.body)
    assert uploaded.status_code == 200, uploaded.body
    assert len(anthropic.uploads) == 1

    # dead_letters: a job whose message was dead-lettered is failed and its inputs deleted
    abandoned = gateway.submit_edit(LONG_TEXT)
    aws.client("sqs").send_message(QueueUrl=stack.dlq_url, MessageBody=abandoned)
    assert gateway.drain("dead_letters", stack.dlq_url) == 1
    assert gateway.poll(EDITS, abandoned)["error"]["error"]["code"] == "job_abandoned"
    assert not [key for key in bucket_keys(stack) if abandoned in key]

    # worker: every job; the flaky one is handed back to the queue, then runs again
    assert gateway.drain("worker", stack.queue_url) > 0
    assert (stack.item(flaky) or {}).get("status") == {"S": "pending"}
    gateway.make_all_visible()
    assert gateway.drain("worker", stack.queue_url) >= 1
    assert stack.queued_messages() == 0

    # api_handler: polls (inline, from S3, a presigned URL) and the listing
    for path, job_id in [(CHAT.submit_path, small), (CHAT.submit_path, large), (CHAT.submit_path, flaky)]:
        assert gateway.poll(path, job_id)["status"] == "completed"
    edited = gateway.poll(EDITS, edit)  # a mock image: over the inline response limit too
    assert edited["status"] == "completed" and edited["result_url"].startswith("https://")
    mid = gateway.poll(EMBEDDINGS.submit_path, mid_result)
    assert mid["status"] == "completed" and mid["result"] is not None and "result_url" not in mid
    wide = gateway.poll(EMBEDDINGS.submit_path, wide_result)
    assert wide["status"] == "completed" and wide["result"] is None and wide["result_url"].startswith("https://")
    for path, job_id in [(CHAT.submit_path, bedrock_chat), (EMBEDDINGS.submit_path, bedrock_embedding)]:
        assert gateway.poll(path, job_id)["status"] == "completed"
    assert len(bedrock.requests_to(converse_path(BEDROCK_PROFILE))) == 1
    assert len(bedrock.requests_to(invoke_path(BEDROCK_EMBEDDER))) == 1
    page = gateway.request("GET", "/v1/async/jobs")
    assert page.status_code == 200 and len(page.json_body["data"]) > 5
    for item in (stack.item(large), stack.item(mid_result)):
        assert item is not None and "request_ref" not in item


@pytest.fixture(scope="module")
def observed() -> Observed:
    calls = AwsCalls()
    with contextlib.ExitStack() as stack_of:
        monkeypatch = stack_of.enter_context(pytest.MonkeyPatch.context())
        fake_aws_environment(monkeypatch)
        stack_of.enter_context(mock_aws())
        stack_of.callback(wiring.reset)
        bedrock = stack_of.enter_context(BedrockFake(access_key_id=None))  # moto swaps the credentials
        anthropic = stack_of.enter_context(AnthropicFake(api_key=ANTHROPIC_KEY))
        stack_of.enter_context(calls.installed())
        wiring.reset()
        stack = AwsStack.create()
        identity = aws.client("sts").get_caller_identity()
        account, region = str(identity["Account"]), "us-east-1"
        secrets = {
            "admin": create_secret("asyncgate/admin-token", ADMIN_TOKEN),
            "providers": create_secret("asyncgate/provider-keys", json.dumps({"anthropic": ANTHROPIC_KEY})),
        }
        environment = {
            "ASYNCGATE_JOBS_QUEUE": stack.queue_url,
            "ASYNCGATE_ADMIN_TOKEN_SECRET": secrets["admin"],
            "ASYNCGATE_PROVIDER_KEYS_SECRET": secrets["providers"],
            "ASYNCGATE_INLINE_LIMIT_BYTES": str(INLINE_LIMIT),
            "ASYNCGATE_MAX_INLINE_RESPONSE_BYTES": str(MAX_INLINE_RESPONSE),
            "ASYNCGATE_INLINE_RETRIES": "0",
            "ASYNCGATE_KEY_CACHE_SECONDS": "0",
            "ANTHROPIC_BASE_URL": anthropic.base_url,
            **{name: value for name, value in bedrock.environ().items() if name.startswith("BEDROCK_")},
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        run_workload(Gateway(calls, stack), stack, bedrock, anthropic)
        arns = deployed_arns(stack, secrets, account, region)
    return Observed(calls, arns, account, region)


@pytest.mark.parametrize("function", iam.FUNCTIONS)
def test_every_aws_call_of_a_function_is_allowed_by_its_policy_on_the_resource_it_touches(
    observed: Observed, function: str
) -> None:
    statements = iam.statements(function, observed.arns)

    refused = [
        f"{access.action} on {access.resource}  ←  {call}"
        for call in observed.calls.of(function)
        for access in accesses(call, observed.account)
        if not is_allowed(statements, access)
    ]

    assert refused == []


@pytest.mark.parametrize("function", iam.FUNCTIONS)
def test_a_function_policy_allows_exactly_the_actions_the_function_performs(observed: Observed, function: str) -> None:
    performed = {access.action for access in observed.accesses(function)}
    granted = {action for action, _ in allowed_pairs(iam.statements(function, observed.arns))}

    assert {"not granted": sorted(performed - granted), "never performed": sorted(granted - performed)} == {
        "not granted": [],
        "never performed": [],
    }


@pytest.mark.parametrize("function", iam.FUNCTIONS)
def test_every_resource_a_function_policy_names_is_one_the_function_touches(observed: Observed, function: str) -> None:
    performed = observed.accesses(function)

    unused = [
        pair
        for pair in allowed_pairs(iam.statements(function, observed.arns))
        if not any(grants(pair, access) for access in performed)
    ]

    assert unused == []


@pytest.mark.parametrize("function", iam.FUNCTIONS)
def test_no_resource_a_function_policy_names_reaches_beyond_the_deployment(observed: Observed, function: str) -> None:
    where, other = f"{observed.region}:{observed.account}", "someone-elses"
    foreign = [
        f"arn:aws:dynamodb:{where}:table/{other}-table",
        f"arn:aws:dynamodb:{where}:table/{other}-table/index/{CALLER_INDEX}",
        f"arn:aws:sqs:{where}:{other}-queue",
        f"arn:aws:s3:::{other}-bucket",
        f"arn:aws:s3:::{other}-bucket/requests/job.json",
        f"arn:aws:secretsmanager:{where}:secret:{other}-secret-AbCdEf",
        f"arn:aws:logs:{where}:log-group:/aws/lambda/{other}-function:log-stream:2025/01/01/[$LATEST]0f1e",
        f"arn:aws:bedrock:{observed.region}:999999999999:inference-profile/{BEDROCK_PROFILE}",
        f"arn:aws:bedrock:{where}:agent/{other}-agent",
    ]

    reaching = [
        (action, pattern, resource)
        for action, pattern in allowed_pairs(iam.statements(function, observed.arns))
        for resource in foreign
        if grants((action, pattern), Access(action, resource))
    ]

    assert reaching == []
