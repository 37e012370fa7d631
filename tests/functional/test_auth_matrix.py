"""The auth matrix (contract §5, §6): every key carrier × who presents what × submit / poll / cancel / list.

Keys live in the moto keys table (made through ``KeyAdmin``); the key cache is off so a
disabled key is refused at once. A job another caller may not see answers exactly the 404
of an unknown id: same status, same body apart from ``event_id``, same storage reads.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import pytest
from chalice.test import Client, HTTPResponse

from chalicelib.jobs import ANONYMOUS
from chalicelib.keys import new_key_value
from tests.functional.keyed import (
    CARRIERS,
    cancel_with,
    carry,
    create_key,
    dynamodb_calls,
    key_admin,
    list_with,
    listed_ids,
    poll_with,
    stored_caller,
    submit_keyed,
    submit_with,
    without_event_id,
)
from tests.functional.payloads import assert_gateway_error, assert_nothing_stored
from tests.support.aws import AwsStack

PRESENTING = ("same", "other", "none", "unknown", "disabled")
OUTSIDERS = ("other", "none", "unknown", "disabled")  # everyone who must not see a keyed job


@dataclass(frozen=True)
class Keys:
    own: str
    own_id: str
    other: str
    other_id: str
    disabled: str
    unknown: str

    def value(self, presenting: str) -> str | None:
        return {
            "same": self.own,
            "other": self.other,
            "none": None,
            "unknown": self.unknown,
            "disabled": self.disabled,
        }[presenting]


@pytest.fixture
def keys(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Keys:
    monkeypatch.setenv("ASYNCGATE_KEY_CACHE_SECONDS", "0")
    own, other, disabled = (create_key(aws_stack, name) for name in ("own", "other", "disabled"))
    key_admin(aws_stack).disable(disabled.key.id)
    return Keys(own.value, own.key.id, other.value, other.key.id, disabled.value, new_key_value())


@dataclass(frozen=True)
class Jobs:
    own: str
    other: str
    keyless: str


def make_jobs(client: Client, keys: Keys, carrier: str) -> Jobs:
    return Jobs(
        submit_keyed(client, carry(carrier, keys.own)),
        submit_keyed(client, carry(carrier, keys.other)),
        submit_keyed(client, {}),
    )


def job_request(client: Client, operation: str, job_id: str, headers: dict[str, str]) -> HTTPResponse:
    send = poll_with if operation == "poll" else cancel_with
    return send(client, job_id, headers)


def any_request(client: Client, operation: str, job_id: str, headers: dict[str, str]) -> HTTPResponse:
    """``operation`` (submit, poll, cancel or list) with ``headers``; ``job_id`` for poll and cancel."""
    if operation == "submit":
        return submit_with(client, headers)
    if operation == "list":
        return list_with(client, headers)
    return job_request(client, operation, job_id, headers)


def assert_same_as_unknown_id(client: Client, operation: str, job_id: str, headers: dict[str, str]) -> None:
    """The refusal is the unknown-id 404: same status, headers, body (but event_id) and DynamoDB calls."""
    with dynamodb_calls() as refused_calls:
        refused = job_request(client, operation, job_id, headers)
    with dynamodb_calls() as unknown_calls:
        unknown = job_request(client, operation, str(uuid.uuid4()), headers)

    assert_gateway_error(refused, 404, "job_not_found")
    assert_gateway_error(unknown, 404, "job_not_found")
    assert without_event_id(refused.json_body) == without_event_id(unknown.json_body)
    assert refused.headers == unknown.headers
    assert refused_calls == unknown_calls
    assert refused_calls.count("GetItem") >= 1  # the job itself was read: no shortcut tells the cases apart


# ── the matrix ─────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("presenting", PRESENTING)
@pytest.mark.parametrize("carrier", CARRIERS)
def test_submit_accepts_valid_callers_and_refuses_unknown_or_disabled_keys_storing_nothing(
    client: Client, aws_stack: AwsStack, keys: Keys, carrier: str, presenting: str
) -> None:
    response = submit_with(client, carry(carrier, keys.value(presenting)))

    if presenting in ("unknown", "disabled"):
        assert_gateway_error(response, 400, "invalid_virtual_key")
        assert_nothing_stored(aws_stack)
        return
    assert response.status_code == 202, response.body
    scope = {"same": keys.own_id, "other": keys.other_id, "none": ANONYMOUS}[presenting]
    assert stored_caller(aws_stack, response.json_body["id"]) == scope


@pytest.mark.parametrize("operation", ["poll", "cancel"])
@pytest.mark.parametrize("presenting", PRESENTING)
@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_keyed_job_answers_only_its_own_key_and_is_an_unknown_id_to_everyone_else(
    client: Client, aws_stack: AwsStack, keys: Keys, carrier: str, presenting: str, operation: str
) -> None:
    jobs = make_jobs(client, keys, carrier)
    headers = carry(carrier, keys.value(presenting))

    if presenting in OUTSIDERS:
        assert_same_as_unknown_id(client, operation, jobs.own, headers)
        still = poll_with(client, jobs.own, carry(carrier, keys.own))
        assert (still.status_code, still.json_body["status"]) == (202, "pending")
        return
    response = job_request(client, operation, jobs.own, headers)
    expected = (202, "pending") if operation == "poll" else (200, "cancelled")
    assert (response.status_code, response.json_body["status"]) == expected
    assert response.json_body["id"] == jobs.own


@pytest.mark.parametrize("presenting", PRESENTING)
@pytest.mark.parametrize("carrier", CARRIERS)
def test_list_shows_only_the_callers_own_jobs_and_refuses_unknown_keys(
    client: Client, aws_stack: AwsStack, keys: Keys, carrier: str, presenting: str
) -> None:
    jobs = make_jobs(client, keys, carrier)

    response = list_with(client, carry(carrier, keys.value(presenting)))

    if presenting in ("unknown", "disabled"):
        assert_gateway_error(response, 401, "invalid_virtual_key")
        return
    expected = {"same": jobs.own, "other": jobs.other, "none": jobs.keyless}[presenting]
    assert listed_ids(response) == {expected}


# ── keyless jobs, carriers in combination ──────────────────────────────────────────────


@pytest.mark.parametrize("presenting", PRESENTING)
@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_keyless_job_is_visible_to_every_caller(
    client: Client, aws_stack: AwsStack, keys: Keys, carrier: str, presenting: str
) -> None:
    job_id = submit_keyed(client, {})
    headers = carry(carrier, keys.value(presenting))

    polled = poll_with(client, job_id, headers)
    cancelled = cancel_with(client, job_id, headers)

    assert (polled.status_code, polled.json_body.get("id")) == (202, job_id)
    assert (cancelled.status_code, cancelled.json_body.get("status")) == (200, "cancelled")


@pytest.mark.parametrize(("submitted_in", "polled_in"), list(itertools.product(CARRIERS, CARRIERS)))
def test_the_own_key_reaches_its_job_through_any_carrier(
    client: Client, aws_stack: AwsStack, keys: Keys, submitted_in: str, polled_in: str
) -> None:
    job_id = submit_keyed(client, carry(submitted_in, keys.own))
    headers = carry(polled_in, keys.own)

    assert poll_with(client, job_id, headers).status_code == 202
    assert listed_ids(list_with(client, headers)) == {job_id}
    assert cancel_with(client, job_id, headers).status_code == 200


@pytest.mark.parametrize("operation", ["submit", "poll", "cancel", "list"])
@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(CARRIERS, 2)))
def test_two_different_keys_in_two_carriers_are_refused(
    client: Client, aws_stack: AwsStack, keys: Keys, first: str, second: str, operation: str
) -> None:
    job_id = submit_keyed(client, carry("x-bf-vk", keys.own)) if operation in ("poll", "cancel") else ""
    headers = {**carry(first, keys.own), **carry(second, keys.other)}

    response = any_request(client, operation, job_id, headers)

    assert_gateway_error(response, 400, "conflicting_virtual_keys")
    assert aws_stack.item_count() == (1 if job_id else 0)
    if job_id:
        assert poll_with(client, job_id, carry("x-bf-vk", keys.own)).json_body["status"] == "pending"


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(CARRIERS, 2)))
def test_the_same_key_in_two_carriers_is_one_key(
    client: Client, aws_stack: AwsStack, keys: Keys, first: str, second: str
) -> None:
    job_id = submit_keyed(client, {**carry(first, keys.own), **carry(second, keys.own)})

    assert stored_caller(aws_stack, job_id) == keys.own_id


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer sk-proj-a-provider-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"x-api-key": "sk-ant-a-provider-key"},
        {"x-goog-api-key": "AIzaSyA-a-provider-key"},
    ],
    ids=["bearer-provider-key", "basic-auth", "x-api-key-provider-key", "x-goog-api-key-provider-key"],
)
def test_a_value_that_is_not_a_virtual_key_leaves_the_caller_keyless(
    client: Client, aws_stack: AwsStack, keys: Keys, headers: dict[str, str]
) -> None:
    keyed = submit_keyed(client, carry("x-bf-vk", keys.own))

    submitted = submit_keyed(client, headers)

    assert stored_caller(aws_stack, submitted) == ANONYMOUS
    assert poll_with(client, submitted, {}).status_code == 202
    assert listed_ids(list_with(client, headers)) == {submitted}
    assert_same_as_unknown_id(client, "poll", keyed, headers)


# ── keys over time, and the routes around jobs ───────────────────────────────────────────


def test_a_disabled_key_no_longer_reaches_the_jobs_it_made(client: Client, aws_stack: AwsStack, keys: Keys) -> None:
    job_id = submit_keyed(client, {"x-bf-vk": keys.own})
    key_admin(aws_stack).disable(keys.own_id)

    assert_same_as_unknown_id(client, "poll", job_id, {"x-bf-vk": keys.own})
    assert_gateway_error(list_with(client, {"x-bf-vk": keys.own}), 401, "invalid_virtual_key")
    assert_gateway_error(submit_with(client, {"x-bf-vk": keys.own}), 400, "invalid_virtual_key")


def test_an_idempotency_key_replays_only_for_the_caller_that_used_it(
    client: Client, aws_stack: AwsStack, keys: Keys
) -> None:
    first = submit_keyed(client, {"x-bf-vk": keys.own, "Idempotency-Key": "order-1"})

    replayed = submit_keyed(client, {"x-bf-vk": keys.own, "Idempotency-Key": "order-1"})
    others = submit_keyed(client, {"x-bf-vk": keys.other, "Idempotency-Key": "order-1"})
    keyless = submit_keyed(client, {"Idempotency-Key": "order-1"})

    assert replayed == first
    assert len({first, others, keyless}) == 3
    assert stored_caller(aws_stack, others) == keys.other_id


def test_a_list_cursor_never_leads_into_another_callers_jobs(client: Client, aws_stack: AwsStack, keys: Keys) -> None:
    own_jobs = {submit_keyed(client, {"x-bf-vk": keys.own}) for _ in range(3)}
    other_job = submit_keyed(client, {"x-bf-vk": keys.other})
    first_page = list_with(client, {"x-bf-vk": keys.own}, "limit=1").json_body
    assert first_page["next_cursor"] is not None

    for headers in ({"x-bf-vk": keys.other}, {}):
        continued = listed_ids(list_with(client, headers, f"limit=10&cursor={first_page['next_cursor']}"))
        assert continued.isdisjoint(own_jobs)
    assert listed_ids(list_with(client, {"x-bf-vk": keys.other})) == {other_job}


# ── a deployment that requires a key ──────────────────────────────────────────────────


@pytest.fixture
def key_required(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Keys:
    monkeypatch.setenv("ASYNCGATE_REQUIRE_VIRTUAL_KEY", "true")
    monkeypatch.setenv("ASYNCGATE_ADMIN_TOKEN", "admin-token-for-required-keys")
    return keys


@pytest.mark.parametrize("presented", ["nothing", "provider-bearer"])
@pytest.mark.parametrize("operation", ["submit", "poll", "cancel", "list"])
def test_a_deployment_requiring_keys_refuses_job_routes_without_one(
    client: Client, aws_stack: AwsStack, key_required: Keys, operation: str, presented: str
) -> None:
    job_id = submit_keyed(client, {"x-bf-vk": key_required.own})
    headers = {} if presented == "nothing" else {"Authorization": "Bearer sk-proj-a-provider-key"}

    response = any_request(client, operation, job_id, headers)

    assert_gateway_error(response, 401, "virtual_key_required")
    assert aws_stack.item_count() == 1
    assert poll_with(client, job_id, {"x-bf-vk": key_required.own}).json_body["status"] == "pending"


def test_a_deployment_requiring_keys_refuses_file_uploads_without_one(
    client: Client, aws_stack: AwsStack, key_required: Keys
) -> None:
    response = client.http.post(
        "/anthropic/v1/files",
        headers={"Content-Type": "multipart/form-data; boundary=x", "x-model-provider": "anthropic"},
        body=b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello\r\n--x--\r\n',
    )

    assert response.status_code == 401
    assert response.json_body["type"] == "error"
    assert response.json_body["error"]["type"] == "authentication_error"


def test_a_deployment_requiring_keys_still_serves_health_openapi_and_keyed_callers(
    client: Client, aws_stack: AwsStack, key_required: Keys
) -> None:
    assert client.http.get("/health").status_code == 200
    assert client.http.get("/openapi.json").status_code == 200
    admin = client.http.get("/api/keys", headers={"Authorization": "Bearer admin-token-for-required-keys"})
    assert admin.status_code == 200
    for carrier in CARRIERS:
        job_id = submit_keyed(client, carry(carrier, key_required.own))
        assert poll_with(client, job_id, carry(carrier, key_required.own)).status_code == 202
    assert_gateway_error(submit_with(client, {"x-bf-vk": key_required.unknown}), 400, "invalid_virtual_key")
