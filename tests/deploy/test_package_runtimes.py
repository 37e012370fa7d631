"""Packaging for another Lambda runtime or architecture: every function gets it in the written ``sam.json``.

Another runtime packages under that Python's venv (``.venv-python3.X``, made from PyPI on first use).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deploy.package import package

FUNCTIONS = ("APIHandler", "Worker", "DeadLetters")


def written_template(out: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((out / "sam.json").read_text())
    return template


def function_property(template: dict[str, Any], name: str) -> dict[str, Any]:
    return {function: template["Resources"][function]["Properties"][name] for function in FUNCTIONS}


@pytest.mark.parametrize("runtime", ["python3.12", "python3.13"])
def test_runtime_option_sets_the_runtime_of_every_function(tmp_path: Path, runtime: str) -> None:
    package("dev", tmp_path / "out", runtime=runtime)

    assert function_property(written_template(tmp_path / "out"), "Runtime") == dict.fromkeys(FUNCTIONS, runtime)


def test_arm64_option_defaults_the_architecture_parameter_every_function_uses(tmp_path: Path) -> None:
    package("dev", tmp_path / "out", arch="arm64")
    template = written_template(tmp_path / "out")

    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    assert function_property(template, "Architectures") == {name: [{"Ref": "Architecture"}] for name in FUNCTIONS}
