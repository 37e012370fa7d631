"""``python -m chalicelib.infra ensure|triggers --stage dev``: what ``chalice deploy`` cannot do itself.

Reads the stage's resource names from ``.chalice/config.json``, creates whatever is missing
(tables, queues, bucket, the admin-token and provider-keys secrets, the functions' log
groups and one least-privilege role per function), then records the roles and secret names
in that stage of the config file, leaving everything else in it as it was. Running it again
changes nothing. ``triggers``, after ``chalice deploy``, turns on partial batch responses
for the worker's and the dead-letter consumer's queue triggers (Chalice cannot). It prints
names and ARNs, never a secret's value. It also owns the credentials check ``deploy.deploy``
shares: without credentials, one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from chalice.cli.factory import CLIFactory

from chalicelib import iam, infra
from chalicelib.config import ENV_NAMES, Settings
from chalicelib.errors import ConfigurationError
from chalicelib.items import CALLER_INDEX
from chalicelib.key_store import KEY_ID_INDEX

PROJECT_DIR = Path(__file__).resolve().parent.parent
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
NO_CREDENTIALS = (
    "AWS credentials are needed: set AWS_PROFILE (after `aws configure` or `aws sso login`) "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
ADMIN_TOKEN_BYTES = 36  # 48 URL-safe characters


class SetupError(Exception):
    """Something to fix before anything is created: reported as one line, exit code 2."""


@dataclass(frozen=True)
class Identity:
    """Whose credentials, and where: the parts of every ARN."""

    account: str
    partition: str
    region: str

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"


def caller_identity(session: boto3.session.Session) -> Identity:
    """The first AWS call of a command: fails with ``SetupError`` when there are no usable credentials."""
    sts = session.client("sts", region_name=session.region_name or "us-east-1", config=CLIENT_CONFIG)
    try:
        found = sts.get_caller_identity()
    except NoCredentialsError:
        raise SetupError(NO_CREDENTIALS) from None
    except ClientError as exc:
        raise SetupError(f"AWS rejected the credentials ({exc.response['Error']['Code']}): {NO_CREDENTIALS}") from None
    if session.region_name is None:
        raise SetupError("an AWS region is needed: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)")
    return Identity(str(found["Account"]), str(found["Arn"]).split(":")[1], session.region_name)


@dataclass(frozen=True)
class Stage:
    """A Chalice stage of the project: its resource names and the names ``chalice deploy`` gives its functions."""

    name: str
    app_name: str
    settings: Settings
    config_path: Path

    def function_name(self, function: str) -> str:
        base = f"{self.app_name}-{self.name}"
        return base if function == "api_handler" else f"{base}-{function}"

    def resource_name(self, suffix: str) -> str:
        return f"{self.app_name}-{self.name}-{suffix}"


def load_stage(project_dir: Path, stage: str) -> Stage:
    """The stage as Chalice sees it: top-level environment variables merged with the stage's."""
    config_path = project_dir / ".chalice" / "config.json"
    try:
        stages = json.loads(config_path.read_text()).get("stages", {})
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read {config_path}: {exc}") from None
    if stage not in stages:
        raise SetupError(f"stage {stage!r} is not in {config_path} (stages: {', '.join(stages) or 'none'})")
    config = CLIFactory(str(project_dir)).create_config_obj(chalice_stage_name=stage)
    try:
        settings = Settings.from_env(config.environment_variables)
    except ConfigurationError as exc:
        raise SetupError(f"stage {stage!r}: {exc}") from None
    return Stage(stage, config.app_name, settings, config_path)


@dataclass(frozen=True)
class Provisioned:
    urls: dict[str, str]
    arns: iam.Arns
    roles: dict[str, str]  # function → role ARN
    admin_token_secret: str  # names: the functions read the secrets by name
    provider_keys_secret: str

    def environment(self) -> dict[str, str]:
        """The stage's environment variables that name the secrets."""
        return {
            ENV_NAMES["admin_token_secret"]: self.admin_token_secret,
            ENV_NAMES["provider_keys_secret"]: self.provider_keys_secret,
        }


