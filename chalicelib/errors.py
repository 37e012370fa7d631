"""The gateway's error taxonomy and its one mapping to the contract's error body (§4).

Every error has a stable ``code``, an HTTP status and a retry rule. Gateway errors
(``is_bifrost_error: true``) are raised by asyncgate itself; ``ProviderError`` carries
what an upstream provider answered. Nothing here may hold a secret or a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RETRYABLE_STATUSES = frozenset({408, 409, 429})
MAX_MESSAGE_CHARS = 8192


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (an API key a provider echoed) masked."""
    return text.replace(secret, "[redacted]") if secret else text


def is_retryable_status(status: int) -> bool:
    """openai-python's rule: 408, 409, 429 and every 5xx are worth another try."""
    return status in RETRYABLE_STATUSES or status >= 500


class GatewayError(Exception):
    """An error with a contract body. Subclasses fix status, type and code."""

    status: int = 500
    error_type: str = "server_error"
    code: str = "internal_error"
    is_bifrost_error: bool = True
    retry_after_s: float | None = None  # sent as ``Retry-After`` when the error is an HTTP answer

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
    ) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + " [truncated]"
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type

    @property
    def retryable(self) -> bool:
        return is_retryable_status(self.status)

    def to_body(self, event_id: str, extra_fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The contract §4 body; empty optional fields are left out."""
        error: dict[str, Any] = {"type": self.error_type, "code": self.code, "message": self.message}
        if self.param:
            error["param"] = self.param
        error["event_id"] = event_id
        body: dict[str, Any] = {
            "event_id": event_id,
            "type": self.error_type,
            "is_bifrost_error": self.is_bifrost_error,
            "status_code": self.status,
            "error": {k: v for k, v in error.items() if v not in (None, "")},
        }
        extra = {k: v for k, v in (extra_fields or {}).items() if v not in (None, "")}
        if extra:
            body["extra_fields"] = extra
        return body


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    error_type = "authentication_error"
    code = "unauthorized"


class NotFound(GatewayError):
    status = 404
    error_type = "not_found_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class ServiceUnavailable(GatewayError):
    status = 503
    error_type = "server_error"
    code = "service_unavailable"


class InternalError(GatewayError):
    status = 500
    error_type = "server_error"
    code = "internal_error"


class ConfigurationError(Exception):
    """A deployment setting is missing or malformed; raised at startup, never to clients."""


class ProviderError(GatewayError):
    """What a provider answered (or failed to answer), ready for the job's ``error``.

    Every text field comes from the provider, so each has the call's key masked.
    ``retry_after_s`` is the provider's own hint (``Retry-After``), if any; ``key_rejected``
    says the provider refused the API key itself (whatever status it used to say so).
    """

    is_bifrost_error = False

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
        key_rejected: bool = False,
        secret: str | None = None,
    ) -> None:
        """``secret``: the API key the call used, masked wherever the provider echoed it."""
        super().__init__(
            redact(message, secret),
            param=redact(param, secret) if param else None,
            code=redact(code, secret) if code else "",
            status=status,
            error_type=redact(error_type, secret) if error_type else _default_type(status),
        )
        self.retry_after_s = retry_after_s
        self.key_rejected = key_rejected or status in (401, 403)


def _default_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        408: "timeout_error",
        409: "conflict_error",
        413: "invalid_request_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error" if status >= 500 else "api_error")
