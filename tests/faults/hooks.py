"""Botocore event hooks that inject AWS faults into the app's own clients (``chalicelib.aws``).

``Fault`` raises for the calls it matches; ``hooked`` registers it on one client event for the
length of a ``with`` block. ``before-parameter-build.<service>.<Operation>`` hooks see the API
parameters (``Key``, ``UpdateExpression``...), so a fault can target one job or one kind of write.

A fault raised from a hook is not retried by botocore: only a reply received from the wire goes
through its retry rules. ``dynamodb_throttled`` therefore answers the throttled calls itself, in
place of moto's transport, so the real ``standard`` retry mode of ``chalicelib.aws`` absorbs them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber

from chalicelib import aws

Params = dict[str, Any]


class WorkerKilled(BaseException):
    """The worker process dying (Lambda timeout, OOM, SIGKILL): no ``except Exception`` may stop it."""


def client_error(code: str, operation: str, status: int = 500) -> Exception:
    """What botocore raises when AWS answers ``code``."""
    error = {"Code": code, "Message": f"injected fault: {code}"}
    raised: Exception = ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)
    return raised


def always(params: Params) -> bool:
    return True


class Fault:
    """A hook that raises ``error`` for the calls ``when`` matches (at most ``times`` of them).

    ``error`` may be a factory, so each call raises a fresh exception. ``calls`` counts every call
    the hook saw, ``injected`` those it failed.
    """

    def __init__(
        self,
        error: BaseException | Callable[[], BaseException],
        when: Callable[[Params], bool] = always,
        times: int | None = None,
    ) -> None:
        self._error = error
        self._when = when
        self._times = times
        self._lock = threading.Lock()
        self.calls = 0
        self.injected = 0
        self.seen: list[Params] = []

    def __call__(self, params: Params, **kwargs: Any) -> None:
        with self._lock:
            self.calls += 1
            self.seen.append(params)
            if not self._when(params) or (self._times is not None and self.injected >= self._times):
                return
            self.injected += 1
        raise self._error() if callable(self._error) else self._error


class Recorder:
    """A hook that only records the API parameters of each call."""

    def __init__(self) -> None:
        self.seen: list[Params] = []

    def __call__(self, params: Params, **kwargs: Any) -> None:
        self.seen.append(dict(params))


@contextmanager
def hooked(service: str, event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """``handler`` runs on ``event`` of the app's ``service`` client inside the block."""
    events = aws.client(service).meta.events
    events.register(event, handler)
    try:
        yield
    finally:
        events.unregister(event, handler)


def on_job(job_id: str) -> Callable[[Params], bool]:
    """Matches calls whose ``Key`` is the job's item."""
    return lambda params: params.get("Key") == {"id": {"S": job_id}}


def is_claim(params: Params) -> bool:
    return "lease_owner = :owner" in str(params.get("UpdateExpression", "")) and ":pending" in str(
        params.get("ConditionExpression", "")
    )


def is_finish(params: Params) -> bool:
    """The lease holder's terminal write (``completed`` or ``failed``), not a release or a claim."""
    update = str(params.get("UpdateExpression", ""))
    return "completed_at" in update and "lease_owner = :owner" in str(params.get("ConditionExpression", ""))


class Throttle:
    """Counts PutItem attempts on the wire and answers the first ``times`` with a throttling error."""

    def __init__(self, operation: str, times: int | None) -> None:
        self._operation = operation
        self._times = times
        self.attempts = 0
        self.throttled = 0

    def __call__(self, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        if not event_name.endswith(f".{self._operation}"):
            return botocore_stubber(event_name=event_name, request=request, **kwargs)
        self.attempts += 1
        if self._times is not None and self.throttled >= self._times:
            return botocore_stubber(event_name=event_name, request=request, **kwargs)
        self.throttled += 1
        body = {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded.",
        }
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "throttled"}
        return AWSResponse(request.url, 400, headers, MockRawResponse(json.dumps(body)))


@contextmanager
def dynamodb_throttled(operation: str = "PutItem", times: int | None = None) -> Iterator[Throttle]:
    """DynamoDB answers ``operation`` with ProvisionedThroughputExceededException (``times`` times; None: always).

    The hook stands in for moto's transport on the app's DynamoDB client, so a throttled call
    never reaches moto (nothing is written) and botocore's retry rules see a real reply.
    """
    throttle = Throttle(operation, times)
    events = aws.client("dynamodb").meta.events
    events.unregister("before-send", botocore_stubber)
    events.register("before-send", throttle)
    try:
        yield throttle
    finally:
        events.unregister("before-send", throttle)
        events.register("before-send", botocore_stubber)
