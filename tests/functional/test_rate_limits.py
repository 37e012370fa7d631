"""Per-key rate limits (issue 5, item 5): N requests a minute, then 429 with ``Retry-After``.

The counter lives in the keys table, so it holds across Lambda containers (here: the wiring
rebuilt between requests). HTTP tests run on the wall clock's minute; a scenario that
straddled a minute boundary (its counter reset half-way) is run once more, never slept
through. The turn of the minute itself is tested with a fake clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from chalice.test import Client, HTTPResponse

from chalicelib import aws, wiring
from chalicelib.config import Settings
from chalicelib.contract import RequestType
from chalicelib.errors import GatewayError
from chalicelib.key_admin import KeyAdmin
from chalicelib.key_store import DynamoKeyStore
from chalicelib.keys import Callers
from chalicelib.payloads import Payloads
from chalicelib.rate_limit import RateLimiter
from chalicelib.service import JobService
from chalicelib.submission import Submission
from tests.fakes import (
    AllProviders,
    FakeClock,
    InMemoryBlobStore,
    InMemoryJobQueue,
    InMemoryJobStore,
    InMemoryKeyStore,
    open_access,
)
from tests.functional.keyed import Request, create_key, key_items, submit_keyed
from tests.functional.payloads import CHAT, assert_gateway_error
from tests.support.aws import AwsStack

CHAT_BODY = json.dumps(CHAT.body).encode()


def in_one_minute(scenario: Callable[[], None]) -> None:
    """Run ``scenario``; if it failed while the wall-clock minute turned, run it once more."""
    for attempt in range(2):
        minute = int(time.time()) // 60
        try:
            scenario()
            return
        except AssertionError:
            if attempt == 1 or int(time.time()) // 60 == minute:
                raise


def assert_rate_limited(response: HTTPResponse) -> None:
    error = assert_gateway_error(response, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


@pytest.fixture
def limited(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> AwsStack:
    monkeypatch.setenv("ASYNCGATE_KEY_CACHE_SECONDS", "0")
    return aws_stack


def test_a_key_gets_its_limit_across_submit_poll_and_list_then_429(client: Client, limited: AwsStack) -> None:
    def scenario() -> None:
        headers = {"x-bf-vk": create_key(limited, "four-a-minute", 4).value}
        jobs_before = limited.item_count()
        job_id = submit_keyed(client, headers)
        admitted = [Request(op, job_id).send(client, headers) for op in ("poll", "list", "submit")]
        assert [r.status_code for r in admitted] == [202, 200, 202]

        for operation in ("submit", "poll", "list", "cancel", "submit"):
            assert_rate_limited(Request(operation, job_id).send(client, headers))

        assert limited.item_count() == jobs_before + 2
        item = limited.item(job_id)
        assert item is not None and item["status"]["S"] == "pending"

    in_one_minute(scenario)


def test_a_rate_limited_submit_stores_and_queues_nothing(client: Client, limited: AwsStack) -> None:
    def scenario() -> None:
        headers = {"Authorization": f"Bearer {create_key(limited, 'one-a-minute', 1).value}"}
        submit_keyed(client, headers)
        jobs, messages = limited.item_count(), limited.queued_messages()

        assert_rate_limited(Request("submit").send(client, headers))

        assert (limited.item_count(), limited.queued_messages()) == (jobs, messages)

    in_one_minute(scenario)


def test_the_limit_holds_across_containers(client: Client, limited: AwsStack) -> None:
    def scenario() -> None:
        key = create_key(limited, "three-a-minute", 3)
        headers = {"x-api-key": key.value}
        answers: list[int] = []
        for _ in range(4):
            wiring.reset()  # a new container: new clients, new key cache, new limiter
            answers.append(Request("list").send(client, headers).status_code)

        assert answers == [200, 200, 200, 429]
        counters = [i for i in key_items(limited, "rate#") if i["pk"]["S"].startswith(f"rate#{key.key.id}#")]
        assert [int(i["hits"]["N"]) for i in counters] == [3]

    in_one_minute(scenario)


def test_each_key_has_its_own_counter(client: Client, limited: AwsStack) -> None:
    def scenario() -> None:
        first, second = (create_key(limited, name, 1).value for name in ("first", "second"))
        assert Request("list").send(client, {"x-bf-vk": first}).status_code == 200
        assert_rate_limited(Request("list").send(client, {"x-bf-vk": first}))

        assert Request("list").send(client, {"x-bf-vk": second}).status_code == 200
        assert Request("list").send(client, {}).status_code == 200

    in_one_minute(scenario)


def test_keys_without_a_limit_and_keyless_callers_are_never_limited_and_cost_no_counter(
    client: Client, limited: AwsStack
) -> None:
    unlimited = {"x-goog-api-key": create_key(limited, "unlimited").value}
    job_id = submit_keyed(client, unlimited)
    keyless_job = submit_keyed(client, {})

    statuses = {
        Request(operation, job).send(client, headers).status_code
        for _ in range(10)
        for headers, job in ((unlimited, job_id), ({}, keyless_job))
        for operation in ("submit", "poll", "list")
    }

    assert statuses == {200, 202}
    assert key_items(limited, "rate#") == []


# ── the turn of the minute, on a fake clock ────────────────────────────────────────────


def make_service(clock: FakeClock, keys: InMemoryKeyStore) -> tuple[JobService, InMemoryJobStore, InMemoryJobQueue]:
    settings = Settings()
    store, queue = InMemoryJobStore(), InMemoryJobQueue()
    payloads = Payloads(InMemoryBlobStore(), settings)
    service = JobService(store, queue, payloads, open_access(clock, keys), AllProviders("mock"), settings, clock)
    return service, store, queue


def refusal(call: Callable[[], object]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call()
    return caught.value


def test_a_new_minute_gives_the_key_its_full_limit_again() -> None:
    clock, keys = FakeClock(start=1_795_600_020.0), InMemoryKeyStore()  # 0 s into a minute
    value = KeyAdmin(keys, clock).create("two-a-minute", 2).value
    service, store, queue = make_service(clock, keys)

    def submit() -> object:
        return service.submit(Submission(RequestType.CHAT_COMPLETION, CHAT_BODY, "application/json", key=value))

    submit()
    clock.advance(30)
    submit()
    clock.advance(29.5)
    refused = refusal(submit)
    assert (refused.status, refused.code, refused.retry_after_s) == (429, "rate_limit_exceeded", 1)
    assert (len(store.items), len(queue.sent)) == (2, 2)

    clock.advance(0.5)  # the next minute begins
    submit()
    submit()
    assert refusal(submit).retry_after_s == 60
    assert (len(store.items), len(queue.sent)) == (4, 4)


def test_the_dynamodb_counter_opens_a_window_per_minute_that_expires_after_it(aws_stack: AwsStack) -> None:
    clock = FakeClock(start=1_795_600_070.0)  # 10 s before a minute ends
    store = DynamoKeyStore(aws.client("dynamodb"), aws_stack.settings.keys_table)
    made = KeyAdmin(store, clock).create("two-a-minute", 2)
    callers, limiter = Callers(store, require_key=False), RateLimiter(store, clock)

    def admit() -> None:
        limiter.admit(callers.for_reading(made.value))

    admit()
    admit()
    assert refusal(admit).retry_after_s == 10
    clock.advance(10)
    admit()
    admit()
    assert refusal(admit).retry_after_s == 60

    counters = {int(i["pk"]["S"].rsplit("#", 1)[1]): i for i in key_items(aws_stack, "rate#")}
    assert sorted(counters) == [1_795_600_020, 1_795_600_080]
    for window, item in counters.items():
        assert int(item["hits"]["N"]) == 2
        assert int(item["ttl"]["N"]) > window + 60  # collected by DynamoDB TTL after its minute
