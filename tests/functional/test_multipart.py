"""The multipart types (transcriptions, image edits, image variations) through moto, the worker,
the mock provider and a fake OpenAI: uploads kept in S3 while the job runs, forwarded byte
for byte, and deleted once it ends."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from tests.functional.forms import (
    AUDIO,
    EDITS,
    IMAGE,
    MASK,
    PNG_SIGNATURE,
    TRANSCRIPTIONS,
    VARIATIONS,
    Upload,
    bucket_keys,
    edit_form,
    item_text,
    object_type,
    read_object,
    submit_form,
    transcription_form,
    variation_form,
)
from tests.support.aws import AwsStack
from tests.support.openai_fake import PNG_PIXEL, OpenAIFake, ReceivedForm, transcript

API_KEY = "sk-test-multipart-51c2"
Form = tuple[dict[str, str], list[Upload]]


@pytest.fixture
def openai(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIFake]:
    with OpenAIFake(api_key=API_KEY) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        yield server


def run_to_end(client: Client, aws_stack: AwsStack, path: str, form: Form) -> dict[str, Any]:
    job_id = submit_form(client, path, form)
    assert aws_stack.run_worker() == 1
    polled = client.http.get(f"{path}/{job_id}")
    assert polled.status_code == 200, polled.body
    job: dict[str, Any] = polled.json_body
    assert job["id"] == job_id
    return job


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def decoded_images(result: dict[str, Any]) -> list[bytes]:
    assert isinstance(result["created"], int)
    return [base64.b64decode(item["b64_json"], validate=True) for item in result["data"]]


# ── through the mock provider ──────────────────────────────────────────────────────────


def test_transcription_through_the_mock_completes_with_its_text(client: Client, aws_stack: AwsStack) -> None:
    job = run_to_end(client, aws_stack, TRANSCRIPTIONS, transcription_form(language="en"))

    assert (job["status"], job["status_code"]) == ("completed", 200)
    result = job["result"]
    assert isinstance(result["text"], str) and result["text"]
    extra = result["extra_fields"]
    assert (extra["provider"], extra["model_requested"], extra["request_type"]) == ("mock", "echo", "transcription")


@pytest.mark.parametrize(
    ("path", "form", "request_type"),
    [
        (EDITS, edit_form(n="2", size="64x32"), "image_edit"),
        (VARIATIONS, variation_form(n="2", size="64x32"), "image_variation"),
    ],
    ids=["image_edit", "image_variation"],
)
def test_image_upload_through_the_mock_completes_with_png_images(
    client: Client, aws_stack: AwsStack, path: str, form: Form, request_type: str
) -> None:
    job = run_to_end(client, aws_stack, path, form)

    assert (job["status"], job["status_code"]) == ("completed", 200)
    images = decoded_images(job["result"])
    assert [png_size(image) for image in images] == [(64, 32), (64, 32)]
    assert job["result"]["extra_fields"]["request_type"] == request_type


def test_uploads_are_kept_in_s3_while_the_job_runs_and_deleted_when_it_ends(
    client: Client, aws_stack: AwsStack
) -> None:
    job_id = submit_form(client, EDITS, edit_form())

    uploads = [f"uploads/{job_id}/image/0", f"uploads/{job_id}/mask/0"]
    assert bucket_keys(aws_stack) == uploads
    assert [read_object(aws_stack, key) for key in uploads] == [IMAGE, MASK]
    assert [object_type(aws_stack, key) for key in uploads] == ["image/png", "image/png"]
    item = aws_stack.item(job_id)
    assert item is not None and IMAGE.hex() not in json.dumps(item)

    assert aws_stack.run_worker() == 1

    assert client.http.get(f"{EDITS}/{job_id}").json_body["status"] == "completed"
    assert bucket_keys(aws_stack) == []


def test_uploads_of_a_failed_job_are_deleted_too(client: Client, aws_stack: AwsStack) -> None:
    job = run_to_end(client, aws_stack, TRANSCRIPTIONS, transcription_form(model="mock/fail-400"))

    assert (job["status"], job["status_code"]) == ("failed", 400)
    assert bucket_keys(aws_stack) == []


# ── through a fake OpenAI ──────────────────────────────────────────────────────────────


def sent_form(fake: OpenAIFake, path: str) -> ReceivedForm:
    [form] = fake.forms(path)
    assert form.headers["authorization"] == f"Bearer {API_KEY}"
    return form


def file_parts(form: ReceivedForm) -> list[Upload]:
    return [(p.name, (p.filename or "", p.content, p.content_type or "")) for p in form.parts if p.filename is not None]


def test_transcription_reaches_openai_with_the_exact_file_and_fields(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    fields = {"language": "en", "prompt": "names: Zoë", "response_format": "json", "temperature": "0.2"}
    form = transcription_form(model="openai/whisper-1", **fields)

    job = run_to_end(client, aws_stack, TRANSCRIPTIONS, form)

    sent = sent_form(openai, "/audio/transcriptions")
    assert sent.fields == {"model": "whisper-1", **fields}
    assert file_parts(sent) == form[1]
    assert (job["status"], job["status_code"]) == ("completed", 200)
    assert job["result"]["text"] == transcript(AUDIO)
    assert job["result"]["extra_fields"]["provider"] == "openai"
    assert bucket_keys(aws_stack) == []


def test_transcription_in_a_text_format_comes_back_as_its_text(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    job = run_to_end(
        client, aws_stack, TRANSCRIPTIONS, transcription_form(model="openai/whisper-1", response_format="text")
    )

    assert job["status"] == "completed"
    assert job["result"]["text"] == transcript(AUDIO) + "\n"


def test_image_edit_reaches_openai_with_image_mask_and_fields(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    fields = {"n": "2", "size": "256x256", "response_format": "b64_json"}
    form = edit_form(model="openai/dall-e-2", **fields)

    job = run_to_end(client, aws_stack, EDITS, form)

    sent = sent_form(openai, "/images/edits")
    assert sent.fields == {"model": "dall-e-2", "prompt": "add a red hat", **fields}
    assert file_parts(sent) == form[1]
    assert decoded_images(job["result"]) == [PNG_PIXEL, PNG_PIXEL]


def test_image_variation_reaches_openai_with_the_image_and_fields(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    form = variation_form(model="openai/dall-e-2", n="1", size="256x256")

    job = run_to_end(client, aws_stack, VARIATIONS, form)

    sent = sent_form(openai, "/images/variations")
    assert sent.fields == {"model": "dall-e-2", "n": "1", "size": "256x256"}
    assert file_parts(sent) == form[1]
    assert decoded_images(job["result"]) == [PNG_PIXEL]


def test_every_repeated_image_part_of_an_edit_reaches_openai(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake
) -> None:
    second = IMAGE[::-1]
    uploads = [("image[]", ("a.png", IMAGE, "image/png")), ("image[]", ("b.png", second, "image/png"))]

    job = run_to_end(client, aws_stack, EDITS, ({"model": "openai/gpt-image-1", "prompt": "merge"}, uploads))

    assert job["status"] == "completed"
    assert file_parts(sent_form(openai, "/images/edits")) == uploads


# ── fallbacks given as a form field ────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "fallbacks",
    ['["openai/whisper-1"]', "mock/fail-403, openai/whisper-1", "mock/fail-403,openai/whisper-1"],
    ids=["json-array", "comma-separated", "comma-no-space"],
)
def test_fallbacks_form_field_routes_to_the_next_model_and_is_not_forwarded(
    client: Client, aws_stack: AwsStack, openai: OpenAIFake, fallbacks: str
) -> None:
    form = transcription_form(model="mock/fail-404", fallbacks=fallbacks)

    job = run_to_end(client, aws_stack, TRANSCRIPTIONS, form)

    assert (job["status"], job["status_code"]) == ("completed", 200)
    extra = job["result"]["extra_fields"]
    assert (extra["provider"], extra["model_requested"]) == ("openai", "whisper-1")
    sent = sent_form(openai, "/audio/transcriptions")
    assert sent.fields == {"model": "whisper-1"}
    assert file_parts(sent) == form[1]


def test_fallbacks_are_stored_as_a_list_of_models(client: Client, aws_stack: AwsStack) -> None:
    job_id = submit_form(client, VARIATIONS, variation_form(fallbacks="mock/a, mock/b"))

    item = aws_stack.item(job_id)
    assert item is not None
    assert json.loads(item_text(item, "request"))["fallbacks"] == ["mock/a", "mock/b"]
