"""Virtual keys without AWS: carriers, values and hashes, caller rules, key admin, admin token, rate windows."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping

import pytest
from chalice.app import CaseInsensitiveMapping

from chalicelib.errors import GatewayError
from chalicelib.jobs import ANONYMOUS
from chalicelib.key_admin import AdminToken, KeyAdmin, key_view
from chalicelib.keys import Callers, VirtualKey, key_hash, key_id_for, new_key_value, presented_key
from chalicelib.rate_limit import RateLimiter
from chalicelib.web import error_response
from tests.fakes import FakeClock, InMemoryKeyStore

KEY = "sk-bf-" + "A" * 43
OTHER = "sk-bf-" + "B" * 43


def headers(**values: str) -> CaseInsensitiveMapping:
    """Headers as Chalice hands them to a route (names case-insensitive); ``_`` stands for ``-``."""
    return CaseInsensitiveMapping({name.replace("_", "-"): value for name, value in values.items()})


def error_of(call: Callable[[], object]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call()
    return caught.value


# ── carriers ───────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "carried",
    [
        {"x-bf-vk": KEY},
        {"X-BF-VK": KEY},
        {"Authorization": f"Bearer {KEY}"},
        {"authorization": f"bearer {KEY}"},
        {"AUTHORIZATION": f"BEARER {KEY}"},
        {"Authorization": f"BeArEr    {KEY}  "},
        {"X-Api-Key": KEY},
        {"x-goog-api-key": KEY},
        {"X-Goog-Api-Key": f"  {KEY}\t"},
        {"x-bf-vk": f" {KEY} "},
    ],
)
def test_every_carrier_presents_the_key_whatever_the_header_casing_or_padding(carried: dict[str, str]) -> None:
    assert presented_key(CaseInsensitiveMapping(carried)) == KEY


@pytest.mark.parametrize(
    "carried",
    [
        {},
        {"x-bf-vk": ""},
        {"x-bf-vk": "   "},
        {"Authorization": "Bearer sk-proj-provider-key"},
        {"Authorization": "Basic c2stYmYtYWJj"},
        {"Authorization": KEY},
        {"Authorization": f"Token {KEY}"},
        {"Authorization": "Bearer"},
        {"x-api-key": "sk-ant-api03-provider-key"},
        {"x-goog-api-key": "AIzaSy-provider-key"},
        {"x-api-key": "SK-BF-" + "A" * 43},
        {"x-custom-key": KEY},
    ],
)
def test_values_that_are_not_virtual_keys_outside_x_bf_vk_present_no_key(carried: dict[str, str]) -> None:
    assert presented_key(CaseInsensitiveMapping(carried)) is None


def test_x_bf_vk_presents_whatever_it_carries_so_a_non_key_value_is_an_unknown_key() -> None:
    assert presented_key(headers(x_bf_vk="not-a-virtual-key")) == "not-a-virtual-key"
    assert error_of(lambda: Callers(InMemoryKeyStore(), False).for_submit("not-a-virtual-key")).status == 400


def test_provider_keys_beside_a_virtual_key_are_ignored() -> None:
    carried = headers(x_api_key="sk-ant-provider", authorization="Bearer sk-proj-provider", x_goog_api_key=KEY)

    assert presented_key(carried) == KEY


def test_the_same_key_in_every_carrier_is_one_key() -> None:
    carried = headers(x_bf_vk=KEY, authorization=f"Bearer {KEY}", x_api_key=KEY, x_goog_api_key=f" {KEY}")

    assert presented_key(carried) == KEY


@pytest.mark.parametrize(
    "carried",
    [
        {"x-bf-vk": KEY, "Authorization": f"Bearer {OTHER}"},
        {"x-api-key": KEY, "x-goog-api-key": OTHER},
        {"Authorization": f"Bearer {KEY}", "x-api-key": OTHER},
        {"x-bf-vk": "not-a-key", "x-api-key": KEY},
    ],
)
def test_two_different_keys_are_a_400(carried: dict[str, str]) -> None:
    error = error_of(lambda: presented_key(CaseInsensitiveMapping(carried)))

    assert (error.status, error.code) == (400, "conflicting_virtual_keys")
    assert KEY not in error.message and OTHER not in error.message


# ── values, hashes, ids ────────────────────────────────────────────────────────────────


def test_key_values_are_sk_bf_and_256_random_bits_in_url_safe_base64() -> None:
    values = [new_key_value() for _ in range(2000)]

    assert len(set(values)) == len(values)
    for value in values[:50]:
        assert re.fullmatch(r"sk-bf-[A-Za-z0-9_-]{43}", value), value
        assert len(base64.urlsafe_b64decode(value[6:] + "=")) == 32
    alphabet = {char for value in values for char in value[6:]}
    assert len(alphabet) == 64  # every symbol turns up: nothing narrows the alphabet


def test_key_hash_is_the_sha256_of_the_value_and_stable() -> None:
    assert key_hash(KEY) == hashlib.sha256(KEY.encode()).hexdigest()
    assert key_hash(KEY) == key_hash(KEY) != key_hash(OTHER)
    assert re.fullmatch(r"[0-9a-f]{64}", key_hash(KEY))


def test_key_id_is_stable_derived_from_the_hash_and_reveals_neither() -> None:
    hashed = key_hash("sk-bf-example")

    assert key_id_for(hashed) == "vk_" + hashlib.sha256(f"id:{hashed}".encode()).hexdigest()[:20]
    assert key_id_for(hashed) == key_id_for(key_hash("sk-bf-example")) != key_id_for(key_hash(KEY))
    assert re.fullmatch(r"vk_[0-9a-f]{20}", key_id_for(hashed))
    assert key_id_for(hashed)[3:] not in hashed


# ── callers ────────────────────────────────────────────────────────────────────────────


@pytest.fixture
def keys() -> InMemoryKeyStore:
    store = InMemoryKeyStore()
    admin = KeyAdmin(store, FakeClock())
    admin.create("valid", value=KEY)
    admin.disable(admin.create("disabled", value=OTHER).key.id)
    return store


def test_a_valid_key_is_its_own_scope_for_every_operation(keys: InMemoryKeyStore) -> None:
    callers = Callers(keys, require_key=False)
    expected = key_id_for(key_hash(KEY))

    for resolve in (callers.for_submit, callers.for_reading, callers.for_listing):
        caller = resolve(KEY)
        assert caller.scope == expected
        assert caller.key is not None and caller.key.name == "valid"


def test_no_key_is_the_anonymous_scope_unless_a_key_is_required(keys: InMemoryKeyStore) -> None:
    open_callers, strict = Callers(keys, require_key=False), Callers(keys, require_key=True)

    for resolve in (open_callers.for_submit, open_callers.for_reading, open_callers.for_listing):
        assert (resolve(None).scope, resolve(None).key) == (ANONYMOUS, None)
    for resolve in (strict.for_submit, strict.for_reading, strict.for_listing):
        with pytest.raises(GatewayError) as caught:
            resolve(None)
        assert (caught.value.status, caught.value.code) == (401, "virtual_key_required")
    assert strict.for_submit(KEY).scope == key_id_for(key_hash(KEY))


@pytest.mark.parametrize("value", ["sk-bf-unknown", OTHER, "not-a-key", "sk-bf-"])
@pytest.mark.parametrize("require_key", [False, True])
def test_unknown_or_disabled_keys_are_400_on_submit_401_on_list_and_see_nothing_on_read(
    keys: InMemoryKeyStore, value: str, require_key: bool
) -> None:
    callers = Callers(keys, require_key)

    submit = error_of(lambda: callers.for_submit(value))
    listing = error_of(lambda: callers.for_listing(value))
    reading = callers.for_reading(value)

    assert (submit.status, submit.code) == (400, "invalid_virtual_key")
    assert (listing.status, listing.code) == (401, "invalid_virtual_key")
    assert reading.key is None
    assert reading.scope not in (ANONYMOUS, key_id_for(key_hash(value)))
    assert not reading.scope.startswith("vk_")


# ── key admin ──────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("name", "limit", "param"),
    [
        (None, None, "name"),
        ("", None, "name"),
        (" \t", None, "name"),
        (7, None, "name"),
        ("n" * 201, None, "name"),
        ("ok", 0, "rate_limit_per_minute"),
        ("ok", -1, "rate_limit_per_minute"),
        ("ok", True, "rate_limit_per_minute"),
        ("ok", 2.0, "rate_limit_per_minute"),
        ("ok", "5", "rate_limit_per_minute"),
    ],
)
def test_key_admin_refuses_bad_names_and_limits(name: object, limit: object, param: str) -> None:
    store = InMemoryKeyStore()

    error = error_of(lambda: KeyAdmin(store, FakeClock()).create(name, limit))

    assert (error.status, error.param) == (400, param)
    assert store.keys == {}


def test_key_admin_creates_disables_once_and_lists_without_values() -> None:
    clock, store = FakeClock(), InMemoryKeyStore()
    admin = KeyAdmin(store, clock)
    made = admin.create("  team  ", 10)
    clock.advance(5)

    disabled = admin.disable(made.key.id)
    clock.advance(5)
    again = admin.disable(made.key.id)

    assert (made.key.name, made.key.rate_limit_per_minute, made.key.created_at_ms) == ("team", 10, 1_795_600_000_000)
    assert disabled.disabled_at_ms == again.disabled_at_ms == 1_795_600_005_000
    assert list(store.keys) == [key_hash(made.value)]
    assert "key" not in key_view(again) and key_view(made.key, made.value)["key"] == made.value
    assert key_view(again)["disabled_at"] == "2026-11-25T09:46:45.000Z"


def test_key_admin_refuses_an_existing_value_and_an_unknown_id() -> None:
    admin = KeyAdmin(InMemoryKeyStore(), FakeClock())
    admin.create("first", value=KEY)

    duplicate = error_of(lambda: admin.create("again", value=KEY))
    unknown = error_of(lambda: admin.disable("vk_00000000000000000000"))

    assert (duplicate.status, duplicate.code) == (400, "key_exists")
    assert (unknown.status, unknown.code) == (404, "key_not_found")


# ── the admin token ────────────────────────────────────────────────────────────────────

TOKEN = "admin-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    "presented",
    [
        {},
        {"authorization": ""},
        {"authorization": "Bearer "},
        {"authorization": "Bearer admin-9f8e7d6c5b4"},
        {"authorization": "Bearer admin-9f8e7d6c5b4ax"},
        {"authorization": "Bearer ADMIN-9F8E7D6C5B4A"},
        {"authorization": "Bearer admin-9f8e7d6c5b4b"},
        {"authorization": "Bearer adm\u00efn-9f8e7d6c5b4a"},
        {"authorization": TOKEN},
        {"authorization": f"Basic {TOKEN}"},
        {"x-api-key": TOKEN},
        {"x-admin-token": TOKEN},
    ],
)
def test_the_admin_token_refuses_anything_but_the_exact_token_as_bearer(presented: Mapping[str, str]) -> None:
    error = error_of(lambda: AdminToken(lambda: TOKEN).require(CaseInsensitiveMapping(dict(presented))))

    assert (error.status, error.code) == (401, "admin_token_required")
    assert TOKEN not in error.message


@pytest.mark.parametrize("presented", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "])
def test_the_admin_token_admits_the_token_as_bearer(presented: str) -> None:
    AdminToken(lambda: TOKEN).require(headers(Authorization=presented))


@pytest.mark.parametrize("configured", [None, ""])
@pytest.mark.parametrize("presented", ["Bearer ", "Bearer None", "Bearer  ", f"Bearer {TOKEN}"])
def test_with_no_token_configured_admin_is_closed(configured: str | None, presented: str) -> None:
    error = error_of(lambda: AdminToken(lambda: configured).require(headers(authorization=presented)))

    assert error.status == 401


def test_the_admin_token_is_loaded_once_and_only_when_first_needed() -> None:
    loads: list[str] = []

    def load() -> str:
        loads.append("loaded")
        return TOKEN

    token = AdminToken(load)
    assert loads == []
    for _ in range(3):
        token.require(headers(authorization=f"Bearer {TOKEN}"))
    error_of(lambda: token.require(headers()))
    assert loads == ["loaded"]


# ── rate-limit windows ─────────────────────────────────────────────────────────────────


def limited_key(limit: int | None, name: str = "limited") -> tuple[Callers, InMemoryKeyStore, str]:
    store = InMemoryKeyStore()
    value = KeyAdmin(store, FakeClock()).create(name, limit).value
    return Callers(store, False), store, value


def test_a_limited_key_gets_its_requests_per_clock_minute() -> None:
    callers, store, value = limited_key(3)
    clock = FakeClock(start=1_795_600_020.0)  # the first second of a minute
    limiter = RateLimiter(store, clock)
    caller = callers.for_reading(value)

    for _ in range(3):
        limiter.admit(caller)
        clock.advance(15)
    refused = error_of(lambda: limiter.admit(caller))  # 45 s into the minute
    clock.advance(15)  # the next minute
    limiter.admit(caller)

    assert (refused.status, refused.code, refused.retry_after_s) == (429, "rate_limit_exceeded", 15)
    assert sorted(store.hits.values()) == [1, 3]


@pytest.mark.parametrize(("offset", "retry_after"), [(0.0, 60), (0.9, 60), (30.0, 30), (58.5, 2), (59.99, 1)])
def test_retry_after_is_the_seconds_left_in_the_minute_between_1_and_60(offset: float, retry_after: int) -> None:
    callers, store, value = limited_key(1)
    limiter = RateLimiter(store, FakeClock(start=1_795_600_020.0 + offset))
    caller = callers.for_reading(value)
    limiter.admit(caller)

    refused = error_of(lambda: limiter.admit(caller))

    assert refused.retry_after_s == retry_after
    response = error_response(refused)
    assert (response.status_code, response.headers["Retry-After"]) == (429, str(retry_after))


def test_unlimited_keys_and_keyless_callers_are_never_counted() -> None:
    callers, store, value = limited_key(None)
    limiter = RateLimiter(store, FakeClock())

    for _ in range(1000):
        limiter.admit(callers.for_reading(value))
        limiter.admit(callers.for_reading(None))

    assert store.hits == {}


def test_each_key_counts_on_its_own() -> None:
    store, clock = InMemoryKeyStore(), FakeClock()
    admin = KeyAdmin(store, clock)
    first, second = admin.create("first", 1).value, admin.create("second", 1).value
    callers, limiter = Callers(store, False), RateLimiter(store, clock)

    limiter.admit(callers.for_reading(first))
    error_of(lambda: limiter.admit(callers.for_reading(first)))
    limiter.admit(callers.for_reading(second))


def test_a_virtual_key_record_is_active_until_disabled() -> None:
    assert VirtualKey("vk_1", "a", 0).active
    assert not VirtualKey("vk_1", "a", 0, disabled_at_ms=1).active
