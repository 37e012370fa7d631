"""``deploy.package.slim_zip``: dev-only modules and compiled twins go; arch-bound modules are refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from deploy.package import DEV_ONLY, slim_zip


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, f"# {name}\n")
    return path


def test_compiled_accelerators_with_a_source_beside_them_are_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    names = ["app.py", "pkg/md.py", "pkg/md.cpython-311-x86_64-linux-gnu.so", "pkg/data.json"]
    archive = _zip(tmp_path / "deployment.zip", names)

    dropped = slim_zip(archive, ())

    assert dropped == ["pkg/md.cpython-311-x86_64-linux-gnu.so"]
    with zipfile.ZipFile(archive) as result:
        assert sorted(result.namelist()) == ["app.py", "pkg/data.json", "pkg/md.py"]
        assert result.read("pkg/md.py") == b"# pkg/md.py\n"


def test_a_compiled_module_without_a_source_fallback_stops_the_package(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "deployment.zip", ["app.py", "native/fast.cpython-311-x86_64-linux-gnu.so"])

    with pytest.raises(SystemExit, match="native/fast"):
        slim_zip(archive, ())


def test_dev_only_modules_are_dropped_and_every_other_module_kept(tmp_path: Path) -> None:
    kept = ["app.py", "chalicelib/__init__.py", "chalicelib/infra.py", "chalicelib/worker.py"]
    archive = _zip(tmp_path / "deployment.zip", [*kept, *DEV_ONLY])

    dropped = slim_zip(archive)

    assert dropped == sorted(DEV_ONLY)
    with zipfile.ZipFile(archive) as result:
        assert sorted(result.namelist()) == sorted(kept)
