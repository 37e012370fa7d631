"""The ``dev`` stage packaged once per test session: the written ``sam.json`` and its output directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.package import package


@dataclass(frozen=True)
class Packaged:
    template: dict[str, Any]  # as written to ``out/sam.json``: what a deployment reads
    out: Path


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    out = tmp_path_factory.mktemp("package") / "out"
    package("dev", out)
    return Packaged(json.loads((out / "sam.json").read_text()), out)


@pytest.fixture(scope="session")
def template(packaged: Packaged) -> dict[str, Any]:
    return packaged.template
