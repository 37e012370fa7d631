"""Deployment package size: what ``make package`` ships, against bundling the AWS SDK.

Packages the ``dev`` stage with ``deploy.package.package`` into a temporary directory and
prints the zip's size, file count and largest top-level packages. As the baseline, measured
in the same run, it rebuilds that zip with boto3, botocore and s3transfer from this venv
added (same compression, no bytecode caches): the size the package would have if the SDK
the Lambda runtime already provides were bundled. Reports figures only, asserts nothing.

    python -m bench.package_size
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import boto3

from deploy.package import ARCHITECTURES, RUNTIMES, package

SDK_PACKAGES = ("boto3", "botocore", "s3transfer")


def top_level(name: str) -> str:
    """The package an archive member belongs to; ``requests-2.32.3.dist-info`` counts as ``requests``."""
    head = name.split("/", 1)[0]
    return head.split("-", 1)[0] if head.endswith(".dist-info") else head


def sizes_by_package(archive: Path) -> tuple[Counter[str], Counter[str]]:
    """Compressed bytes and file count per top-level package."""
    size: Counter[str] = Counter()
    files: Counter[str] = Counter()
    with zipfile.ZipFile(archive) as source:
        for member in source.infolist():
            size[top_level(member.filename)] += member.compress_size
            files[top_level(member.filename)] += 1
    return size, files


def sdk_files(site_packages: Path) -> list[Path]:
    """Every file of the SDK packages and their metadata, without bytecode caches."""
    roots = [site_packages / name for name in SDK_PACKAGES]
    roots += [path for name in SDK_PACKAGES for path in site_packages.glob(f"{name}-*.dist-info")]
    found = [path for root in roots for path in sorted(root.rglob("*")) if path.is_file()]
    return [path for path in found if "__pycache__" not in path.parts and path.suffix != ".pyc"]


def with_sdk(archive: Path, target: Path) -> Path:
    """``archive`` rewritten with the SDK packages added, compressed as ``archive`` is."""
    site_packages = Path(boto3.__file__).resolve().parent.parent
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as bundled:
        methods = {member.compress_type for member in source.infolist()}
        method = methods.pop() if len(methods) == 1 else zipfile.ZIP_DEFLATED
        for member in source.infolist():
            bundled.writestr(member, source.read(member), compress_type=member.compress_type)
        for path in sdk_files(site_packages):
            bundled.write(path, path.relative_to(site_packages).as_posix(), compress_type=method)
    return target


def report(stage: str, runtime: str | None, arch: str, top: int) -> str:
    with tempfile.TemporaryDirectory(prefix="asyncgate-size-") as scratch:
        out = Path(scratch) / "out"
        package(stage, out, runtime, arch)
        archive = out / "deployment.zip"
        baseline = with_sdk(archive, Path(scratch) / "with-sdk.zip")
        size, files = sizes_by_package(archive)
        total, baseline_total = archive.stat().st_size, baseline.stat().st_size
        _, baseline_files = sizes_by_package(baseline)
    lines = [
        f"deployment.zip ({stage}, {runtime or 'this Python'}, {arch}): "
        f"{total / 1024:,.0f} KiB, {sum(files.values())} files",
        f"largest top-level packages (compressed; *.dist-info counted with its package), top {top}:",
    ]
    for name, compressed in size.most_common(top):
        lines.append(f"  {name:32} {compressed / 1024:8,.0f} KiB  {compressed / total:6.1%}  {files[name]:4} files")
    lines += [
        f"baseline, the same zip with {' + '.join(SDK_PACKAGES)} bundled: "
        f"{baseline_total / 1024:,.0f} KiB, {sum(baseline_files.values())} files",
        f"ratio baseline / shipped: {baseline_total / total:.1f}x (shipped is {total / baseline_total:.1%} of it)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.package_size", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None, help="Lambda runtime (default: this Python)")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="x86_64")
    parser.add_argument("--top", type=int, default=8, help="how many packages to list")
    args = parser.parse_args(argv)
    print(report(args.stage, args.runtime, args.arch, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
