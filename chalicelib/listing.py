"""``GET /v1/async/jobs`` (contract §6): its query parameters and its page body.

``status`` is a job status, ``type`` a request type (``chat_completion``) or its path
(``chat/completions``), ``limit`` 1–100 (default 20), ``cursor`` the previous page's
``next_cursor``. Anything else is a 400 naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chalicelib.contract import ENDPOINTS, RequestType
from chalicelib.errors import InvalidRequest
from chalicelib.jobs import ANONYMOUS, JobStatus, summary
from chalicelib.ports import JobFilter, JobPage

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_TYPES: dict[str, RequestType] = {e.request_type.value: e.request_type for e in ENDPOINTS} | {
    e.path: e.request_type for e in ENDPOINTS
}


def list_query(params: Mapping[str, str], caller: str = ANONYMOUS) -> tuple[JobFilter, int, str | None]:
    status = params.get("status") or None
    if status is not None and status not in JobStatus.__members__.values():
        raise _bad("status", "one of " + ", ".join(s.value for s in JobStatus))
    kind = params.get("type") or None
    if kind is not None and kind not in _TYPES:
        raise _bad("type", "a request type such as chat_completion")
    limit_text = params.get("limit") or str(DEFAULT_LIMIT)
    significant = limit_text.lstrip("0")
    if not re.fullmatch(r"[0-9]{1,3}", significant) or not 1 <= int(significant) <= MAX_LIMIT:
        raise _bad("limit", f"an integer from 1 to {MAX_LIMIT}")
    where = JobFilter(caller, JobStatus(status) if status else None, _TYPES[kind] if kind else None)
    return where, int(significant), params.get("cursor") or None


def render_page(page: JobPage) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [summary(job) for job in page.jobs],
        "has_more": page.next_cursor is not None,
        "next_cursor": page.next_cursor,
    }


def _bad(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"{param} must be {expected}", param=param, code="invalid_query_parameter")
