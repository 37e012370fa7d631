"""Large payloads (issue 4, item 2): requests and results above the inline limit live in S3,
results come back intact (inline while they fit a response, else as a presigned URL), inputs
are deleted when the job ends, oversized bodies are 413, and the bucket keeps results at
least as long as the longest TTL.

Settings are read on the first request, so each test sets its limits before submitting.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from chalice.test import Client

from chalicelib import aws
from tests.functional.forms import (
    EDITS,
    IMAGE,
    MASK,
    assert_nothing_kept,
    bucket_keys,
    item_number,
    item_text,
    post_form,
    read_object,
    submit_form,
)
from tests.functional.payloads import CHAT, EMBEDDINGS, TTL_HEADER, assert_gateway_error, submit, submit_job
from tests.support.aws import AwsStack

DAY_S = 24 * 3600
INLINE_LIMIT = 4096
# Non-ASCII on purpose: sizes are bytes, and the text must survive S3 and the splice untouched.
LONG_TEXT = "Grüße aus Köln, 東京 und São Paulo — “quoted” \\ back\\slash. " * 200
DIMENSIONS = 1500  # a mock embedding this wide is ~15 KB of JSON: above the inline limit, small request


@pytest.fixture
def limits(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A 4 KB inline limit; tests may add more settings before their first request."""
    monkeypatch.setenv("ASYNCGATE_INLINE_LIMIT_BYTES", str(INLINE_LIMIT))
    return monkeypatch


def stored(aws_stack: AwsStack, job_id: str) -> dict[str, Any]:
    item = aws_stack.item(job_id)
    assert item is not None
    return item


def poll(client: Client, path: str, job_id: str) -> tuple[dict[str, Any], str]:
    response = client.http.get(f"{path}/{job_id}")
    assert response.status_code == 200, response.body
    text = response.body.decode()
    body: dict[str, Any] = json.loads(text)
    return body, text


def url_lifetime_s(url: str) -> int:
    """Seconds a presigned URL stays valid: SigV4's ``X-Amz-Expires`` or SigV2's absolute ``Expires``."""
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:
        return int(query["X-Amz-Expires"][0])
    return int(query["Expires"][0]) - int(time.time())


def embedding_job(client: Client, ttl: str | None = None) -> str:
    return submit_job(client, EMBEDDINGS, EMBEDDINGS.with_fields(dimensions=DIMENSIONS), ttl)


def test_request_over_the_inline_limit_goes_to_s3_and_the_job_completes_with_the_exact_result(
    client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch
) -> None:
    body = CHAT.with_fields(messages=[{"role": "user", "content": LONG_TEXT}])
    assert len(json.dumps(body, ensure_ascii=False).encode()) > INLINE_LIMIT
    job_id = submit_job(client, CHAT, body)

    item = stored(aws_stack, job_id)
    assert "request" not in item
    ref = item_text(item, "request_ref")
    assert json.loads(read_object(aws_stack, ref)) == body
    assert aws_stack.run_worker() == 1

    job, _ = poll(client, CHAT.submit_path, job_id)
    assert (job["status"], job["status_code"]) == ("completed", 200)
    assert job["result"]["choices"][0]["message"]["content"] == LONG_TEXT
    assert ref not in bucket_keys(aws_stack)
    assert "request_ref" not in stored(aws_stack, job_id)


def test_small_request_and_result_stay_in_the_item(
    client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch
) -> None:
    job_id = submit_job(client, EMBEDDINGS)
    assert "request" in stored(aws_stack, job_id)

    assert aws_stack.run_worker() == 1

    item = stored(aws_stack, job_id)
    assert "result" in item and "result_ref" not in item
    assert bucket_keys(aws_stack) == []


def test_result_over_the_inline_limit_goes_to_s3_and_polls_inline_byte_for_byte(
    client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch
) -> None:
    job_id = embedding_job(client)
    assert aws_stack.run_worker() == 1

    item = stored(aws_stack, job_id)
    assert "result" not in item
    ref = item_text(item, "result_ref")
    assert ref.startswith(f"results/{job_id}/")
    produced = read_object(aws_stack, ref)
    assert item_number(item, "result_size") == len(produced) > INLINE_LIMIT
    job, text = poll(client, EMBEDDINGS.submit_path, job_id)
    assert text.endswith(',"result":' + produced.decode() + "}")
    assert (job["status"], job["status_code"]) == ("completed", 200)
    assert "result_url" not in job and "result_size_bytes" not in job
    vector = job["result"]["data"][0]["embedding"]
    assert len(vector) == DIMENSIONS
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, abs_tol=1e-3)


def test_result_over_the_max_inline_response_polls_as_a_presigned_url_to_the_result(
    client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch
) -> None:
    limits.setenv("ASYNCGATE_MAX_INLINE_RESPONSE_BYTES", "8192")
    job_id = embedding_job(client, ttl="120")
    assert aws_stack.run_worker() == 1

    job, _ = poll(client, EMBEDDINGS.submit_path, job_id)

    assert (job["status"], job["status_code"]) == ("completed", 200)
    assert job["result"] is None
    item = stored(aws_stack, job_id)
    ref = item_text(item, "result_ref")
    url = urlsplit(job["result_url"])
    assert url.scheme == "https"
    assert url.path.endswith("/" + ref)
    assert 0 < url_lifetime_s(job["result_url"]) <= 120
    produced = read_object(aws_stack, ref)
    assert job["result_size_bytes"] == len(produced) == item_number(item, "result_size") > 8192
    result = json.loads(produced)
    assert len(result["data"][0]["embedding"]) == DIMENSIONS
    assert result["extra_fields"]["request_type"] == "embedding"


