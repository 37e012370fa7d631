"""Strategies and checks for the hostile-input property tests (issue 5, item 4).

What a hostile client can vary: bodies (JSON values, near-valid request bodies, raw bytes,
multipart forms with junk boundaries or parts), content types, header values, job ids in
paths and list query strings. What must hold whatever it sends: no 5xx, no stack trace,
a JSON body (the §4 error shape for a 4xx), and a rejected request leaves the jobs table,
the keys table, both queues and the bucket exactly as they were.

Paths are written out from the contract (§1) rather than imported from ``chalicelib``.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

from chalice.test import HTTPResponse
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, settings
from hypothesis import strategies as st
from urllib3 import encode_multipart_formdata

from chalicelib import aws
from tests.functional.payloads import KINDS, TIMESTAMP, assert_error_body, is_uuid4
from tests.support.aws import AwsStack

JSON_SUBMIT_PATHS = tuple(kind.submit_path for kind in KINDS)
FORM_SUBMIT_PATHS = ("/v1/async/audio/transcriptions", "/v1/async/images/edits", "/v1/async/images/variations")
SUBMIT_PATHS = JSON_SUBMIT_PATHS + FORM_SUBMIT_PATHS
TRACE_MARKERS = ("Traceback", 'File "', '.py"')
INTERNAL_NAMES = ("asyncgate-jobs", "asyncgate-keys", "asyncgate-payloads", "arn:aws")


def hostile_settings(max_examples: int) -> settings:
    """Deterministic (derandomized, no example database) and without deadlines: the same run in CI as here."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# what the stack holds ----------------------------------------------------------------------
@dataclass(frozen=True)
class StackState:
    jobs: int  # items in the jobs table (jobs and Idempotency-Key records)
    keys: int  # items in the keys table (keys and rate-limit counters)
    queued: int
    dead_letters: int
    objects: int


def _depth(queue_url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def snapshot(stack: AwsStack) -> StackState:
    dynamodb = aws.client("dynamodb")
    keys = int(dynamodb.scan(TableName=stack.settings.keys_table, Select="COUNT")["Count"])
    objects = aws.client("s3").list_objects_v2(Bucket=stack.settings.bucket).get("KeyCount", 0)
    return StackState(stack.item_count(), keys, _depth(stack.queue_url), _depth(stack.dlq_url), int(objects))


# what every response must look like ---------------------------------------------------------
def header(response: HTTPResponse, name: str) -> str:
    """A response header by case-insensitive name ("" when absent): the test client keeps the app's spelling."""
    return next((value for key, value in response.headers.items() if key.lower() == name), "")


def checked_json(response: HTTPResponse, sent: str = "") -> Any:
    """No 5xx, no trace or internal name anywhere, a JSON body; the body, parsed.

    ``sent`` is what the client sent (text of body, headers, path): a marker the client
    itself sent may come back quoted in a message (``unsupported provider: File "x``).
    """
    status = response.status_code
    text = response.body.decode("utf-8")
    code = json.loads(text).get("error", {}).get("code") if status >= 400 and text.startswith("{") else None
    if currently_in_test_context():
        event(f"{status} {code or ''}".strip())  # the outcome mix: --hypothesis-show-statistics
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    assert status < 500, f"{status}: {text[:500]}"
    for marker in (m for m in (*TRACE_MARKERS, *INTERNAL_NAMES) if m not in sent):
        assert marker not in text, f"{marker!r} in the body: {text[:500]}"
        assert marker not in headers, f"{marker!r} in the headers: {headers}"
    media_type = header(response, "content-type").split(";")[0].strip()
    assert media_type == "application/json", f"Content-Type {media_type!r}"
    return json.loads(text)


def checked_error(response: HTTPResponse, sent: str = "") -> dict[str, Any]:
    """A 4xx with the §4 body raised by the gateway itself; returns the inner ``error``."""
    body = checked_json(response, sent)
    assert 400 <= response.status_code < 500, response.status_code
    return assert_error_body(body, response.status_code, bifrost=True)


def checked_submitted(response: HTTPResponse, path: str, sent: str = "") -> str:
    """A 202 submit answer (contract §2); returns the job id."""
    body = checked_json(response, sent)
    assert response.status_code == 202
    assert set(body) == {"id", "status", "created_at"}, body
    assert is_uuid4(body["id"]) and body["status"] == "pending"
    assert TIMESTAMP.match(body["created_at"]), body
    assert header(response, "location") == f"{path}/{body['id']}"
    assert header(response, "retry-after").isdigit()
    job_id: str = body["id"]
    return job_id


# strategies: text that can arrive over HTTP ---------------------------------------------------
# Lone surrogates cannot be UTF-8 encoded, so API Gateway can never hand them to the Lambda.
http_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
long_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=500, max_size=3000)
digits = st.text("0123456789", min_size=1, max_size=40)
TRICKY_STRINGS = (
    "",
    " ",
    "\t",
    "0",
    "-1",
    "null",
    "true",
    "..",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "\x00",
    "\r\nX-Injected: 1",
    "' OR '1'='1",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "Bearer",
    "Bearer ",
    "Bearer sk-bf-",
    "sk-bf-",
    "sk-bf-" + "A" * 43,
    "sk-bf-\u00e9\u2603",
    "\u202e\u0000\ufeff",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "٣",
    "²",
)
hostile_text = st.one_of(http_text, st.sampled_from(TRICKY_STRINGS), digits, long_text)


