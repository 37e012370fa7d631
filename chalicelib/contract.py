"""The request types of the async API (contract §1): names, paths and body kinds.

This table is the single source for routes, poll paths and the wording of
per-type messages. It holds no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ASYNC_PREFIX = "/v1/async"


class RequestType(StrEnum):
    TEXT_COMPLETION = "text_completion"
    CHAT_COMPLETION = "chat_completion"
    RESPONSES = "responses"
    EMBEDDING = "embedding"
    SPEECH = "speech"
    TRANSCRIPTION = "transcription"
    IMAGE_GENERATION = "image_generation"
    IMAGE_EDIT = "image_edit"
    IMAGE_VARIATION = "image_variation"
    RERANK = "rerank"
    OCR = "ocr"


@dataclass(frozen=True)
class Endpoint:
    request_type: RequestType
    path: str
    label: str
    multipart: bool = False

    @property
    def submit_path(self) -> str:
        return f"{ASYNC_PREFIX}/{self.path}"

    def job_path(self, job_id: str) -> str:
        return f"{ASYNC_PREFIX}/{self.path}/{job_id}"


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(RequestType.TEXT_COMPLETION, "completions", "text completions"),
    Endpoint(RequestType.CHAT_COMPLETION, "chat/completions", "chat completions"),
    Endpoint(RequestType.RESPONSES, "responses", "responses"),
    Endpoint(RequestType.EMBEDDING, "embeddings", "embeddings"),
    Endpoint(RequestType.SPEECH, "audio/speech", "speech"),
    Endpoint(RequestType.TRANSCRIPTION, "audio/transcriptions", "transcriptions", multipart=True),
    Endpoint(RequestType.IMAGE_GENERATION, "images/generations", "image generations"),
    Endpoint(RequestType.IMAGE_EDIT, "images/edits", "image edits", multipart=True),
    Endpoint(RequestType.IMAGE_VARIATION, "images/variations", "image variations", multipart=True),
    Endpoint(RequestType.RERANK, "rerank", "rerank"),
    Endpoint(RequestType.OCR, "ocr", "ocr"),
)

BY_TYPE: dict[RequestType, Endpoint] = {e.request_type: e for e in ENDPOINTS}
JSON_ENDPOINTS: tuple[Endpoint, ...] = tuple(e for e in ENDPOINTS if not e.multipart)
