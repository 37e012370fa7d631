"""Multipart submits the gateway refuses (contract §1–2): 400 with the §4 body naming the
field or part, and nothing stored, queued or uploaded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client, HTTPResponse

from tests.functional.forms import (
    EDITS,
    TRANSCRIPTIONS,
    VARIATIONS,
    Upload,
    assert_nothing_kept,
    edit_form,
    encode_form,
    post_form,
    transcription_form,
    variation_form,
)
from tests.functional.payloads import assert_gateway_error
from tests.support.aws import AwsStack

Form = tuple[dict[str, str], list[Upload]]


FORMS: dict[str, Form] = {TRANSCRIPTIONS: transcription_form(), EDITS: edit_form(), VARIATIONS: variation_form()}
FILE_PART = {TRANSCRIPTIONS: "file", EDITS: "image", VARIATIONS: "image"}
by_path = pytest.mark.parametrize("path", list(FORMS), ids=["transcription", "image_edit", "image_variation"])


def assert_rejected(
    aws_stack: AwsStack, response: HTTPResponse, param: str | None, code: str | None = None
) -> dict[str, Any]:
    error = assert_gateway_error(response, 400, code)
    assert error.get("param") == param, error
    assert_nothing_kept(aws_stack)
    return error


def without_field(path: str, name: str) -> Form:
    fields, uploads = FORMS[path]
    return {k: v for k, v in fields.items() if k != name}, uploads


def with_fields(path: str, **extra: str) -> Form:
    fields, uploads = FORMS[path]
    return {**fields, **extra}, uploads


@by_path
def test_missing_model_is_400_naming_it(client: Client, aws_stack: AwsStack, path: str) -> None:
    response = post_form(client, path, *without_field(path, "model"))

    assert_rejected(aws_stack, response, "model", "missing_required_field")


@by_path
@pytest.mark.parametrize("model", ["whisper-1", "mock/", "/echo", ""])
def test_model_not_in_provider_model_form_is_400_naming_it(
    client: Client, aws_stack: AwsStack, path: str, model: str
) -> None:
    response = post_form(client, path, *with_fields(path, model=model))

    assert_rejected(aws_stack, response, "model")


def test_provider_that_does_not_serve_the_type_is_400(client: Client, aws_stack: AwsStack) -> None:
    response = post_form(client, VARIATIONS, *with_fields(VARIATIONS, model="anthropic/claude-3-5-haiku"))

    assert_rejected(aws_stack, response, "model")


@by_path
def test_missing_file_part_is_400_naming_it(client: Client, aws_stack: AwsStack, path: str) -> None:
    fields, uploads = FORMS[path]
    part = FILE_PART[path]

    response = post_form(client, path, fields, [u for u in uploads if u[0] != part])

    assert_rejected(aws_stack, response, part, "missing_required_field")


@by_path
def test_file_part_sent_as_a_text_field_is_400_naming_it(client: Client, aws_stack: AwsStack, path: str) -> None:
    fields, uploads = FORMS[path]
    part = FILE_PART[path]

    response = post_form(client, path, {**fields, part: "not a file"}, [u for u in uploads if u[0] != part])

    assert_rejected(aws_stack, response, part)


@by_path
def test_empty_file_is_400_naming_it(client: Client, aws_stack: AwsStack, path: str) -> None:
    fields, uploads = FORMS[path]
    part = FILE_PART[path]
    emptied = [(name, (file[0], b"", file[2])) if name == part else (name, file) for name, file in uploads]

    response = post_form(client, path, fields, emptied)

    assert_rejected(aws_stack, response, part)


def test_empty_mask_is_400_naming_it(client: Client, aws_stack: AwsStack) -> None:
    fields, uploads = edit_form()
    emptied = [(name, (file[0], b"", file[2])) if name == "mask" else (name, file) for name, file in uploads]

    response = post_form(client, EDITS, fields, emptied)

    assert_rejected(aws_stack, response, "mask")


@pytest.mark.parametrize("prompt", [None, "", "   "], ids=["missing", "empty", "blank"])
def test_image_edit_without_a_prompt_is_400_naming_it(client: Client, aws_stack: AwsStack, prompt: str | None) -> None:
    form = without_field(EDITS, "prompt") if prompt is None else with_fields(EDITS, prompt=prompt)

    response = post_form(client, EDITS, *form)

    assert_rejected(aws_stack, response, "prompt")


@pytest.mark.parametrize("count", ["0", "11", "two", "-1"])
def test_image_count_outside_1_to_10_is_400_naming_n(client: Client, aws_stack: AwsStack, count: str) -> None:
    response = post_form(client, EDITS, *with_fields(EDITS, n=count))

    assert_rejected(aws_stack, response, "n")


@pytest.mark.parametrize(
    ("path", "label"), [(TRANSCRIPTIONS, "transcriptions"), (EDITS, "image edits")], ids=["transcription", "image_edit"]
)
@pytest.mark.parametrize("flag", ["true", "True", " TRUE "])
def test_stream_true_is_refused_with_the_contract_message(
    client: Client, aws_stack: AwsStack, path: str, label: str, flag: str
) -> None:
    response = post_form(client, path, *with_fields(path, stream=flag))

    error = assert_rejected(aws_stack, response, "stream")
    assert error["message"] == f"stream is not supported for async {label}"


@pytest.mark.parametrize("path", [TRANSCRIPTIONS, EDITS], ids=["transcription", "image_edit"])
def test_stream_false_is_accepted(client: Client, path: str) -> None:
    assert post_form(client, path, *with_fields(path, stream="false")).status_code == 202


@by_path
def test_json_body_sent_to_a_multipart_route_is_400(client: Client, aws_stack: AwsStack, path: str) -> None:
    body = json.dumps({"model": "mock/echo", "prompt": "x", "file": "clip.wav"})

    response = client.http.post(path, headers={"Content-Type": "application/json"}, body=body)

    assert_rejected(aws_stack, response, None)


def malformed_bodies() -> dict[str, tuple[bytes, str]]:
    body, content_type = encode_form(*transcription_form())
    closing = body.rindex(b"--\r\n")
    return {
        "no-boundary-parameter": (body, "multipart/form-data"),
        "other-boundary": (body, "multipart/form-data; boundary=not-the-one-used"),
        "not-multipart-at-all": (b"model=mock/echo&file=clip.wav", content_type),
        "truncated": (body[: len(body) // 2], content_type),
        "no-closing-boundary": (body[:closing], content_type),
        "empty": (b"", content_type),
    }


@pytest.mark.parametrize("case", list(malformed_bodies()))
def test_malformed_multipart_is_400(client: Client, aws_stack: AwsStack, case: str) -> None:
    body, content_type = malformed_bodies()[case]

    response = client.http.post(TRANSCRIPTIONS, headers={"Content-Type": content_type}, body=body)

    assert_rejected(aws_stack, response, None)


@by_path
@pytest.mark.parametrize("fallbacks", ["not-a-model", '["mock/echo", 42]', "[not json"])
def test_invalid_fallbacks_field_is_400_naming_it(
    client: Client, aws_stack: AwsStack, path: str, fallbacks: str
) -> None:
    response = post_form(client, path, *with_fields(path, fallbacks=fallbacks))

    assert_rejected(aws_stack, response, "fallbacks")
