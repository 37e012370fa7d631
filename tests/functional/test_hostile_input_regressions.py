"""Hostile inputs pinned as examples: each once reached an ``int()``, JSON decode or codec lookup.

Every case is a request a client can send (all fit in API Gateway's limits): digit strings
past ``int()``'s 4300-digit limit, characters ``str.isdigit`` accepts and ``int`` refuses,
deeply nested cursors, form parts in charsets that name no text codec. Each gets a clear
answer (a bounded value or a 400), never a 500, and leaves nothing behind.
"""

from __future__ import annotations

import base64
import json

import pytest
from chalice.test import Client

from chalicelib import aws
from tests.functional.forms import TRANSCRIPTIONS, VARIATIONS, encode_form, transcription_form, variation_form
from tests.functional.hostile import checked_error, checked_json, checked_submitted, snapshot
from tests.functional.payloads import CHAT, JSON_HEADERS, TTL_HEADER
from tests.support.aws import AwsStack

THOUSANDS_OF_DIGITS = "9" * 5000  # Python's int() refuses decimal strings over 4300 digits
SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() says yes, int() says no


def _object_keys(aws_stack: AwsStack) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=aws_stack.settings.bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_a_ttl_of_thousands_of_digits_on_a_json_submit_is_accepted_with_a_bounded_ttl(
    client: Client, aws_stack: AwsStack
) -> None:
    headers = {**JSON_HEADERS, TTL_HEADER: THOUSANDS_OF_DIGITS}

    response = client.http.post(CHAT.submit_path, headers=headers, body=json.dumps(CHAT.body).encode())

    job_id = checked_submitted(response, CHAT.submit_path)
    item = aws_stack.item(job_id)
    assert item is not None
    assert int(item["result_ttl_s"]["N"]) in (3600, aws_stack.settings.max_ttl_s)


def test_a_ttl_of_thousands_of_digits_on_a_multipart_submit_leaves_no_orphan_upload(
    client: Client, aws_stack: AwsStack
) -> None:
    body, content_type = encode_form(*transcription_form())
    headers = {"Content-Type": content_type, TTL_HEADER: THOUSANDS_OF_DIGITS}

    response = client.http.post(TRANSCRIPTIONS, headers=headers, body=body)

    job_id = checked_submitted(response, TRANSCRIPTIONS)
    assert all(job_id in key for key in _object_keys(aws_stack)), "every object belongs to the job"


@pytest.mark.parametrize("limit", [SUPERSCRIPT_TWO, "1" * 5001], ids=["superscript-two", "5001-digits"])
def test_a_list_limit_that_only_looks_like_digits_is_a_400_naming_limit(
    client: Client, aws_stack: AwsStack, limit: str
) -> None:
    response = client.http.get("/v1/async/jobs?limit=" + limit)

    error = checked_error(response)
    assert (response.status_code, error.get("param")) == (400, "limit")


def test_a_cursor_of_deeply_nested_json_is_a_400_invalid_cursor(client: Client) -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 2000).decode()  # 2668 characters

    response = client.http.get("/v1/async/jobs?cursor=" + cursor)

    error = checked_error(response)
    assert (response.status_code, error["code"]) == (400, "invalid_cursor")


@pytest.mark.parametrize("count", [SUPERSCRIPT_TWO, "1" * 5001], ids=["superscript-two", "5001-digits"])
def test_a_form_count_that_only_looks_like_digits_is_a_400_naming_n(
    client: Client, aws_stack: AwsStack, count: str
) -> None:
    fields, uploads = variation_form(n=count)
    body, content_type = encode_form(fields, uploads)
    before = snapshot(aws_stack)

    response = client.http.post(VARIATIONS, headers={"Content-Type": content_type}, body=body)

    error = checked_error(response)
    assert (response.status_code, error.get("param")) == (400, "n")
    assert snapshot(aws_stack) == before


def _form_with_charset(charset: str, field: str = "model", with_file: bool = True) -> bytes:
    text_part = (
        b"--XX\r\n"
        b'Content-Disposition: form-data; name="' + field.encode() + b'"\r\n'
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\n"
        b"mock/echo\r\n"
    )
    file_part = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n'
    return text_part + (file_part if with_file else b"") + b"--XX--\r\n"


@pytest.mark.parametrize("charset", ["no-such-charset", "base64", "idna"])
def test_a_form_field_in_an_undecodable_charset_is_not_a_server_error(
    client: Client, aws_stack: AwsStack, charset: str
) -> None:
    before = snapshot(aws_stack)

    response = client.http.post(
        TRANSCRIPTIONS, headers={"Content-Type": "multipart/form-data; boundary=XX"}, body=_form_with_charset(charset)
    )

    if response.status_code == 202:  # read as UTF-8 instead: also acceptable
        checked_submitted(response, TRANSCRIPTIONS)
        return
    checked_error(response)
    assert snapshot(aws_stack) == before


def test_a_file_upload_with_a_field_in_an_undecodable_charset_is_a_400_in_anthropics_shape(client: Client) -> None:
    # no file part: whatever the fix, the request is refused before any provider would be called
    body = _form_with_charset("no-such-charset", field="purpose", with_file=False)

    response = client.http.post(
        "/anthropic/v1/files", headers={"Content-Type": "multipart/form-data; boundary=XX"}, body=body
    )

    body = checked_json(response)
    assert response.status_code == 400
    assert body["type"] == "error" and isinstance(body["error"]["message"], str)
