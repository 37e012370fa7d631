"""Where a job's bytes live: inline in the item while small, in the blob store when large.

Requests and results above the inline limit go to the blob store under the job's id and
the item keeps a pointer; uploaded files always go there. On poll a blob result comes
back inline while it fits a response, otherwise as a URL that expires with the job.
Inputs (request and uploads) are deleted once the job is finished.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.blobs import request_key, result_key, upload_key, uploads_of
from chalicelib.config import Settings
from chalicelib.errors import InternalError
from chalicelib.jobs import Job
from chalicelib.multipart import FilePart, Files
from chalicelib.ports import BlobStore

log = logging.getLogger(__name__)

UPLOADS_FIELD = "__files__"


@dataclass(frozen=True)
class StoredRequest:
    """The request as the item keeps it: inline text, or a blob key."""

    inline: str | None
    ref: str | None


@dataclass(frozen=True)
class LoadedRequest:
    """A stored request read back: its body, its uploads' descriptors, and every input blob key."""

    body: dict[str, Any]
    uploads: dict[str, Any]
    blob_keys: list[str]


@dataclass(frozen=True)
class StoredResult:
    inline: str | None
    ref: str | None
    size: int


class Payloads:
    def __init__(self, blobs: BlobStore, settings: Settings) -> None:
        self._blobs = blobs
        self._settings = settings

    # requests -------------------------------------------------------------------------
    def store_request(self, job_id: str, request_json: str) -> StoredRequest:
        data = request_json.encode()
        if len(data) <= self._settings.inline_limit_bytes:
            return StoredRequest(request_json, None)
        key = request_key(job_id)
        self._blobs.put(key, data, "application/json")
        return StoredRequest(None, key)

    def store_uploads(self, job_id: str, files: Files) -> dict[str, list[dict[str, Any]]]:
        """Put each uploaded file in the blob store (all or none); the descriptors go in the request."""
        described: dict[str, list[dict[str, Any]]] = {}
        stored: list[str] = []
        try:
            for field, parts in files.items():
                for index, part in enumerate(parts):
                    key = upload_key(job_id, field, index)
                    self._blobs.put(key, part.data, part.content_type)
                    stored.append(key)
                    item = {"key": key, "filename": part.filename, "content_type": part.content_type}
                    described.setdefault(field, []).append(item | {"size": len(part.data)})
        except Exception:
            self.discard(stored)
            raise
        return described

    def read_request(self, job: Job) -> LoadedRequest:
        text = job.request_json if job.request_json is not None else self._blobs.get(job.request_ref or "").decode()
        try:
            body: dict[str, Any] = json.loads(text)
        except ValueError:
            raise InternalError("the stored request could not be read", code="corrupt_job") from None
        uploads: dict[str, Any] = body.pop(UPLOADS_FIELD, None) or {}
        keys = [item["key"] for items in uploads.values() for item in items]
        return LoadedRequest(body, uploads, ([job.request_ref] if job.request_ref else []) + keys)

    def load_files(self, uploads: Mapping[str, Any]) -> dict[str, list[FilePart]]:
        return {
            field: [FilePart(item["filename"], item["content_type"], self._blobs.get(item["key"])) for item in items]
            for field, items in uploads.items()
        }

    def discard_inputs(self, job_id: str) -> None:
        """Drop everything a job was given (request and uploads), found by its fixed keys."""
        try:
            keys = [request_key(job_id), *self._blobs.keys(uploads_of(job_id))]
        except Exception:
            log.warning("could not list the inputs of job %s", job_id, exc_info=True)
            return
        self.discard(keys)

    def discard(self, keys: list[str]) -> None:
        """Best effort: the bucket's lifecycle rules collect anything left behind."""
        if not keys:
            return
        try:
            self._blobs.delete(keys)
        except Exception:
            log.warning("could not delete %d input objects", len(keys), exc_info=True)

    # results --------------------------------------------------------------------------
    def store_result(self, job_id: str, writer: str, result_json: str) -> StoredResult:
        data = result_json.encode()
        if len(data) <= self._settings.inline_limit_bytes:
            return StoredResult(result_json, None, len(data))
        key = result_key(job_id, writer)
        self._blobs.put(key, data, "application/json")
        return StoredResult(None, key, len(data))

    def result_for_poll(self, job: Job, now_ms: int) -> tuple[str | None, str | None]:
        """A blob result as ``(text, None)`` when it fits a response, else ``(None, url)``."""
        if job.result_ref is None:
            return None, None
        if (job.result_size or 0) <= self._settings.max_inline_response_bytes:
            return self._blobs.get(job.result_ref).decode(), None
        seconds_left = ((job.expires_at_ms or now_ms) - now_ms) // 1000
        return None, self._blobs.url(job.result_ref, seconds_left)
