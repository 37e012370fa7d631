"""Validate ``multipart/form-data`` submits: transcriptions, image edits, image variations.

Form fields stay strings (as the provider APIs take them); ``model`` must be
``provider/model``; the required file parts must be present and non-empty; ``fallbacks``
may be a JSON array or a comma-separated list; ``stream=true`` is refused where the
synchronous API could stream. Pure: parsing lives in ``multipart``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from chalicelib.contract import RequestType
from chalicelib.multipart import FilePart, Form
from chalicelib.validation import (
    InferenceRequest,
    ProviderCatalog,
    is_nonblank,
    missing,
    parse_fallbacks,
    parse_model,
    stream_refused,
    wrong_type,
)


@dataclass(frozen=True)
class FormRules:
    files: tuple[tuple[str, ...], ...]  # each entry: the accepted names of one required file part
    optional_files: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    streams: bool = False


RULES: dict[RequestType, FormRules] = {
    RequestType.TRANSCRIPTION: FormRules(files=(("file",),), streams=True),
    RequestType.IMAGE_EDIT: FormRules(
        files=(("image", "image[]"),), optional_files=("mask",), text_fields=("prompt",), streams=True
    ),
    RequestType.IMAGE_VARIATION: FormRules(files=(("image", "image[]"),)),
}


def validate_form(
    request_type: RequestType, form: Form, catalog: ProviderCatalog
) -> tuple[InferenceRequest, dict[str, list[FilePart]]]:
    """The request (fields as the body) and the file parts to keep, or an ``InvalidRequest``."""
    rules = RULES[request_type]
    fields = dict(form.fields)
    model = parse_model(fields.get("model"), "model", request_type, catalog)
    for name in rules.text_fields:
        if name not in fields:
            raise missing(name)
        if not is_nonblank(fields[name]):
            raise wrong_type(name, "a non-empty string")
    files: dict[str, list[FilePart]] = {}
    for names in rules.files:
        found = [name for name in names if form.files.get(name)]
        if not found:
            raise missing(names[0])
        for name in found:
            files[name] = _non_empty(name, form.files[name])
    for name in rules.optional_files:
        if form.files.get(name):
            files[name] = _non_empty(name, form.files[name])
    _check_count(fields.get("n"))
    fallbacks = parse_fallbacks(_fallback_list(fields.pop("fallbacks", None)), request_type, catalog)
    if fields.get("stream", "").strip().lower() == "true" and rules.streams:
        raise stream_refused(request_type)
    body: dict[str, Any] = {**fields, **({"fallbacks": [str(f) for f in fallbacks]} if fallbacks else {})}
    return InferenceRequest(request_type, model, fallbacks, body), files


def _non_empty(name: str, parts: list[FilePart]) -> list[FilePart]:
    if not all(part.data for part in parts):
        raise wrong_type(name, "a non-empty file")
    return parts


def _check_count(value: str | None) -> None:
    if value is not None and not re.fullmatch(r"0*([1-9]|10)", value.strip()):
        raise wrong_type("n", "an integer between 1 and 10")


def _fallback_list(value: str | None) -> Any:
    """``["openai/a","mock/b"]`` or ``openai/a,mock/b``; anything else is refused by the caller."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return [item.strip() for item in text.split(",") if item.strip()] or text
