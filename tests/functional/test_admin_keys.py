"""The admin routes for virtual keys (``/api/keys``): the admin token, create, list, disable, bad input.

The token comes from ``ASYNCGATE_ADMIN_TOKEN`` here, or from Secrets Manager (moto) when
``ASYNCGATE_ADMIN_TOKEN_SECRET`` names a secret. Every refusal is a contract §4 body.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from chalice.test import Client, HTTPResponse

from chalicelib import aws
from chalicelib.keys import key_hash
from tests.functional.keyed import key_items, poll_with, stored_caller, submit_keyed, submit_with
from tests.functional.payloads import JSON_HEADERS, TIMESTAMP, assert_gateway_error, epoch_ms
from tests.support.aws import AwsStack

TOKEN = "admin-token-4b1d9c0e7f"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
KEY_VALUE = re.compile(r"^sk-bf-[A-Za-z0-9_-]{43,}$")
VIEW_FIELDS = {"id", "name", "created_at", "disabled_at", "rate_limit_per_minute"}
UNKNOWN_KEY_ID = "vk_00000000000000000000"


@pytest.fixture
def admin(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch, client: Client) -> Client:
    monkeypatch.setenv("ASYNCGATE_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("ASYNCGATE_KEY_CACHE_SECONDS", "0")
    return client


def create(client: Client, body: Any, headers: dict[str, str] | None = None) -> HTTPResponse:
    text = body if isinstance(body, str) else json.dumps(body)
    return client.http.post("/api/keys", headers={**JSON_HEADERS, **(ADMIN if headers is None else headers)}, body=text)


def created(client: Client, name: str = "team-a", **fields: Any) -> dict[str, Any]:
    response = create(client, {"name": name, **fields})
    assert response.status_code == 201, response.body
    body: dict[str, Any] = response.json_body
    return body


def listed(client: Client) -> list[dict[str, Any]]:
    response = client.http.get("/api/keys", headers=ADMIN)
    assert response.status_code == 200, response.body
    data: list[dict[str, Any]] = response.json_body["data"]
    return data


def disable(client: Client, key_id: str, headers: dict[str, str] | None = None) -> HTTPResponse:
    return client.http.post(f"/api/keys/{key_id}/disable", headers=ADMIN if headers is None else headers)


def admin_request(client: Client, route: str, headers: dict[str, str], key_id: str) -> HTTPResponse:
    if route == "list":
        return client.http.get("/api/keys", headers=headers)
    if route == "create":
        return create(client, {"name": "intruder"}, headers)
    return disable(client, key_id, headers)


# ── the admin token ────────────────────────────────────────────────────────────────────

WRONG_CREDENTIALS = {
    "none": {},
    "wrong-token": {"Authorization": "Bearer not-the-admin-token"},
    "token-prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "token-with-suffix": {"Authorization": f"Bearer {TOKEN}x"},
    "empty-bearer": {"Authorization": "Bearer "},
    "no-scheme": {"Authorization": TOKEN},
    "other-scheme": {"Authorization": f"Token {TOKEN}"},
    "in-x-api-key": {"x-api-key": TOKEN},
    "in-x-admin-token": {"x-admin-token": TOKEN},
    "in-x-bf-vk": {"x-bf-vk": TOKEN},
}


@pytest.mark.parametrize("route", ["list", "create", "disable"])
@pytest.mark.parametrize("credentials", WRONG_CREDENTIALS)
def test_admin_routes_refuse_a_missing_or_wrong_token_with_401(
    admin: Client, aws_stack: AwsStack, route: str, credentials: str
) -> None:
    key = created(admin, "victim")

    response = admin_request(admin, route, WRONG_CREDENTIALS[credentials], key["id"])

    assert_gateway_error(response, 401, "admin_token_required")
    assert TOKEN not in response.body.decode()
    assert [(k["name"], k["disabled_at"]) for k in listed(admin)] == [("victim", None)]


@pytest.mark.parametrize("route", ["list", "create", "disable"])
@pytest.mark.parametrize("presented", ["Bearer ", "Bearer None", "Bearer null", f"Bearer {TOKEN}"])
def test_with_no_admin_token_configured_admin_is_closed(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch, route: str, presented: str
) -> None:
    monkeypatch.delenv("ASYNCGATE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("ASYNCGATE_ADMIN_TOKEN_SECRET", raising=False)

    response = admin_request(client, route, {"Authorization": presented}, UNKNOWN_KEY_ID)

    assert_gateway_error(response, 401, "admin_token_required")
    assert key_items(aws_stack, "key#") == []


def test_an_empty_admin_token_setting_leaves_admin_closed(
    client: Client, aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCGATE_ADMIN_TOKEN", "")

    assert_gateway_error(client.http.get("/api/keys", headers={"Authorization": "Bearer "}), 401)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(admin: Client, aws_stack: AwsStack, scheme: str) -> None:
    assert admin.http.get("/api/keys", headers={"Authorization": f"{scheme} {TOKEN}"}).status_code == 200


@pytest.fixture
def secret_token(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> str:
    value = "token-from-secrets-manager-91ac"
    aws.client("secretsmanager").create_secret(Name="asyncgate/admin-token", SecretString=value)
    monkeypatch.setenv("ASYNCGATE_ADMIN_TOKEN_SECRET", "asyncgate/admin-token")
    monkeypatch.setenv("ASYNCGATE_ADMIN_TOKEN", TOKEN)  # the secret takes precedence over this
    return value


def test_the_admin_token_is_read_from_secrets_manager(client: Client, aws_stack: AwsStack, secret_token: str) -> None:
    with_secret = {"Authorization": f"Bearer {secret_token}"}

    made = create(client, {"name": "from-secret"}, with_secret)

    assert made.status_code == 201
    assert client.http.get("/api/keys", headers=with_secret).status_code == 200
    assert_gateway_error(client.http.get("/api/keys", headers=ADMIN), 401, "admin_token_required")
    assert secret_token not in made.body.decode()


# ── create, list, disable ──────────────────────────────────────────────────────────────


def test_create_answers_201_with_the_key_value_shown_once(admin: Client, aws_stack: AwsStack) -> None:
    response = create(admin, {"name": "team-a", "rate_limit_per_minute": 30})

    assert response.status_code == 201
    body = response.json_body
    assert set(body) == {*VIEW_FIELDS, "key"}
    assert KEY_VALUE.match(body["key"]), body["key"]
    assert body["id"].startswith("vk_") and body["key"] not in body["id"]
    assert (body["name"], body["disabled_at"], body["rate_limit_per_minute"]) == ("team-a", None, 30)
    assert TIMESTAMP.match(body["created_at"])


def test_every_create_makes_a_new_value_and_id_even_under_the_same_name(admin: Client, aws_stack: AwsStack) -> None:
    made = [created(admin, "same-name") for _ in range(5)]

    assert len({k["key"] for k in made}) == 5
    assert len({k["id"] for k in made}) == 5


def test_a_created_key_works_at_once_and_scopes_its_jobs(admin: Client, aws_stack: AwsStack) -> None:
    key = created(admin)

    job_id = submit_keyed(admin, {"x-bf-vk": key["key"]})

    assert stored_caller(aws_stack, job_id) == key["id"]
    assert poll_with(admin, job_id, {"x-bf-vk": key["key"]}).status_code == 202
    assert poll_with(admin, job_id, {}).status_code == 404


def test_list_shows_every_key_but_never_a_value_or_a_hash(admin: Client, aws_stack: AwsStack) -> None:
    made = [created(admin, "first"), created(admin, "second", rate_limit_per_minute=5)]

    response = admin.http.get("/api/keys", headers=ADMIN)

    assert response.status_code == 200
    assert [set(k) for k in response.json_body["data"]] == [VIEW_FIELDS, VIEW_FIELDS]
    assert [(k["id"], k["name"], k["rate_limit_per_minute"]) for k in response.json_body["data"]] == [
        (made[0]["id"], "first", None),
        (made[1]["id"], "second", 5),
    ]
    text = response.body.decode()
    for key in made:
        assert key["key"] not in text and key["key"][6:] not in text and key_hash(key["key"]) not in text


def test_the_keys_table_holds_no_key_value(admin: Client, aws_stack: AwsStack) -> None:
    made = [created(admin, "first"), created(admin, "limited", rate_limit_per_minute=2)]
    submit_keyed(admin, {"x-bf-vk": made[1]["key"]})  # writes a rate-limit counter too

    items = aws.client("dynamodb").scan(TableName=aws_stack.settings.keys_table)["Items"]

    assert len(key_items(aws_stack, "key#")) == 2 and len(items) == 3
    stored = json.dumps(items)
    for key in made:
        assert key["key"] not in stored and key["key"][6:] not in stored


def test_disable_sets_disabled_at_and_the_key_then_fails_on_submit(admin: Client, aws_stack: AwsStack) -> None:
    key = created(admin)
    assert submit_with(admin, {"x-bf-vk": key["key"]}).status_code == 202

    response = disable(admin, key["id"])

    assert response.status_code == 200
    assert set(response.json_body) == VIEW_FIELDS
    assert response.json_body["id"] == key["id"]
    assert epoch_ms(response.json_body["disabled_at"]) >= epoch_ms(key["created_at"])
    assert listed(admin)[0]["disabled_at"] == response.json_body["disabled_at"]
    refused = submit_with(admin, {"Authorization": f"Bearer {key['key']}"})
    assert_gateway_error(refused, 400, "invalid_virtual_key")
    assert aws_stack.item_count() == 1


def test_disabling_twice_keeps_the_first_disabled_at(admin: Client, aws_stack: AwsStack) -> None:
    key = created(admin)
    first = disable(admin, key["id"]).json_body

    again = disable(admin, key["id"])

    assert (again.status_code, again.json_body) == (200, first)


@pytest.mark.parametrize("key_id", [UNKNOWN_KEY_ID, "not-a-key-id", "vk_" + "f" * 200])
def test_disabling_an_unknown_key_is_404(admin: Client, aws_stack: AwsStack, key_id: str) -> None:
    created(admin)

    assert_gateway_error(disable(admin, key_id), 404, "key_not_found")
    assert listed(admin)[0]["disabled_at"] is None


# ── bad input ──────────────────────────────────────────────────────────────────────────

BAD_BODIES: dict[str, Any] = {
    "no-name": {},
    "null-name": {"name": None},
    "empty-name": {"name": ""},
    "blank-name": {"name": "   "},
    "number-name": {"name": 5},
    "list-name": {"name": ["team"]},
    "object-name": {"name": {"first": "team"}},
    "long-name": {"name": "n" * 201},
    "zero-limit": {"name": "a", "rate_limit_per_minute": 0},
    "negative-limit": {"name": "a", "rate_limit_per_minute": -5},
    "string-limit": {"name": "a", "rate_limit_per_minute": "10"},
    "float-limit": {"name": "a", "rate_limit_per_minute": 1.5},
    "bool-limit": {"name": "a", "rate_limit_per_minute": True},
    "list-limit": {"name": "a", "rate_limit_per_minute": [10]},
    "not-json": "name=team-a",
    "truncated-json": '{"name": "team-a"',
    "json-array": '[{"name": "team-a"}]',
    "json-string": '"team-a"',
    "empty": "",
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_a_bad_create_body_is_400_and_creates_nothing(admin: Client, aws_stack: AwsStack, case: str) -> None:
    response = create(admin, BAD_BODIES[case])

    assert_gateway_error(response, 400)
    assert key_items(aws_stack, "key#") == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_create_body_that_is_not_declared_json_is_400(
    admin: Client, aws_stack: AwsStack, content_type: str | None
) -> None:
    headers = {**ADMIN, **({"Content-Type": content_type} if content_type else {})}

    response = admin.http.post("/api/keys", headers=headers, body='{"name": "team-a"}')

    assert_gateway_error(response, 400, "invalid_content_type")
    assert key_items(aws_stack, "key#") == []


def test_a_name_of_200_characters_is_accepted_and_trimmed_names_are_kept_trimmed(
    admin: Client, aws_stack: AwsStack
) -> None:
    assert created(admin, "n" * 200)["name"] == "n" * 200
    assert created(admin, "  padded  ")["name"] == "padded"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/keys"),
        ("DELETE", "/api/keys"),
        ("PATCH", "/api/keys"),
        ("GET", f"/api/keys/{UNKNOWN_KEY_ID}/disable"),
        ("DELETE", f"/api/keys/{UNKNOWN_KEY_ID}/disable"),
        ("PUT", f"/api/keys/{UNKNOWN_KEY_ID}/disable"),
    ],
)
def test_wrong_methods_on_admin_routes_are_405(admin: Client, aws_stack: AwsStack, method: str, path: str) -> None:
    response = admin.http.request(method, path, headers=ADMIN)

    assert_gateway_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
