"""``Idempotency-Key`` on submit (contract §2): a repeat with the same key and body answers the
original job; the same key with another body is 422; keys are validated and never stored in clear."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client, HTTPResponse

from chalicelib import aws
from tests.functional.forms import TRANSCRIPTIONS, bucket_keys, encode_form, transcription_form
from tests.functional.payloads import CHAT, EMBEDDINGS, JSON_HEADERS, RESPONSES, Kind, assert_gateway_error, submit
from tests.support.aws import AwsStack

KEY = "order-7731-attempt"


def submit_with_key(client: Client, body: dict[str, Any], key: str = KEY, kind: Kind = CHAT) -> HTTPResponse:
    return submit(client, kind, body, {**JSON_HEADERS, "Idempotency-Key": key})


def accepted_id(response: HTTPResponse) -> str:
    assert response.status_code == 202, response.body
    job_id: str = response.json_body["id"]
    return job_id


def scan_text(aws_stack: AwsStack) -> str:
    items = aws.client("dynamodb").scan(TableName=aws_stack.settings.jobs_table)["Items"]
    return json.dumps(items)


def job_count(aws_stack: AwsStack) -> int:
    """Job items only (idempotency records live in the same table)."""
    items = aws.client("dynamodb").scan(TableName=aws_stack.settings.jobs_table)["Items"]
    return sum(1 for item in items if "request_type" in item)


def test_same_key_and_body_answers_the_original_job(client: Client, aws_stack: AwsStack) -> None:
    first = submit_with_key(client, CHAT.body)

    again = submit_with_key(client, CHAT.body)

    assert accepted_id(again) == accepted_id(first)
    assert again.json_body == first.json_body
    assert again.headers["Location"] == first.headers["Location"]
    assert job_count(aws_stack) == 1
    aws_stack.run_worker()
    assert client.http.get(first.headers["Location"]).json_body["status"] == "completed"


def test_a_replay_of_a_job_not_yet_run_queues_it_again_and_it_still_runs_once(
    client: Client, aws_stack: AwsStack
) -> None:
    first = submit_with_key(client, CHAT.body)
    submit_with_key(client, CHAT.body)

    assert aws_stack.queued_messages() == 2
    assert aws_stack.run_worker() == 2
    item = aws_stack.item(accepted_id(first))
    assert item is not None and item["attempts"]["N"] == "1"
    assert item["status"]["S"] == "completed"


def post_raw(client: Client, text: str) -> HTTPResponse:
    return client.http.post(CHAT.submit_path, headers={**JSON_HEADERS, "Idempotency-Key": KEY}, body=text)


def test_same_body_with_other_whitespace_is_the_same_request(client: Client, aws_stack: AwsStack) -> None:
    body = CHAT.with_fields(temperature=0.5)
    first = accepted_id(post_raw(client, json.dumps(body, indent=2)))

    assert accepted_id(post_raw(client, json.dumps(body, separators=(",", ":")))) == first
    assert job_count(aws_stack) == 1


def test_same_body_with_members_in_another_order_is_the_same_request(client: Client, aws_stack: AwsStack) -> None:
    body = CHAT.with_fields(temperature=0.5)
    first = accepted_id(post_raw(client, json.dumps(body)))

    assert accepted_id(post_raw(client, json.dumps(dict(reversed(list(body.items())))))) == first


def test_same_key_with_a_different_body_is_422_and_stores_nothing_new(client: Client, aws_stack: AwsStack) -> None:
    first = accepted_id(submit_with_key(client, CHAT.body))
    items_before = aws_stack.item_count()

    response = submit_with_key(client, CHAT.with_fields(temperature=0.1))

    assert_gateway_error(response, 422, "idempotency_key_reused")
    assert response.json_body["extra_fields"] == {"request_type": "chat_completion"}
    assert aws_stack.item_count() == items_before
    assert aws_stack.queued_messages() == 1
    assert submit_with_key(client, CHAT.body).json_body["id"] == first


def test_same_key_on_another_request_type_is_422(client: Client, aws_stack: AwsStack) -> None:
    accepted_id(submit_with_key(client, RESPONSES.body, kind=RESPONSES))

    response = submit_with_key(client, EMBEDDINGS.body, kind=EMBEDDINGS)

    assert_gateway_error(response, 422, "idempotency_key_reused")
    assert job_count(aws_stack) == 1


def test_different_keys_make_different_jobs(client: Client, aws_stack: AwsStack) -> None:
    ids = {accepted_id(submit_with_key(client, CHAT.body, key)) for key in ("key-a", "key-b", "KEY-A")}

    assert len(ids) == 3
    assert job_count(aws_stack) == 3
    assert aws_stack.queued_messages() == 3


def test_submits_without_a_key_are_never_merged(client: Client, aws_stack: AwsStack) -> None:
    ids = {accepted_id(submit(client, CHAT)) for _ in range(2)}

    assert len(ids) == 2


def test_replay_after_the_job_completed_answers_202_with_the_same_id(client: Client, aws_stack: AwsStack) -> None:
    job_id = accepted_id(submit_with_key(client, CHAT.body))
    assert aws_stack.run_worker() == 1

    again = submit_with_key(client, CHAT.body)

    assert accepted_id(again) == job_id
    assert again.json_body["status"] == "completed"
    assert aws_stack.queued_messages() == 0
    assert job_count(aws_stack) == 1
    assert client.http.get(CHAT.job_path(job_id)).json_body["status"] == "completed"


def test_multipart_replay_with_the_same_file_answers_the_original_job(client: Client, aws_stack: AwsStack) -> None:
    body, content_type = encode_form(*transcription_form())
    headers = {"Content-Type": content_type, "Idempotency-Key": KEY}
    first = accepted_id(client.http.post(TRANSCRIPTIONS, headers=headers, body=body))
    uploads = bucket_keys(aws_stack)

    again = client.http.post(TRANSCRIPTIONS, headers=headers, body=body)

    assert accepted_id(again) == first
    assert bucket_keys(aws_stack) == uploads
    assert job_count(aws_stack) == 1


def test_multipart_replay_with_another_file_is_422(client: Client, aws_stack: AwsStack) -> None:
    fields, uploads = transcription_form()
    body, content_type = encode_form(fields, uploads)
    accepted_id(
        client.http.post(TRANSCRIPTIONS, headers={"Content-Type": content_type, "Idempotency-Key": KEY}, body=body)
    )
    kept = bucket_keys(aws_stack)
    other = [("file", ("clip.wav", b"another recording", "audio/wav"))]
    body, content_type = encode_form(fields, other)

    response = client.http.post(
        TRANSCRIPTIONS, headers={"Content-Type": content_type, "Idempotency-Key": KEY}, body=body
    )

    assert_gateway_error(response, 422, "idempotency_key_reused")
    assert bucket_keys(aws_stack) == kept


@pytest.mark.parametrize(
    "key",
    ["k" * 256, "tab\there", "new\nline", "nul\x00byte", "bell\x07", "ключ", ""],
    ids=["256-chars", "tab", "newline", "nul", "control", "non-ascii", "empty"],
)
def test_invalid_key_is_400_and_nothing_is_stored(client: Client, aws_stack: AwsStack, key: str) -> None:
    response = submit_with_key(client, CHAT.body, key)

    error = assert_gateway_error(response, 400)
    assert error["param"] == "Idempotency-Key"
    assert aws_stack.item_count() == 0
    assert aws_stack.queued_messages() == 0


@pytest.mark.parametrize("key", ["k" * 255, "a", "with spaces and ~!@#$%^&*()"], ids=["255-chars", "one", "symbols"])
def test_printable_key_up_to_255_chars_is_accepted(client: Client, key: str) -> None:
    first = accepted_id(submit_with_key(client, CHAT.body, key))

    assert accepted_id(submit_with_key(client, CHAT.body, key)) == first


def test_key_is_not_stored_in_clear(client: Client, aws_stack: AwsStack) -> None:
    key = "secret-looking-idempotency-key-5f1e9a"
    accepted_id(submit_with_key(client, CHAT.body, key))
    assert aws_stack.run_worker() == 1

    stored = scan_text(aws_stack)

    assert aws_stack.item_count() == 2  # the job and its idempotency record
    assert key not in stored
    assert key.encode().hex() not in stored


def test_key_is_remembered_for_at_least_24_hours_even_after_a_short_result_ttl(
    client: Client, aws_stack: AwsStack
) -> None:
    headers = {**JSON_HEADERS, "Idempotency-Key": KEY, "x-bf-async-job-result-ttl": "60"}
    job_id = accepted_id(submit(client, CHAT, CHAT.body, headers))
    assert aws_stack.run_worker() == 1
    items = aws.client("dynamodb").scan(TableName=aws_stack.settings.jobs_table)["Items"]
    [record] = [item for item in items if "request_type" not in item]
    job = aws_stack.item(job_id)
    assert job is not None

    remembered_s = int(record["ttl"]["N"]) - int(job["created_at"]["N"]) // 1000

    assert remembered_s >= 24 * 3600