# strategies: JSON bodies ------------------------------------------------------------------
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)
REQUEST_FIELDS = (
    "model",
    "prompt",
    "messages",
    "input",
    "voice",
    "query",
    "documents",
    "top_n",
    "document",
    "n",
    "dimensions",
    "stream",
    "stream_format",
    "fallbacks",
)
PLAUSIBLE_VALUES: tuple[Any, ...] = (
    "mock/echo",
    "openai/gpt-4o-mini",
    "unknown-provider/x",
    "mock/",
    "/echo",
    "mock",
    "sse",
    "audio",
    True,
    False,
    0,
    1,
    10,
    11,
    -1,
    16385,
    2**64,
    [],
    [{}],
    [{"role": "user", "content": "hi"}],
    [{"role": " "}],
    ["mock/echo", 7],
    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    {"type": "document_url"},
    {"text": " "},
)
field_values = st.one_of(st.sampled_from(PLAUSIBLE_VALUES), json_values)


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body of some request type with a few fields replaced, dropped or added."""
    body = dict(draw(st.sampled_from(KINDS)).body)
    for name in draw(st.sets(st.sampled_from(REQUEST_FIELDS), max_size=2)):
        body.pop(name, None)
    body.update(draw(st.dictionaries(st.sampled_from(REQUEST_FIELDS), field_values, max_size=3)))
    return body


json_documents = st.one_of(json_values, near_valid_bodies())


@st.composite
def encoded_json(draw: st.DrawFn) -> bytes:
    """A JSON document as a client might encode it: ASCII-escaped or not, UTF-8/16/32 or Latin-1."""
    text = json.dumps(draw(json_documents), ensure_ascii=draw(st.booleans()))
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1"]))
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


# strategies: content types and multipart forms --------------------------------------------------
boundaries = st.one_of(
    st.sampled_from(["", '""', "x", "-" * 71, "a b", "==", "é", "\x00", "--", '"unterminated']),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=80),
)
JSON_CONTENT_TYPES = (
    "application/json",
    "APPLICATION/JSON",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=bogus",
    "application/json;;;",
    "application/problem+json",
)
OTHER_CONTENT_TYPES = (
    "",
    "text/plain",
    "text/html; charset=utf-8",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "multipart/form-data",
    "multipart/form-data; boundary",
    "multipart/mixed; boundary=x",
)
any_content_types = st.one_of(
    st.none(),
    st.sampled_from(JSON_CONTENT_TYPES + OTHER_CONTENT_TYPES),
    boundaries.map(lambda boundary: f"multipart/form-data; boundary={boundary}"),
    http_text,
)
# Mostly a JSON type, so that bodies get past the Content-Type check and reach the field rules.
mostly_json_content_types = st.integers(0, 9).flatmap(
    lambda i: st.sampled_from(JSON_CONTENT_TYPES) if i < 7 else any_content_types
)
# Charsets of form text parts: ones Python decodes text with, and ones it cannot (refused with a 400).
FORM_CHARSETS = (
    *("utf-8", "UTF-8", "latin-1", "iso-8859-1", "us-ascii", "utf-16", "utf-7", "cp1252"),
    *("bogus", "base64", "idna"),
)
FORM_FIELDS = ("model", "prompt", "n", "stream", "fallbacks", "language", "size", "response_format", "file", "image")
FILE_PARTS = ("file", "image", "image[]", "mask", "model")


@dataclass(frozen=True)
class FormPart:
    name: str
    value: bytes
    filename: str | None = None
    content_type: str | None = None


VALID_FORMS: tuple[tuple[FormPart, ...], ...] = (  # transcription, image edit, image variation
    (FormPart("model", b"mock/echo"), FormPart("file", b"RIFF\x00WAVE", "clip.wav", "audio/wav")),
    (
        FormPart("model", b"mock/echo"),
        FormPart("prompt", b"add a hat"),
        FormPart("image", b"\x89PNG\r\n\x1a\n", "cat.png", "image/png"),
    ),
    (FormPart("model", b"mock/echo"), FormPart("image", b"\x89PNG\r\n\x1a\n\x00", "cat.png", "image/png")),
)


@st.composite
def text_parts(draw: st.DrawFn) -> FormPart:
    name = draw(st.sampled_from(FORM_FIELDS) | http_text)
    value = draw(st.sampled_from(["mock/echo", "openai/x", "true", "false", "1", "10", "11", "a hat"]) | hostile_text)
    charset = draw(st.none() | st.sampled_from(FORM_CHARSETS))
    return FormPart(name, value.encode("utf-8"), None, f"text/plain; charset={charset}" if charset else None)


@st.composite
def file_parts(draw: st.DrawFn) -> FormPart:
    name = draw(st.sampled_from(FILE_PARTS) | http_text)
    filename = draw(st.sampled_from(["a.wav", "cat.png", "", "../../x", "\u2603.bin"]) | http_text)
    content_type = draw(st.none() | st.sampled_from(["image/png", "x/y", ""]))
    return FormPart(name, draw(st.binary(max_size=64)), filename, content_type)


@st.composite
def form_parts(draw: st.DrawFn) -> list[FormPart]:
    """A valid form of some upload type with parts dropped, and odd text fields and file parts added."""
    parts = list(draw(st.sampled_from(VALID_FORMS)))
    for index in sorted(draw(st.sets(st.integers(0, len(parts) - 1), max_size=len(parts))), reverse=True):
        if draw(st.integers(0, 3)) == 0:  # drop a quarter of the chosen parts
            del parts[index]
    extra = draw(st.lists(text_parts() | file_parts(), max_size=3))
    at = draw(st.integers(0, len(parts)))
    return parts[:at] + extra + parts[at:]


def encode_parts(parts: list[FormPart]) -> tuple[bytes, str]:
    """The multipart body and its Content-Type, as urllib3 (and so ``requests``) encodes them."""
    fields: list[Any] = []
    for part in parts:
        if part.filename is None:
            fields.append((part.name, part.value.decode("utf-8")))
        else:
            fields.append((part.name, (part.filename, part.value, part.content_type or "")))
    body, content_type = encode_multipart_formdata(fields)
    for part in parts:  # urllib3 sends no Content-Type for text fields: add the charset ones
        if part.filename is None and part.content_type:
            disposition = f'Content-Disposition: form-data; name="{part.name}"\r\n'.encode()
            body = body.replace(disposition, disposition + f"Content-Type: {part.content_type}\r\n".encode(), 1)
    return body, content_type


@dataclass(frozen=True)
class FormRequest:
    body: bytes
    content_type: str
    parts: list[FormPart]  # what was encoded, before any damage


@st.composite
def multipart_requests(draw: st.DrawFn) -> FormRequest:
    """A form body with its own Content-Type, or a damaged one: another boundary, truncated, spliced."""
    parts = draw(form_parts())
    body, content_type = encode_parts(parts)
    damage = draw(st.sampled_from(["none", "boundary", "truncate", "splice", "no-boundary"]))
    if damage == "boundary":
        content_type = "multipart/form-data; boundary=" + draw(boundaries)
    elif damage == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif damage == "splice":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=32)) + body[at:]
    elif damage == "no-boundary":
        content_type = "multipart/form-data"
    return FormRequest(body, content_type, parts)


# strategies: job ids, cursors and query strings ----------------------------------------------
def _uuid_lookalikes(value: uuid.UUID) -> list[str]:
    text = str(value)
    return [
        text.upper(),
        text.replace("-", ""),
        "{" + text + "}",
        "urn:uuid:" + text,
        text + " ",
        " " + text,
        text[:-1],
    ]


# A path segment: no "/" (another route), "?" or "#" (the query or fragment would start).
segment_characters = st.characters(exclude_categories=["Cs"], exclude_characters="/?#")
job_ids = st.one_of(
    st.text(segment_characters, min_size=1, max_size=80),
    st.sampled_from([s for s in TRICKY_STRINGS if s and not set(s) & set("/?#")]),
    st.uuids().flatmap(lambda u: st.sampled_from(_uuid_lookalikes(u))),
    st.uuids(version=4).map(str),  # well-formed ids of jobs that do not exist
    st.text(segment_characters, min_size=500, max_size=3000),
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


cursors = st.one_of(
    hostile_text,
    json_values.map(lambda value: _b64(json.dumps(value).encode())),
    st.tuples(st.integers(), st.uuids().map(str)).map(lambda pair: _b64(json.dumps(list(pair)).encode())),
    st.binary(max_size=64).map(_b64),
)
LIST_PARAMETERS = ("status", "type", "limit", "cursor")
list_values = st.one_of(
    st.sampled_from(["pending", "completed", "cancelled", "chat_completion", "chat/completions", "1", "100", "101"]),
    hostile_text,
    cursors,
)
list_queries = st.lists(st.tuples(st.sampled_from(LIST_PARAMETERS) | http_text.filter(bool), list_values), max_size=5)
