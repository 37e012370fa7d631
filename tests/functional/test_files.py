"""POST /anthropic/v1/files forwards uploads to Anthropic's or OpenAI's Files API (contract §7)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from chalice.test import Client

from tests.support.anthropic_fake import AnthropicFake
from tests.support.openai_fake import OpenAIFake

ANTHROPIC_KEY = "sk-ant-files-7c1d"
OPENAI_KEY = "sk-openai-files-93ab"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 4
FILES = "/anthropic/v1/files"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AnthropicFake, OpenAIFake]]:
    with AnthropicFake(api_key=ANTHROPIC_KEY) as anthropic, OpenAIFake(api_key=OPENAI_KEY) as openai:
        for name, value in {**anthropic.environ(), **openai.environ()}.items():
            monkeypatch.setenv(name, value)
        yield anthropic, openai


def multipart(fields: dict[str, str], file: tuple[str, bytes, str] | None) -> tuple[bytes, str]:
    files = {"file": file} if file else {"ignored": ("", b"", "text/plain")}
    prepared = requests.Request("POST", "http://x/", data=fields, files=files).prepare()
    assert isinstance(prepared.body, bytes)
    return prepared.body, prepared.headers["Content-Type"]


def upload(client: Client, body: bytes, content_type: str, provider: str | None = None) -> Any:
    headers = {"Content-Type": content_type, **({"x-model-provider": provider} if provider else {})}
    return client.http.post(FILES, headers=headers, body=body)


def test_upload_goes_to_anthropic_by_default_and_answers_its_file_object(
    client: Client, fakes: tuple[AnthropicFake, OpenAIFake]
) -> None:
    anthropic, _ = fakes
    body, content_type = multipart({}, ("report.pdf", PDF, "application/pdf"))

    response = upload(client, body, content_type)

    assert response.status_code == 200
    found = response.json_body
    assert set(found) == {"id", "type", "filename", "mime_type", "size_bytes", "created_at", "downloadable"}
    assert (found["type"], found["filename"], found["mime_type"]) == ("file", "report.pdf", "application/pdf")
    assert (found["size_bytes"], found["downloadable"]) == (len(PDF), False)
    [sent] = anthropic.requests_to("/v1/files")
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "files-api-2025-04-14"
    [stored] = anthropic.uploads
    assert (stored.filename, stored.content) == ("report.pdf", PDF)


def test_upload_to_openai_sends_the_purpose_and_answers_in_anthropics_shape(
    client: Client, fakes: tuple[AnthropicFake, OpenAIFake]
) -> None:
    _, openai = fakes
    body, content_type = multipart({"purpose": "assistants"}, ("notes.txt", b"hello", "text/plain"))

    response = upload(client, body, content_type, provider="openai")

    assert response.status_code == 200
    found = response.json_body
    assert (found["type"], found["filename"], found["size_bytes"]) == ("file", "notes.txt", 5)
    assert found["created_at"].endswith("Z")
    assert found["id"].startswith("file-")
    [sent] = openai.requests_to("/files")
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert b'name="purpose"\r\n\r\nassistants' in sent.body


@pytest.mark.parametrize(
    ("fields", "file", "provider", "status", "kind"),
    [
        ({"purpose": "x"}, None, None, 400, "invalid_request_error"),
        ({}, ("a.txt", b"a", "text/plain"), "gemini", 400, "invalid_request_error"),
    ],
    ids=["missing-file", "unknown-provider"],
)
def test_bad_uploads_get_anthropic_shaped_errors(
    client: Client,
    fakes: tuple[AnthropicFake, OpenAIFake],
    fields: dict[str, str],
    file: tuple[str, bytes, str] | None,
    provider: str | None,
    status: int,
    kind: str,
) -> None:
    body, content_type = multipart(fields, file)

    response = upload(client, body, content_type, provider)

    assert response.status_code == status
    assert response.json_body["type"] == "error"
    assert response.json_body["error"]["type"] == kind
    assert fakes[0].requests == [] and fakes[1].requests == []


def test_a_body_that_is_not_multipart_is_400(client: Client, fakes: tuple[AnthropicFake, OpenAIFake]) -> None:
    response = upload(client, b'{"file": "x"}', "application/json")

    assert response.status_code == 400
    assert response.json_body["error"]["type"] == "invalid_request_error"


def test_a_provider_error_keeps_its_status_and_type(client: Client, fakes: tuple[AnthropicFake, OpenAIFake]) -> None:
    anthropic, _ = fakes
    anthropic.script_error("/v1/files", 429, headers={"retry-after": "3"})
    body, content_type = multipart({}, ("a.pdf", PDF, "application/pdf"))

    response = upload(client, body, content_type)

    assert response.status_code == 429
    assert response.json_body["error"]["type"] == "rate_limit_error"
    assert ANTHROPIC_KEY not in response.body.decode()


def test_without_a_key_the_upload_is_refused_with_401(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    body, content_type = multipart({}, ("a.pdf", PDF, "application/pdf"))

    response = upload(client, body, content_type)

    assert response.status_code == 401
    assert response.json_body["error"]["type"] == "authentication_error"
