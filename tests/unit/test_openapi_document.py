"""The OpenAPI document (issue 5, item 4): one source, a valid OpenAPI 3.0 document, every route in it.

``openapi.yaml`` is the source and ``chalicelib/openapi.json`` the copy ``GET /openapi.json``
serves (``make openapi`` writes it); the two must say the same thing. The document must
list exactly the routes Chalice serves: each path and each method that is not one of the
405 refusals every path registers for the methods it does not serve.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from openapi_spec_validator import validate as validate_openapi
from schemathesis.core.result import Err, Ok

from app import app

PROJECT_DIR = Path(__file__).resolve().parents[2]
YAML_SOURCE = PROJECT_DIR / "openapi.yaml"
SERVED_COPY = PROJECT_DIR / "chalicelib" / "openapi.json"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
REFUSAL_VIEW = "refuse"  # app._register's handler for the methods a path does not serve (405)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(YAML_SOURCE.read_text(encoding="utf-8"))
    return loaded


def served_operations() -> set[tuple[str, str]]:
    """(path, method) for every route Chalice registers, without the 405 refusals."""
    return {
        (path, method.lower())
        for path, methods in app.routes.items()
        for method, entry in methods.items()
        if entry.view_function.__name__ != REFUSAL_VIEW
    }


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS}


def test_served_json_copy_is_identical_to_the_yaml_source(document: dict[str, Any]) -> None:
    served = json.loads(SERVED_COPY.read_text(encoding="utf-8"))

    assert served == document, "openapi.yaml changed without `make openapi`"


def test_document_is_valid_openapi_3_0(document: dict[str, Any]) -> None:
    assert str(document["openapi"]).startswith("3.0.")

    validate_openapi(document)


def test_schemathesis_loads_every_operation_without_schema_errors(document: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()

    results = list(schema.get_all_operations())
    errors = [str(result.err()) for result in results if isinstance(result, Err)]
    labels = {result.ok().label for result in results if isinstance(result, Ok)}

    assert errors == []
    assert labels == {f"{method.upper()} {path}" for path, method in documented_operations(document)}


def test_every_served_route_is_documented(document: dict[str, Any]) -> None:
    missing = served_operations() - documented_operations(document)

    assert missing == set(), f"served but not in openapi.yaml: {sorted(missing)}"


def test_every_documented_operation_is_served(document: dict[str, Any]) -> None:
    extra = documented_operations(document) - served_operations()

    assert extra == set(), f"in openapi.yaml but not served: {sorted(extra)}"


def test_refusal_detection_sees_both_served_and_refused_methods() -> None:
    """Guards the route comparison: if the refusal handler were renamed, 405s would count as served."""
    chat_job = app.routes["/v1/async/chat/completions/{job_id}"]

    assert chat_job["GET"].view_function.__name__ != REFUSAL_VIEW
    assert chat_job["POST"].view_function.__name__ == REFUSAL_VIEW


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [
        operation["operationId"]
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]

    assert len(ids) == len(set(ids))
    assert all(isinstance(name, str) and name for name in ids)


def test_every_path_parameter_is_declared_as_required(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        names = {segment[1:-1] for segment in path.split("/") if segment.startswith("{")}
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            declared = [_resolve(document, p) for p in [*item.get("parameters", []), *operation.get("parameters", [])]]
            in_path = {p["name"] for p in declared if p["in"] == "path" and p.get("required") is True}
            assert in_path == names, f"{method.upper()} {path}"


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    reference = node.get("$ref")
    if reference is None:
        return node
    target: Any = document
    for part in str(reference).removeprefix("#/").split("/"):
        target = target[part]
    resolved: dict[str, Any] = target
    return resolved
