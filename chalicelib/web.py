"""HTTP response shaping for the Chalice routes: job bodies, headers and §4 error bodies.

Every response a route returns passes through here, so no route can leak a stack
trace or answer with a body that is not the contract's. Business decisions stay in
``service``; this module only turns their outcomes (or exceptions) into responses.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError
from chalice.app import Response

from chalicelib.contract import RequestType
from chalicelib.errors import GatewayError, InternalError, MethodNotAllowed, ServiceUnavailable
from chalicelib.validation import parse_json_body

log = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json"}
AWS_BUSY = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "Throttling",
        "SlowDown",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalFailure",
    }
)


def json_text(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body=text, status_code=status, headers={**JSON_HEADERS, **(headers or {})})


def json_body(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return json_text(status, json.dumps(body, separators=(",", ":")), headers)


def error_response(
    error: GatewayError,
    request_type: RequestType | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    extra = {"request_type": request_type.value} if request_type else None
    if error.retry_after_s is not None:
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after_s))), **(headers or {})}
    return json_body(error.status, error.to_body(str(uuid.uuid4()), extra), headers)


def json_object(request: Any) -> dict[str, Any]:
    """A request's JSON object body (admin routes), or a 400."""
    raw = request.raw_body
    return parse_json_body(raw.encode() if isinstance(raw, str) else raw, request.headers.get("content-type"))


def guarded(action: Callable[[], Response], request_type: RequestType | None = None) -> Response:
    """Run a route body; any exception becomes a §4 error response, never a trace."""
    try:
        return action()
    except GatewayError as error:
        return error_response(error, request_type)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in AWS_BUSY:
            log.warning("AWS is throttling or unavailable: %s", error.response["Error"]["Code"])
            busy = ServiceUnavailable("the service is busy; retry shortly", code="temporarily_unavailable")
            busy.retry_after_s = 1
            return error_response(busy, request_type)
        log.exception("unhandled AWS error")
        return error_response(InternalError("internal error"), request_type)
    except Exception:
        log.exception("unhandled error")
        return error_response(InternalError("internal error"), request_type)


def method_not_allowed(method: str, allowed: list[str]) -> Response:
    error = MethodNotAllowed(f"method {method} is not allowed on this path")
    response = error_response(error, headers={"Allow": ", ".join(allowed)})
    if method == "HEAD":
        response.body = ""
    return response