def test_request_and_upload_blobs_are_deleted_once_the_job_ends(
    client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch
) -> None:
    fields = {"model": "mock/echo", "prompt": LONG_TEXT, "size": "8x8"}
    uploads = [("image", ("cat.png", IMAGE, "image/png")), ("mask", ("mask.png", MASK, "image/png"))]
    job_id = submit_form(client, EDITS, (fields, uploads))

    inputs = [f"requests/{job_id}.json", f"uploads/{job_id}/image/0", f"uploads/{job_id}/mask/0"]
    assert bucket_keys(aws_stack) == inputs
    assert item_text(stored(aws_stack, job_id), "request_ref") == inputs[0]
    assert aws_stack.run_worker() == 1

    job, _ = poll(client, EDITS, job_id)
    assert job["status"] == "completed"
    assert [key for key in bucket_keys(aws_stack) if not key.startswith("results/")] == []


def test_request_blob_of_a_failed_job_is_deleted(
    client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch
) -> None:
    body = CHAT.with_fields(model="mock/fail-400", messages=[{"role": "user", "content": LONG_TEXT}])
    job_id = submit_job(client, CHAT, body)
    assert bucket_keys(aws_stack) == [f"requests/{job_id}.json"]

    assert aws_stack.run_worker() == 1

    assert poll(client, CHAT.submit_path, job_id)[0]["status"] == "failed"
    assert bucket_keys(aws_stack) == []


def test_blobs_of_a_job_cancelled_while_pending_are_deleted(
    client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch
) -> None:
    fields = {"model": "mock/echo", "prompt": LONG_TEXT}
    job_id = submit_form(client, EDITS, (fields, [("image", ("cat.png", IMAGE, "image/png"))]))
    assert len(bucket_keys(aws_stack)) == 2

    assert client.http.delete(f"{EDITS}/{job_id}").status_code == 200
    aws_stack.run_worker()

    assert bucket_keys(aws_stack) == []


# ── 413 ─────────────────────────────────────────────────────────────────────────────


def test_json_body_over_the_request_limit_is_413_and_nothing_is_kept(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCGATE_MAX_REQUEST_BYTES", "2000")
    raw = json.dumps(CHAT.with_fields(messages=[{"role": "user", "content": "x" * 2000}]))

    response = submit(client, CHAT, raw=raw)

    assert_gateway_error(response, 413, "request_too_large")
    assert response.json_body["extra_fields"] == {"request_type": "chat_completion"}
    assert_nothing_kept(aws_stack)


def test_multipart_body_over_the_request_limit_is_413_and_nothing_is_uploaded(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCGATE_MAX_REQUEST_BYTES", "2000")
    uploads = [("image", ("big.png", IMAGE * 20, "image/png"))]

    response = post_form(client, EDITS, {"model": "mock/echo", "prompt": "x"}, uploads)

    assert_gateway_error(response, 413, "request_too_large")
    assert_nothing_kept(aws_stack)


def test_body_exactly_at_the_request_limit_is_accepted(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = json.dumps(CHAT.with_fields(messages=[{"role": "user", "content": "x" * 500}]))
    monkeypatch.setenv("ASYNCGATE_MAX_REQUEST_BYTES", str(len(raw)))

    assert submit(client, CHAT, raw=raw).status_code == 202
    assert submit(client, CHAT, raw=raw + " ").status_code == 413


# ── retention ───────────────────────────────────────────────────────────────────────


def lifecycle_days(aws_stack: AwsStack, key: str) -> list[int]:
    """Expiration (days) of every enabled lifecycle rule that applies to ``key``."""
    rules = aws.client("s3").get_bucket_lifecycle_configuration(Bucket=aws_stack.settings.bucket)["Rules"]
    return [
        rule["Expiration"]["Days"]
        for rule in rules
        if rule["Status"] == "Enabled" and "Expiration" in rule and key.startswith(rule["Filter"].get("Prefix", ""))
    ]


def test_bucket_expires_results_no_sooner_than_the_maximum_ttl(
    client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch
) -> None:
    job_id = embedding_job(client, ttl=str(10 * 365 * DAY_S))  # clamped to the maximum TTL
    assert aws_stack.run_worker() == 1
    item = stored(aws_stack, job_id)
    kept_s = (item_number(item, "expires_at") - item_number(item, "completed_at")) // 1000

    days = lifecycle_days(aws_stack, item_text(item, "result_ref"))

    assert kept_s == aws_stack.settings.max_ttl_s
    assert days and min(days) * DAY_S >= kept_s


def test_bucket_keeps_inputs_as_long_as_a_job_may_stay_open(client: Client, aws_stack: AwsStack) -> None:
    horizon_s = aws_stack.settings.open_job_horizon_s
    for key in (
        "requests/0b5e3a3e-2f0c-4f5e-9d0a-6c1f9f3a7b21.json",
        "uploads/0b5e3a3e-2f0c-4f5e-9d0a-6c1f9f3a7b21/file/0",
    ):
        days = lifecycle_days(aws_stack, key)
        assert days and min(days) * DAY_S >= horizon_s, key


def test_ttl_header_bounds_the_result_expiry(client: Client, aws_stack: AwsStack, limits: pytest.MonkeyPatch) -> None:
    response = submit(client, EMBEDDINGS, headers={"Content-Type": "application/json", TTL_HEADER: "90"})
    job_id = response.json_body["id"]
    assert aws_stack.run_worker() == 1

    item = stored(aws_stack, job_id)
    assert item_number(item, "expires_at") - item_number(item, "completed_at") == 90_000
