"""Build the deployable artefacts: ``chalice package`` merged with ``deploy/resources.json``.

``python -m deploy.package --stage dev --out out`` writes ``out/sam.json`` and
``out/deployment.zip``. Chalice takes the Lambda runtime from the interpreter that runs it,
so ``--runtime python3.12`` packages with a ``python3.12`` (on first use a venv is made for
it with the pinned chalice, boto3 and the runtime requirements). ``--arch arm64`` makes
arm64 the template's default architecture; the zip holds no compiled modules, so it runs
on both, and none of the local stack's or the CLIs' modules. Chalice's deep merge would
fuse two CloudFormation functions into one dict (its ``Fn::Sub`` queue ARN with our
``Fn::GetAtt``); every intrinsic the merge template sets is therefore put back whole.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
MERGE_TEMPLATE = PROJECT_DIR / "deploy" / "resources.json"
ARCHITECTURES = ("x86_64", "arm64")
RUNTIMES = ("python3.11", "python3.12", "python3.13")


def is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    name = next(iter(value))
    return isinstance(name, str) and (name == "Ref" or name.startswith("Fn::"))


def restore_intrinsics(merged: dict[str, Any], ours: dict[str, Any]) -> None:
    """Wherever ``ours`` holds an intrinsic function, ``merged`` gets exactly that value."""
    for key, value in ours.items():
        if is_intrinsic(value):
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            restore_intrinsics(merged[key], value)


def find_interpreter(runtime: str) -> str:
    """A working ``python3.X``: on PATH, or one of pyenv's installed versions."""
    version = runtime.removeprefix("python")
    candidates = [shutil.which(runtime)]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(path) for path in sorted(pyenv_root.glob(f"versions/{version}.*/bin/{runtime}"), reverse=True)]
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"]
        found = subprocess.run(probe, capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip() == version:
            return candidate
    raise SystemExit(f"error: no working {runtime} found (install it, e.g. with pyenv)")


# Modules only a developer's machine runs (local stack, CLIs); no Lambda code path imports them.
DEV_ONLY = (
    "chalicelib/local.py",
    "chalicelib/local_aws.py",
    "chalicelib/sqs_poller.py",
    "chalicelib/admin.py",
    "chalicelib/infra_cli.py",
)


def slim_zip(zip_path: Path, dev_only: Collection[str] = DEV_ONLY) -> list[str]:
    """Drop what Lambda never runs; returns what was dropped.

    ``dev_only`` modules go, and so do compiled accelerators that have a pure-Python module
    beside them (charset-normalizer ships mypyc builds of modules it also ships as source), so
    the zip runs on either architecture. A compiled module without a source fallback is an error.
    """
    with zipfile.ZipFile(zip_path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    names = {info.filename for info, _ in entries}
    compiled = [name for name in names if name.endswith((".so", ".pyd"))]
    stranded = [name for name in compiled if f"{name.split('.', 1)[0]}.py" not in names]
    if stranded:
        raise SystemExit(f"error: compiled modules without a pure-Python fallback: {', '.join(sorted(stranded))}")
    dropped = set(compiled) | (names & set(dev_only))
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            if info.filename not in dropped:
                archive.writestr(info, data)
    return sorted(dropped)


def chalice_for(runtime: str | None) -> list[str]:
    """The command that runs chalice under the interpreter whose version is the Lambda runtime."""
    current = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if runtime in (None, current):
        return [str(Path(sys.executable).parent / "chalice")]
    if runtime not in RUNTIMES:
        raise SystemExit(f"error: runtime must be one of {', '.join(RUNTIMES)}")
    venv = PROJECT_DIR / f".venv-{runtime}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([find_interpreter(runtime), "-m", "venv", str(venv)], check=True)
        pins = (PROJECT_DIR / "requirements-dev.txt").read_text().splitlines()
        needed = [line for line in pins if line.startswith(("chalice==", "boto3=="))]  # chalice imports the app
        install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*install, *needed, "-r", str(PROJECT_DIR / "requirements.txt")], check=True)
    return [str(venv / "bin" / "chalice")]


def package(stage: str, out: Path, runtime: str | None = None, arch: str = "x86_64") -> dict[str, Any]:
    """Run ``chalice package`` with the merge template; returns the finished template."""
    if arch not in ARCHITECTURES:
        raise SystemExit(f"error: arch must be one of {', '.join(ARCHITECTURES)}")
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    command = [*chalice_for(runtime), "package", "--stage", stage, "--merge-template", str(MERGE_TEMPLATE), str(out)]
    subprocess.run(command, check=True, cwd=PROJECT_DIR, env=env)
    template_path = out / "sam.json"
    template: dict[str, Any] = json.loads(template_path.read_text())
    restore_intrinsics(template, json.loads(MERGE_TEMPLATE.read_text()))
    template["Parameters"]["Architecture"]["Default"] = arch
    slim_zip(out / "deployment.zip")
    template_path.write_text(json.dumps(template, indent=2) + "\n")
    return template


def describe(out: Path, template: dict[str, Any]) -> str:
    functions = [r["Properties"] for r in template["Resources"].values() if "Runtime" in r.get("Properties", {})]
    runtimes = {str(properties["Runtime"]) for properties in functions}
    zip_path = out / "deployment.zip"
    with zipfile.ZipFile(zip_path) as archive:
        files = len(archive.namelist())
    return (
        f"{out / 'sam.json'}: runtime {', '.join(sorted(runtimes))}, "
        f"architecture {template['Parameters']['Architecture']['Default']}; "
        f"{zip_path}: {zip_path.stat().st_size / 1024:.0f} KiB, {files} files"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "out")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None, help="Lambda runtime (default: this Python)")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="x86_64")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.stage):
        parser.error("stage must be letters, digits, - or _")
    template = package(args.stage, args.out, args.runtime, args.arch)
    print(describe(args.out, template))
    return 0


if __name__ == "__main__":
    sys.exit(main())
