"""S3 blob store for payloads too large for a job item: requests, uploads and results.

Keys are ``<prefix><job id>…`` so the bucket's lifecycle rules can expire each kind on
its own schedule (results after the longest TTL, requests and uploads after the open-job
horizon). Objects are encrypted at rest by the bucket; reads beyond an inline response
are handed out as SigV4 presigned URLs valid for at most an hour (each poll signs a fresh
one) and never past the job's expiry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REQUESTS = "requests/"
UPLOADS = "uploads/"
RESULTS = "results/"
MAX_PRESIGN_S = 3600


def request_key(job_id: str) -> str:
    return f"{REQUESTS}{job_id}.json"


def upload_key(job_id: str, field: str, index: int) -> str:
    return f"{UPLOADS}{job_id}/{field}/{index}"


def uploads_of(job_id: str) -> str:
    return f"{UPLOADS}{job_id}/"


def result_key(job_id: str, writer: str) -> str:
    """Each lease holder writes its own object, so a worker that lost its lease cannot clobber
    the result the job points to."""
    return f"{RESULTS}{job_id}/{writer}.json"


class S3BlobStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        body: bytes = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        return body

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            if chunk:
                self._client.delete_objects(Bucket=self._bucket, Delete={"Objects": chunk, "Quiet": True})

    def keys(self, prefix: str) -> list[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def url(self, key: str, expires_in_s: int) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=max(1, min(MAX_PRESIGN_S, expires_in_s)),
        )
        return url
