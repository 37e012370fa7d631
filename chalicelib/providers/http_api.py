"""The plumbing of a provider reached as JSON over HTTP: authenticated POSTs and dispatch by type.

``JsonApi.post`` sends a payload below the provider's base URL with its auth headers and
turns any non-2xx reply into the provider's ``ProviderError``; ``dispatch`` runs the
operation registered for the call's request type. Translation stays in each adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers.base import ProviderCall
from chalicelib.providers.transport import HttpResponse, HttpTransport

Operation = Callable[[ProviderCall], dict[str, Any]]
ErrorParser = Callable[[HttpResponse, str | None], ProviderError]


def bearer(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class JsonApi:
    def __init__(
        self,
        transport: HttpTransport,
        base_url: str,
        parse_error: ErrorParser,
        auth: Callable[[str | None], dict[str, str]] = bearer,
    ) -> None:
        self._transport = transport
        self._base_url = base_url
        self._parse_error = parse_error
        self._auth = auth

    def post(self, path: str, payload: Mapping[str, Any], api_key: str | None) -> HttpResponse:
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self._auth(api_key)}
        response = self._transport.post(self._base_url + path, headers=headers, json_body=payload)
        if not response.ok:
            raise self._parse_error(response, api_key)
        return response


def dispatch(provider: str, operations: Mapping[RequestType, Operation], call: ProviderCall) -> dict[str, Any]:
    """Run the operation for the call's request type; a type the provider lacks is a 400."""
    operation = operations.get(call.request_type)
    if operation is None:
        raise ProviderError(
            f"{provider} does not serve {call.request_type.value}", status=400, code="unsupported_request_type"
        )
    return operation(call)
