"""The deployment zip runs as Lambda runs it: its own files plus the runtime's boto3, nothing else.

The zip is unpacked and imported by an isolated interpreter (``-I -S``: no site-packages)
whose path holds only the zip and what the Lambda Python runtime provides (boto3 and its
dependencies). So a module that imports a dev-only package (moto, yaml, chalice's CLI) or a
local-stack module at import time fails here, not in AWS. It then answers an API Gateway
event for ``GET /openapi.json`` through the API handler.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path

from deploy.package import DEV_ONLY
from tests.deploy.conftest import Packaged

# What the Lambda Python runtime ships besides the standard library.
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six")

PROBE = """
import json, sys
sys.path[:0] = sys.argv[1:3]
import app
event = {
    "resource": "/openapi.json", "path": "/openapi.json", "httpMethod": "GET",
    "headers": {"Accept": "application/json"}, "multiValueHeaders": {},
    "queryStringParameters": None, "multiValueQueryStringParameters": None,
    "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
    "requestContext": {"resourcePath": "/openapi.json", "httpMethod": "GET", "path": "/api/openapi.json",
                       "requestId": "probe", "stage": "api"},
}
answer = app.app(event, None)
print(json.dumps({
    "handlers": sorted(app.app.handler_map),
    "status": answer["statusCode"],
    "openapi": json.loads(answer["body"]).get("openapi"),
    "modules": sorted(name for name in sys.modules if name.split(".")[0] in ("moto", "yaml", "pytest")),
    "local": sorted(name for name in sys.modules if name.startswith("chalicelib.") and
                    name.split(".")[1] in ("local", "local_aws", "sqs_poller", "admin", "infra_cli")),
}))
"""


def lambda_runtime(into: Path) -> Path:
    """A directory holding what the Lambda runtime adds to the path: boto3 and its dependencies."""
    into.mkdir()
    for name in RUNTIME_DISTRIBUTIONS:
        dist = distribution(name)
        tops = {file.parts[0] for file in dist.files or [] if len(file.parts) > 1 or file.suffix == ".py"}
        for top in tops - {".."} - {p for p in tops if p.endswith(".dist-info")}:
            source = Path(str(dist.locate_file(top)))
            if source.exists():
                (into / top).symlink_to(source)
    return into


def test_the_zip_imports_and_serves_a_route_with_only_the_lambda_runtime_beside_it(
    packaged: Packaged, tmp_path: Path
) -> None:
    task = tmp_path / "task"
    with zipfile.ZipFile(packaged.out / "deployment.zip") as archive:
        archive.extractall(task)
    runtime = lambda_runtime(tmp_path / "runtime")

    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(task), str(runtime)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        check=False,
    )

    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert {"worker", "dead_letters"} <= set(seen["handlers"])
    assert (seen["status"], str(seen["openapi"]).startswith("3.")) == (200, True)
    assert seen["modules"] == [] and seen["local"] == []


def test_the_zip_leaves_out_every_dev_only_module(packaged: Packaged) -> None:
    with zipfile.ZipFile(packaged.out / "deployment.zip") as archive:
        names = set(archive.namelist())

    assert names & set(DEV_ONLY) == set()
    assert "chalicelib/infra.py" in names  # app.py names the dead-letter queue with it
