"""A recorder of the AWS calls code makes, and those calls as the IAM actions they need, on ARNs.

``AwsCalls`` listens to botocore's ``provide-client-params`` event. botocore emits it, with the
operation's model and the caller's parameters, at the start of every API call *and* of every
``generate_presigned_url``: a presigned URL makes no call, but the request it carries is signed
with the signer's credentials, so AWS authorizes it against the signer's policy when it is used
(an ``s3:GetObject`` by the function that signed it). Both are recorded; ``presigned`` says which.
The event fires before parameter validation and before anything is sent, so a call a fault hook
refuses afterwards still counts: the code made it.

Hooks are attached two ways: ``attach(client)`` on a client that already exists (the shared
clients of ``chalicelib.aws``), and, while ``installed()``, through botocore's
``BUILTIN_HANDLERS``, which every botocore session created meanwhile registers, so clients the
code builds for itself (the Bedrock Runtime client) are seen without reaching into the code. A
call seen by both hooks is recorded once. Calls are attributed to the function named by
``acting_as``; calls outside it (test setup, the stand-in for Lambda's event source) are ignored.

``accesses`` maps a call to the IAM action(s) it needs and the resource ARN of each, per the
Service Authorization Reference: a transaction needs each item's action, ``DeleteObjects`` needs
``s3:DeleteObject`` per key, listing a bucket is ``s3:ListBucket`` on the bucket, a query on an
index is authorized on the index ARN, Converse is ``bedrock:InvokeModel``. A call it does not know
maps to an ``unmapped:`` resource, which no policy allows: the test then fails, never passes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from botocore import handlers

EVENT = "provide-client-params"
_SEEN = "tests.aws_calls.recorded"  # marks a call's context once recorded, so two hooks record it once

_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
_SQS_BATCHES = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_S3_ACTIONS = {"ListObjectsV2": "ListBucket", "ListObjects": "ListBucket", "HeadObject": "GetObject"}
_BEDROCK_ACTIONS = {
    "Converse": "InvokeModel",
    "InvokeModel": "InvokeModel",
    "ConverseStream": "InvokeModelWithResponseStream",
    "InvokeModelWithResponseStream": "InvokeModelWithResponseStream",
}
_PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "us-gov", "global", "jp", "au", "ca"})


@dataclass(frozen=True)
class AwsCall:
    function: str
    service: str  # botocore's service name: ``dynamodb``, ``bedrock-runtime``...
    iam_prefix: str  # the service's signing name, which is its IAM action prefix (``bedrock``)
    operation: str
    params: Mapping[str, Any]
    region: str | None  # None for presigned URLs (botocore does not pass it)
    presigned: bool = False

    def __str__(self) -> str:
        kind = "presigned URL for " if self.presigned else ""
        shown = {k: v for k, v in self.params.items() if k not in ("Item", "Body", "ExpressionAttributeValues")}
        return f"{self.function}: {kind}{self.service}.{self.operation}({shown})"[:400]


@dataclass(frozen=True)
class Access:
    """One IAM action on one resource."""

    action: str
    resource: str


class AwsCalls:
    def __init__(self) -> None:
        self.calls: list[AwsCall] = []
        self._function: str | None = None
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        client.meta.events.register(EVENT, self._seen)

    @contextmanager
    def installed(self) -> Iterator[AwsCalls]:
        """Hook every botocore session created inside the block."""
        entry = (EVENT, self._seen)
        handlers.BUILTIN_HANDLERS.append(entry)
        try:
            yield self
        finally:
            handlers.BUILTIN_HANDLERS.remove(entry)

    @contextmanager
    def acting_as(self, function: str) -> Iterator[None]:
        """Attribute the calls made inside the block (from any thread) to ``function``."""
        assert self._function is None, f"already recording for {self._function}"
        self._function = function
        try:
            yield
        finally:
            self._function = None

    def of(self, function: str) -> list[AwsCall]:
        with self._lock:
            return [call for call in self.calls if call.function == function]

    def _seen(self, params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        function = self._function
        if function is None or context.get(_SEEN):
            return
        context[_SEEN] = True
        service = model.service_model
        call = AwsCall(
            function=function,
            service=str(service.service_name),
            iam_prefix=str(service.signing_name),
            operation=str(model.name),
            params=dict(params),
            region=context.get("client_region"),
            presigned=bool(context.get("is_presign_request")),
        )
        with self._lock:
            self.calls.append(call)


# calls → IAM actions on ARNs ---------------------------------------------------------------


def accesses(call: AwsCall, account: str) -> list[Access]:
    """What IAM must allow for ``call`` (made in ``account``): one access per action and resource."""
    mapper = _MAPPERS.get(call.service)
    found = mapper(call, account) if mapper is not None else []
    return found or [Access(f"{call.iam_prefix}:{call.operation}", f"unmapped:{call.service}:{call.operation}")]


def _dynamodb(call: AwsCall, account: str) -> list[Access]:
    params, op = call.params, call.operation

    def table(name: str) -> str:
        return name if name.startswith("arn:") else f"arn:aws:dynamodb:{call.region}:{account}:table/{name}"

    if op in ("TransactWriteItems", "TransactGetItems"):
        found = []
        for item in params.get("TransactItems", []):
            for kind, request in item.items():
                found.append(Access(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table(request["TableName"])))
        return found
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [Access(f"dynamodb:{op}", table(name)) for name in params.get("RequestItems", {})]
    if "TableName" not in params:
        return []
    resource = table(params["TableName"])
    if op in ("Query", "Scan") and params.get("IndexName"):
        resource = f"{resource}/index/{params['IndexName']}"
    return [Access(f"dynamodb:{op}", resource)]


def _sqs(call: AwsCall, account: str) -> list[Access]:
    action = f"sqs:{_SQS_BATCHES.get(call.operation, call.operation)}"
    if "QueueUrl" in call.params:
        owner, name = urlsplit(call.params["QueueUrl"]).path.strip("/").split("/")
        return [Access(action, f"arn:aws:sqs:{call.region}:{owner}:{name}")]
    if "QueueName" in call.params:
        owner = call.params.get("QueueOwnerAWSAccountId") or account
        return [Access(action, f"arn:aws:sqs:{call.region}:{owner}:{call.params['QueueName']}")]
    return []


def _s3(call: AwsCall, account: str) -> list[Access]:
    params, op = call.params, call.operation
    bucket = f"arn:aws:s3:::{params.get('Bucket')}"
    if op == "DeleteObjects":
        return [Access("s3:DeleteObject", f"{bucket}/{item['Key']}") for item in params["Delete"]["Objects"]]
    action = f"s3:{_S3_ACTIONS.get(op, op)}"
    return [Access(action, f"{bucket}/{params['Key']}" if "Key" in params else bucket)]


def _secretsmanager(call: AwsCall, account: str) -> list[Access]:
    secret = str(call.params.get("SecretId", ""))
    if not secret:
        return []
    arn = secret if secret.startswith("arn:") else f"arn:aws:secretsmanager:{call.region}:{account}:secret:{secret}"
    return [Access(f"secretsmanager:{call.operation}", arn)]


def _bedrock_runtime(call: AwsCall, account: str) -> list[Access]:
    """A foundation model id is authorized on the model in the call's region; an inference profile id
    on the profile and on the foundation model it routes to (one region of it shown)."""
    action = _BEDROCK_ACTIONS.get(call.operation)
    model = str(call.params.get("modelId", ""))
    if action is None or not model:
        return []
    action = f"bedrock:{action}"
    if model.startswith("arn:"):
        return [Access(action, model)]
    geo, _, base = model.partition(".")
    if geo in _PROFILE_PREFIXES and base:
        return [
            Access(action, f"arn:aws:bedrock:{call.region}:{account}:inference-profile/{model}"),
            Access(action, f"arn:aws:bedrock:{call.region}::foundation-model/{base}"),
        ]
    return [Access(action, f"arn:aws:bedrock:{call.region}::foundation-model/{model}")]


_MAPPERS = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "s3": _s3,
    "secretsmanager": _secretsmanager,
    "bedrock-runtime": _bedrock_runtime,
}


# policies ------------------------------------------------------------------------------------


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def allowed_pairs(statements: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Every (action, resource pattern) an identity policy's ``Allow`` statements grant."""
    return [
        (action, resource)
        for statement in statements
        if statement.get("Effect") == "Allow"
        for action in _listed(statement["Action"])
        for resource in _listed(statement["Resource"])
    ]


def grants(pair: tuple[str, str], access: Access) -> bool:
    """IAM's matching: actions case-insensitively, resources case-sensitively, ``*`` and ``?`` wildcards."""
    action, resource = pair
    return fnmatchcase(access.action.lower(), action.lower()) and fnmatchcase(access.resource, resource)


def is_allowed(statements: Sequence[Mapping[str, Any]], access: Access) -> bool:
    return any(grants(pair, access) for pair in allowed_pairs(statements))
