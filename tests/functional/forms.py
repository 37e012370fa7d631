"""Multipart submits for the upload types, and the S3 checks the durability tests share.

Bodies are encoded by urllib3 (as ``requests`` encodes ``files=``) and posted through the
Chalice test client; the bucket is read with boto3 under moto.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chalice.test import Client, HTTPResponse
from urllib3 import encode_multipart_formdata

from chalicelib import aws
from tests.support.aws import AwsStack

TRANSCRIPTIONS = "/v1/async/audio/transcriptions"
EDITS = "/v1/async/images/edits"
VARIATIONS = "/v1/async/images/variations"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Upload = tuple[str, tuple[str, bytes, str]]  # form name, (filename, bytes, content type)

# Binary on purpose: NUL bytes, CR LF, a would-be boundary and invalid UTF-8 must survive intact.
AUDIO = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00" + bytes(range(256)) + b"\r\n--x--\r\n\xff\xfe"
IMAGE = PNG_SIGNATURE + b"\x00\x00\x00\rIHDR" + bytes(range(255, -1, -1))
MASK = PNG_SIGNATURE + b"\x00mask\r\n" + bytes(64)


def encode_form(fields: Mapping[str, str], uploads: Sequence[Upload]) -> tuple[bytes, str]:
    """The multipart body and its Content-Type, as ``requests`` would send them (fields first)."""
    parts: list[tuple[str, Any]] = [*fields.items(), *uploads]
    return encode_multipart_formdata(parts)


def post_form(
    client: Client,
    path: str,
    fields: Mapping[str, str],
    uploads: Sequence[Upload],
    headers: Mapping[str, str] | None = None,
) -> HTTPResponse:
    body, content_type = encode_form(fields, uploads)
    return client.http.post(path, headers={"Content-Type": content_type, **(headers or {})}, body=body)


def transcription_form(**fields: str) -> tuple[dict[str, str], list[Upload]]:
    return {"model": "mock/echo", **fields}, [("file", ("clip.wav", AUDIO, "audio/wav"))]


def edit_form(**fields: str) -> tuple[dict[str, str], list[Upload]]:
    uploads = [("image", ("cat.png", IMAGE, "image/png")), ("mask", ("mask.png", MASK, "image/png"))]
    return {"model": "mock/echo", "prompt": "add a red hat", **fields}, uploads


def variation_form(**fields: str) -> tuple[dict[str, str], list[Upload]]:
    return {"model": "mock/echo", **fields}, [("image", ("cat.png", IMAGE, "image/png"))]


def submit_form(client: Client, path: str, form: tuple[dict[str, str], list[Upload]]) -> str:
    response = post_form(client, path, *form)
    assert response.status_code == 202, response.body
    job_id: str = response.json_body["id"]
    return job_id


def bucket_keys(aws_stack: AwsStack) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=aws_stack.settings.bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def read_object(aws_stack: AwsStack, key: str) -> bytes:
    body: bytes = aws.client("s3").get_object(Bucket=aws_stack.settings.bucket, Key=key)["Body"].read()
    return body


def object_type(aws_stack: AwsStack, key: str) -> str:
    found: str = aws.client("s3").head_object(Bucket=aws_stack.settings.bucket, Key=key)["ContentType"]
    return found


def assert_nothing_kept(aws_stack: AwsStack) -> None:
    """No job item, no queued message, no object in the bucket."""
    assert aws_stack.item_count() == 0
    assert aws_stack.queued_messages() == 0
    assert bucket_keys(aws_stack) == []


def item_text(item: Mapping[str, Any], name: str) -> str:
    value: str = item[name]["S"]
    return value


def item_number(item: Mapping[str, Any], name: str) -> int:
    return int(item[name]["N"])
