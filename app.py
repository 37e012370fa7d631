"""asyncgate: Chalice routes and the SQS worker. Thin handlers only; logic lives in chalicelib."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from chalice.app import Chalice, Request, Response, SQSEvent

from chalicelib import web, wiring
from chalicelib.contract import ENDPOINTS, Endpoint
from chalicelib.errors import GatewayError, InternalError
from chalicelib.files import anthropic_error_body
from chalicelib.jobs import poll_interval_s, render_job, render_submitted
from chalicelib.listing import list_query, render_page
from chalicelib.submission import Submission
from chalicelib.worker import deliveries_from_records

app = Chalice(app_name="asyncgate")
app.api.binary_types.append("multipart/form-data")
app.log.setLevel(logging.INFO)
logging.getLogger("chalicelib").setLevel(logging.INFO)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
ANY_CONTENT = ["*/*"]


def _request() -> Request:
    request = app.current_request
    assert request is not None, "only called while serving a request"
    return request


def _raw_body(request: Request) -> bytes:
    raw = request.raw_body
    return raw.encode() if isinstance(raw, str) else raw


def _submit(endpoint: Endpoint) -> Response:
    request = _request()
    submission = Submission(
        endpoint.request_type,
        _raw_body(request),
        request.headers.get("content-type"),
        request.headers.get("x-bf-async-job-result-ttl"),
        request.headers.get("idempotency-key"),
    )
    job = wiring.container().service.submit(submission)
    headers = {"Location": endpoint.job_path(job.id), "Retry-After": "1"}
    return web.json_text(202, render_submitted(job), headers)


def _poll(endpoint: Endpoint, job_id: str) -> Response:
    services = wiring.container()
    polled = services.service.poll(endpoint.request_type, job_id)
    if polled.job.status.is_terminal:
        return web.json_text(200, polled.body)
    retry_after = poll_interval_s(polled.job, int(services.clock.now() * 1000))
    return web.json_text(202, polled.body, {"Retry-After": str(retry_after)})


def _cancel(endpoint: Endpoint, job_id: str) -> Response:
    outcome = wiring.container().service.cancel(endpoint.request_type, job_id)
    if outcome.cancelled:
        return web.json_text(200, render_job(outcome.job))
    return web.json_text(202, render_job(outcome.job), {"Retry-After": "1"})


def _list() -> Response:
    where, limit, cursor = list_query(_request().query_params or {})
    page = wiring.container().service.list_jobs(where, limit, cursor)
    return web.json_body(200, render_page(page))


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


def health() -> Response:
    return web.json_body(200, {"status": "ok"})


def upload_file() -> Response:
    request = _request()
    try:
        uploaded = wiring.container().files.upload(
            request.headers.get("x-model-provider"), _raw_body(request), request.headers.get("content-type")
        )
    except GatewayError as error:
        return web.json_body(error.status, anthropic_error_body(error))
    except Exception:
        app.log.exception("file upload failed")
        return web.json_body(500, anthropic_error_body(InternalError("internal error")))
    return web.json_body(200, uploaded)


_register("/health", {"GET": health}, "health")
_register("/anthropic/v1/files", {"POST": upload_file}, "anthropic_files")


def _batch_failures(message_ids: list[str]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in message_ids]}


@app.on_sqs_message(queue="asyncgate-jobs", batch_size=10, name="worker")
def worker(event: SQSEvent) -> dict[str, Any]:
    deliveries = deliveries_from_records([record.to_dict() for record in event])
    context: Any = event.context
    remaining = context.get_remaining_time_in_millis() if context is not None else None
    return _batch_failures(wiring.container().worker.handle_batch(deliveries, remaining))


@app.on_sqs_message(queue="asyncgate-jobs-dlq", batch_size=10, name="dead_letters")
def dead_letters(event: SQSEvent) -> dict[str, Any]:
    deliveries = deliveries_from_records([record.to_dict() for record in event])
    return _batch_failures(wiring.container().dead_letters.handle_batch(deliveries))