def provision(stage: Stage, who: Identity, session: boto3.session.Session) -> Provisioned:
    """Create what is missing, in dependency order: data, secrets and log groups, then the roles naming them."""

    def client(service: str) -> Any:
        return session.client(service, config=CLIENT_CONFIG)

    settings = stage.settings
    s3 = client("s3")
    urls = infra.ensure(settings, client("dynamodb"), client("sqs"), s3)
    bucket_arn = f"arn:{who.partition}:s3:::{settings.bucket}"
    infra.require_tls(s3, settings.bucket, bucket_arn)

    secretsmanager = client("secretsmanager")
    admin_name, keys_name = stage.resource_name("admin-token"), stage.resource_name("provider-keys")
    admin_arn = infra.ensure_secret(
        secretsmanager,
        admin_name,
        f"asyncgate {stage.name}: admin token for /api/* (Authorization: Bearer <token>)",
        lambda: token_urlsafe(ADMIN_TOKEN_BYTES),
    )
    keys_arn = infra.ensure_secret(
        secretsmanager,
        keys_name,
        f'asyncgate {stage.name}: provider API keys, a JSON map such as {{"openai": "sk-..."}}',
        lambda: "{}",
    )

    logs = client("logs")
    log_groups = {function: f"/aws/lambda/{stage.function_name(function)}" for function in iam.FUNCTIONS}
    for group in log_groups.values():
        infra.ensure_log_group(logs, group)

    jobs_table = who.arn("dynamodb", f"table/{settings.jobs_table}")
    keys_table = who.arn("dynamodb", f"table/{settings.keys_table}")
    arns = iam.Arns(
        jobs_table=jobs_table,
        jobs_index=iam.index_arn(jobs_table, CALLER_INDEX),
        keys_table=keys_table,
        keys_index=iam.index_arn(keys_table, KEY_ID_INDEX),
        jobs_queue=who.arn("sqs", settings.jobs_queue),
        dead_letter_queue=who.arn("sqs", infra.dlq_name(settings.jobs_queue)),
        payload_bucket=bucket_arn,
        payload_objects=f"{bucket_arn}/*",
        admin_token_secret=admin_arn,
        provider_keys_secret=keys_arn,
        log_group={function: who.arn("logs", f"log-group:{group}:*") for function, group in log_groups.items()},
        bedrock_models=iam.bedrock_arns(who.partition, who.account),
    )
    iam_client = client("iam")
    roles = {
        function: infra.ensure_role(iam_client, stage.resource_name(function), iam.policy(function, arns))
        for function in iam.FUNCTIONS
    }
    return Provisioned(urls, arns, roles, admin_name, keys_name)


def record(config_path: Path, stage: str, roles: dict[str, str], environment: dict[str, str]) -> bool:
    """Put the role ARNs and environment into ``stage`` of the config file; False if it already said so."""
    text = config_path.read_text()
    config = json.loads(text)
    stage_config = config["stages"][stage]
    functions = stage_config.setdefault("lambda_functions", {})
    for function, arn in roles.items():
        functions.setdefault(function, {})["iam_role_arn"] = arn
    stage_config.setdefault("environment_variables", {}).update(environment)
    updated = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    if updated == text:
        return False
    config_path.write_text(updated)
    return True


def summary(stage: Stage, who: Identity, done: Provisioned, wrote: bool, project_dir: Path) -> str:
    settings, arns = stage.settings, done.arns
    rows = [
        ("jobs table", arns.jobs_table),
        ("keys table", arns.keys_table),
        ("jobs queue", done.urls["queue_url"]),
        ("dead-letter queue", done.urls["dlq_url"]),
        ("payload bucket", settings.bucket),
        ("admin token secret", arns.admin_token_secret),
        ("provider keys secret", arns.provider_keys_secret),
        *((f"role {function}", arn) for function, arn in done.roles.items()),
    ]
    chalice = "chalice" if project_dir.resolve() == Path.cwd().resolve() else f"chalice --project-dir {project_dir}"
    region = f"--region {who.region}"
    return "\n".join(
        [
            f"asyncgate stage {stage.name}: account {who.account}, region {who.region}",
            *(f"  {label:<26}{value}" for label, value in rows),
            f"{stage.config_path}: {'updated' if wrote else 'already up to date'} (role ARNs and secret names)",
            f"next: {chalice} deploy --stage {stage.name}",
            f"then: python -m chalicelib.infra triggers --stage {stage.name}"
            + ("" if project_dir.resolve() == PROJECT_DIR else f" --project-dir {project_dir}"),
            f"admin token: aws secretsmanager get-secret-value {region} --secret-id {done.admin_token_secret} "
            "--query SecretString --output text",
            f"provider keys: aws secretsmanager put-secret-value {region} --secret-id {done.provider_keys_secret} "
            """--secret-string '{"openai": "sk-..."}'""",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.infra", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure", help="create the stage's AWS resources and record them in the config")
    triggers = commands.add_parser("triggers", help="after chalice deploy: partial batch responses on queue triggers")
    for command in (ensure, triggers):
        command.add_argument("--stage", required=True, help="a stage of .chalice/config.json (dev, prod, ...)")
        command.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help="the Chalice project")
    args = parser.parse_args(argv)
    try:
        stage = load_stage(args.project_dir, args.stage)
        session = boto3.session.Session()
        who = caller_identity(session)
        if args.command == "triggers":
            print(wire_triggers(stage, session))
            return 0
        done = provision(stage, who, session)
        wrote = record(stage.config_path, stage.name, done.roles, done.environment())
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary(stage, who, done, wrote, args.project_dir))
    return 0


def wire_triggers(stage: Stage, session: boto3.session.Session) -> str:
    """Partial batch responses on the queue triggers ``chalice deploy`` made; one line per function."""
    lambda_client = session.client("lambda", config=CLIENT_CONFIG)
    lines = []
    for function in ("worker", "dead_letters"):
        name = stage.function_name(function)
        try:
            lambda_client.get_function(FunctionName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                missing = f"function {name} does not exist: run chalice deploy --stage {stage.name} first"
                raise SetupError(missing) from None
            raise
        changed = infra.enable_partial_batch_responses(lambda_client, name)
        lines.append(f"{name}: partial batch responses {'turned on' if changed else 'already on'}")
    return "\n".join(lines)
