"""Admin CLI for virtual keys: ``python -m chalicelib.admin keys create|list|disable``.

Talks to the keys table directly with boto3: in AWS with your credentials and the stage's
table (``--stage dev``), or against a running local stack (``--local``, which reads the
stack's embedded AWS endpoint from ``.asyncgate-local.json``). Prints JSON; a created
key's value is printed once and never stored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from chalicelib import aws
from chalicelib.clock import SystemClock
from chalicelib.errors import GatewayError
from chalicelib.key_admin import KeyAdmin, key_view
from chalicelib.key_store import DynamoKeyStore

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOCAL_STATE = PROJECT_DIR / ".asyncgate-local.json"


def stage_table(stage: str) -> str:
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    variables = config["stages"].get(stage, {}).get("environment_variables", {})
    table = variables.get("ASYNCGATE_KEYS_TABLE")
    if not table:
        raise SystemExit(f"stage {stage} names no ASYNCGATE_KEYS_TABLE in .chalice/config.json")
    return str(table)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m chalicelib.admin", description=__doc__.splitlines()[0])
    where = root.add_mutually_exclusive_group()
    where.add_argument("--stage", default="dev", help="the stage whose keys table to use (default dev)")
    where.add_argument("--local", action="store_true", help="use the running local stack")
    root.add_argument("--table", help="the keys table, overriding the stage's")
    nouns = root.add_subparsers(dest="noun", required=True)
    keys = nouns.add_parser("keys", help="virtual keys").add_subparsers(dest="verb", required=True)
    create = keys.add_parser("create", help="create a key and print its value once")
    create.add_argument("--name", required=True)
    create.add_argument("--rate-limit", type=int, help="requests per minute")
    keys.add_parser("list", help="list keys (never their values)")
    disable = keys.add_parser("disable", help="disable a key by id")
    disable.add_argument("key_id")
    return root


def run(args: argparse.Namespace) -> Any:
    if args.local:
        if not LOCAL_STATE.exists():
            raise SystemExit("no local stack is running (start it with `make run`)")
        state = json.loads(LOCAL_STATE.read_text())
        os.environ.update(
            AWS_ENDPOINT_URL=state["aws_endpoint"],
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
    table = args.table or stage_table("local" if args.local else args.stage)
    admin = KeyAdmin(DynamoKeyStore(aws.client("dynamodb"), table), SystemClock())
    if args.verb == "create":
        created = admin.create(args.name, args.rate_limit)
        return key_view(created.key, created.value)
    if args.verb == "list":
        return [key_view(key) for key in admin.all()]
    return key_view(admin.disable(args.key_id))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        print(json.dumps(run(args), indent=2))
    except GatewayError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
