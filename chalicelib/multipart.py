"""Parse ``multipart/form-data`` request bodies into text fields and file parts.

Built on the standard library's MIME parser; binary file content is returned as the
exact bytes sent. A body that is not well-formed multipart is an ``InvalidRequest``.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

from chalicelib.errors import InvalidRequest


@dataclass(frozen=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


Files = Mapping[str, Sequence[FilePart]]


@dataclass(frozen=True)
class Form:
    """Text fields (first value per name) and file parts (every part, in order, per name)."""

    fields: dict[str, str]
    files: dict[str, list[FilePart]]


def _file_type(part: Message, filename: str) -> str:
    if part.get("content-type"):
        return part.get_content_type()
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def _text(name: str, content: bytes, charset: str) -> str:
    """A text field in its declared charset; one that names no text codec is refused."""
    try:
        return content.decode(charset, "replace")
    except (LookupError, UnicodeError):
        raise InvalidRequest(
            f"form field {name!r} has an unsupported charset", param=name, code="invalid_multipart"
        ) from None


def is_multipart(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "multipart/form-data"


def parse_form(raw: bytes | None, content_type: str | None) -> Form:
    """The fields and files of a ``multipart/form-data`` body."""
    if not is_multipart(content_type) or "boundary=" not in (content_type or "").lower():
        raise InvalidRequest("Content-Type must be multipart/form-data with a boundary", code="invalid_content_type")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + (raw or b""))
    if not message.is_multipart() or message.defects:
        raise InvalidRequest("request body is not valid multipart/form-data", code="invalid_multipart")
    fields: dict[str, str] = {}
    files: dict[str, list[FilePart]] = {}
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        data = part.get_payload(decode=True)
        content = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files.setdefault(name, []).append(FilePart(filename, _file_type(part, filename), content))
        elif name not in fields:
            fields[name] = _text(name, content, part.get_content_charset() or "utf-8")
    return Form(fields, files)
