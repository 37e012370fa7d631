"""What a client submitted, checked and made ready to store: the order of checks of contract §2.

Size first (413), then the body (JSON or multipart, 400), its fields and model, then
streaming (400). The prepared request carries its canonical JSON text and a hash that
identifies it for ``Idempotency-Key`` replays (the request type, the body, every file).
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from chalicelib.contract import BY_TYPE, RequestType
from chalicelib.errors import InvalidRequest, PayloadTooLarge
from chalicelib.form_validation import validate_form
from chalicelib.multipart import FilePart, parse_form
from chalicelib.validation import InferenceRequest, ProviderCatalog, canonical_json, parse_json_body, validate

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class Submission:
    request_type: RequestType
    raw_body: bytes | None
    content_type: str | None
    ttl_header: str | None = None
    idempotency_key: str | None = None
    key: str | None = None  # the virtual key presented, if any


@dataclass(frozen=True)
class Prepared:
    request: InferenceRequest
    request_json: str
    request_hash: str
    files: dict[str, list[FilePart]] = field(default_factory=dict)


def prepare(submission: Submission, catalog: ProviderCatalog, max_request_bytes: int) -> Prepared:
    raw = submission.raw_body or b""
    if len(raw) > max_request_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_request_bytes} bytes")
    files: dict[str, list[FilePart]] = {}
    if BY_TYPE[submission.request_type].multipart:
        request, files = validate_form(submission.request_type, parse_form(raw, submission.content_type), catalog)
    else:
        request = validate(submission.request_type, parse_json_body(raw, submission.content_type), catalog)
    request_json = canonical_json(request.body)
    ordered = json.dumps(request.body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(submission.request_type.value.encode() + b"\n" + ordered.encode("utf-8", "replace"))
    for name in sorted(files):
        for part in files[name]:
            digest.update(b"\n" + name.encode() + b"=" + hashlib.sha256(part.data).digest())
    return Prepared(request, request_json, digest.hexdigest(), files)


def idempotency_key_id(caller: str, key: str) -> str:
    """The stored id of a caller's ``Idempotency-Key`` (the key itself is never stored)."""
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            param="Idempotency-Key",
            code="invalid_idempotency_key",
        )
    return hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()
