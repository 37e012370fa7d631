"""asyncgate: Chalice routes, the SQS worker and the dead-letter consumer. Thin handlers only."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from chalice.app import Chalice, Request, Response, SQSEvent

from chalicelib import web, wiring
from chalicelib.contract import ENDPOINTS, Endpoint
from chalicelib.errors import GatewayError, InternalError
from chalicelib.files import anthropic_error_body
from chalicelib.infra import dlq_name
from chalicelib.jobs import poll_interval_s, render_job, render_submitted
from chalicelib.key_admin import key_view
from chalicelib.keys import presented_key
from chalicelib.listing import list_query, render_page
from chalicelib.openapi import openapi_document
from chalicelib.submission import Submission
from chalicelib.worker import deliveries_from_records

app = Chalice(app_name="asyncgate")
app.api.binary_types.append("multipart/form-data")
app.log.setLevel(logging.INFO)
logging.getLogger("chalicelib").setLevel(logging.INFO)

# The queues the event sources read, by name, as `chalice deploy` wires them (Chalice loads this
# module with the stage's environment). The packaged template points them at its own queues.
JOBS_QUEUE = (os.environ.get("ASYNCGATE_JOBS_QUEUE") or "asyncgate-jobs").rsplit("/", 1)[-1]
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
ANY_CONTENT = ["*/*"]


def _request() -> Request:
    request = app.current_request
    assert request is not None, "only called while serving a request"
    return request


def _raw_body(request: Request) -> bytes:
    raw = request.raw_body
    return raw.encode() if isinstance(raw, str) else raw


def _key() -> str | None:
    return presented_key(_request().headers)


# the async job API (contract §2, §3, §6) -------------------------------------------------
def _submit(endpoint: Endpoint) -> Response:
    request = _request()
    submission = Submission(
        endpoint.request_type,
        _raw_body(request),
        request.headers.get("content-type"),
        request.headers.get("x-bf-async-job-result-ttl"),
        request.headers.get("idempotency-key"),
        _key(),
    )
    job = wiring.container().service.submit(submission)
    headers = {"Location": endpoint.job_path(job.id), "Retry-After": "1"}
    return web.json_text(202, render_submitted(job), headers)


def _poll(endpoint: Endpoint, job_id: str) -> Response:
    services = wiring.container()
    caller = services.access.reading(_key())
    polled = services.service.poll(endpoint.request_type, job_id, caller.scope)
    if polled.job.status.is_terminal:
        return web.json_text(200, polled.body)
    retry_after = poll_interval_s(polled.job, int(services.clock.now() * 1000))
    return web.json_text(202, polled.body, {"Retry-After": str(retry_after)})


def _cancel(endpoint: Endpoint, job_id: str) -> Response:
    services = wiring.container()
    caller = services.access.reading(_key())
    outcome = services.service.cancel(endpoint.request_type, job_id, caller.scope)
    if outcome.cancelled:
        return web.json_text(200, render_job(outcome.job))
    return web.json_text(202, render_job(outcome.job), {"Retry-After": "1"})


def _list() -> Response:
    services = wiring.container()
    caller = services.access.listing(_key())
    where, limit, cursor = list_query(_request().query_params or {}, caller.scope)
    return web.json_body(200, render_page(services.service.list_jobs(where, limit, cursor)))


def _register(path: str, served: dict[str, Callable[..., Response]], name: str) -> None:
    """Serve ``served`` methods on ``path``; every other method answers 405 with the §4 body."""
    for method, view in served.items():
        app.route(path, methods=[method], content_types=ANY_CONTENT, name=f"{name}_{method.lower()}")(view)
    allowed = list(served)

    def refuse(**_: Any) -> Response:
        return web.method_not_allowed(_request().method, allowed)

    others = [m for m in ALL_METHODS if m not in served]
    app.route(path, methods=others, content_types=ANY_CONTENT, name=f"{name}_refuse")(refuse)


def _routes_for(endpoint: Endpoint) -> None:
    request_type = endpoint.request_type
    name = request_type.value

    def submit() -> Response:
        return web.guarded(lambda: _submit(endpoint), request_type)

    def poll(job_id: str) -> Response:
        return web.guarded(lambda: _poll(endpoint, job_id), request_type)

    def cancel(job_id: str) -> Response:
        return web.guarded(lambda: _cancel(endpoint, job_id), request_type)

    _register(endpoint.submit_path, {"POST": submit}, f"submit_{name}")
    _register(endpoint.submit_path + "/{job_id}", {"GET": poll, "DELETE": cancel}, f"job_{name}")


for _endpoint in ENDPOINTS:
    _routes_for(_endpoint)


def list_jobs() -> Response:
    return web.guarded(_list)


_register("/v1/async/jobs", {"GET": list_jobs}, "list_jobs")


# the Anthropic-format file upload (contract §7) --------------------------------------------
def upload_file() -> Response:
    request = _request()
    try:
        wiring.container().access.listing(_key())
        uploaded = wiring.container().files.upload(
            request.headers.get("x-model-provider"), _raw_body(request), request.headers.get("content-type")
        )
    except GatewayError as error:
        return web.json_body(error.status, anthropic_error_body(error))
    except Exception:
        app.log.exception("file upload failed")
        return web.json_body(500, anthropic_error_body(InternalError("internal error")))
    return web.json_body(200, uploaded)


_register("/anthropic/v1/files", {"POST": upload_file}, "anthropic_files")


# admin: virtual keys, behind the admin token ------------------------------------------------
def _admin(action: Callable[[], Response]) -> Response:
    def checked() -> Response:
        wiring.container().admin_token.require(_request().headers)
        return action()

    return web.guarded(checked)


def list_keys() -> Response:
    return _admin(lambda: web.json_body(200, {"data": [key_view(k) for k in wiring.container().key_admin.all()]}))


def create_key() -> Response:
    def create() -> Response:
        body = web.json_object(_request())
        created = wiring.container().key_admin.create(body.get("name"), body.get("rate_limit_per_minute"))
        return web.json_body(201, key_view(created.key, created.value))

    return _admin(create)


def disable_key(key_id: str) -> Response:
    return _admin(lambda: web.json_body(200, key_view(wiring.container().key_admin.disable(key_id))))


_register("/api/keys", {"GET": list_keys, "POST": create_key}, "admin_keys")
_register("/api/keys/{key_id}/disable", {"POST": disable_key}, "admin_disable_key")


# service routes -----------------------------------------------------------------------------
def health() -> Response:
    return web.json_body(200, {"status": "ok"})


def openapi() -> Response:
    return web.json_text(200, openapi_document())


_register("/health", {"GET": health}, "health")
_register("/openapi.json", {"GET": openapi}, "openapi")


# SQS event sources ------------------------------------------------------------------------
def _batch_failures(message_ids: list[str]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


@app.on_sqs_message(queue=JOBS_QUEUE, batch_size=10, name="worker")
def worker(event: SQSEvent) -> dict[str, Any]:
    deliveries = deliveries_from_records([record.to_dict() for record in event])
    context: Any = event.context
    remaining = context.get_remaining_time_in_millis() if context is not None else None
    return _batch_failures(wiring.container().worker.handle_batch(deliveries, remaining))


@app.on_sqs_message(queue=dlq_name(JOBS_QUEUE), batch_size=10, name="dead_letters")
def dead_letters(event: SQSEvent) -> dict[str, Any]:
    deliveries = deliveries_from_records([record.to_dict() for record in event])
    return _batch_failures(wiring.container().dead_letters.handle_batch(deliveries))
