"""``GET /openapi.json``: the OpenAPI document of every route, as JSON.

``openapi.yaml`` at the project root is the source; ``make openapi`` writes the JSON copy
packaged beside this module (a test keeps the two identical). Read once per container.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

DOCUMENT = Path(__file__).with_name("openapi.json")


@cache
def openapi_document() -> str:
    return DOCUMENT.read_text(encoding="utf-8")
