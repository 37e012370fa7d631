"""Deploy the packaged stack with CloudFormation: ``python -m deploy.deploy --stage dev --template out/sam.json``.

What ``make deploy`` runs after ``make package``. With the AWS CLI, the same is::

    aws cloudformation package --template-file out/sam.json --s3-bucket <artifacts bucket> \\
        --use-json --output-template-file out/packaged.json
    aws cloudformation deploy --template-file out/packaged.json --stack-name asyncgate-dev \\
        --s3-bucket <artifacts bucket> --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \\
        --parameter-overrides Architecture=arm64 RequireVirtualKey=true
    aws cloudformation describe-stacks --stack-name asyncgate-dev --query 'Stacks[0].Outputs'

Steps: check the credentials (no other AWS call without them); make sure the artifacts
bucket exists (``asyncgate-artifacts-<account>-<region>`` unless given; private, encrypted);
upload the zip and the rewritten template under content-hash keys (the template is too large
for an inline body); create a change set for stack ``asyncgate-<stage>`` (parameters not
given keep their deployed values), execute it and wait; print the stack's outputs. A change
set without changes means the stack is up to date; a failed stack prints why, exit code 1.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from chalicelib import infra
from chalicelib.infra_cli import CLIENT_CONFIG, Identity, SetupError, caller_identity

FUNCTION_TYPE = "AWS::Serverless::Function"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
CHANGE_SET_WAIT = {"Delay": 5, "MaxAttempts": 120}
STACK_WAIT = {"Delay": 10, "MaxAttempts": 360}  # an hour


class DeployError(Exception):
    """CloudFormation refused or rolled back: the message says why, exit code 1."""


def stack_name(stage: str) -> str:
    return f"asyncgate-{stage}"


def default_artifacts_bucket(who: Identity) -> str:
    return f"asyncgate-artifacts-{who.account}-{who.region}"


def read_template(path: Path) -> dict[str, Any]:
    try:
        template: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read the template {path} ({exc}): run `make package` first") from None
    return template


def parse_parameters(pairs: list[str], template: dict[str, Any]) -> dict[str, str]:
    """``Key=Value`` pairs, each naming one of the template's parameters."""
    known = template.get("Parameters", {})
    parameters: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise SetupError(f"parameter {pair!r} is not Key=Value with Key one of {', '.join(known)}")
        parameters[key] = value
    return parameters


def code_uri(template: dict[str, Any]) -> str:
    """The one local code package every function of the template names (``./deployment.zip``)."""
    uris = {
        resource["Properties"].get("CodeUri")
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") == FUNCTION_TYPE
    }
    if len(uris) != 1 or not all(isinstance(uri, str) for uri in uris):
        raise SetupError(f"expected the functions to share one local CodeUri, found {sorted(map(str, uris))}")
    return str(uris.pop())


def with_code_location(template: dict[str, Any], bucket: str, key: str) -> dict[str, Any]:
    """A copy of ``template`` whose functions take their code from ``s3://bucket/key``."""
    packaged = copy.deepcopy(template)
    for resource in packaged.get("Resources", {}).values():
        if resource.get("Type") == FUNCTION_TYPE:
            resource["Properties"]["CodeUri"] = {"Bucket": bucket, "Key": key}
    return packaged


def upload(s3: Any, bucket: str, prefix: str, data: bytes, suffix: str) -> str:
    """Store ``data`` under its SHA-256 (once: the key names the content); returns the key."""
    key = f"{prefix}{hashlib.sha256(data).hexdigest()}{suffix}"
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
            raise
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return key


def current_stack(cfn: Any, stack: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in exc.response["Error"].get("Message", ""):
            return None
        raise
    return found


def parameter_list(given: dict[str, str], declared: list[str], existing: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The given values; on an update, every other declared parameter the stack has keeps its value."""
    listed: list[dict[str, Any]] = [{"ParameterKey": key, "ParameterValue": value} for key, value in given.items()]
    previous = [] if existing is None else [parameter["ParameterKey"] for parameter in existing.get("Parameters", [])]
    listed += [
        {"ParameterKey": key, "UsePreviousValue": True} for key in previous if key in declared and key not in given
    ]
    return listed


def failure_reasons(cfn: Any, stack: str, token: str) -> list[str]:
    """The failed resources of the operation started with ``token``, first failure first."""
    reasons: list[str] = []
    seen = False
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack):
        for event in page["StackEvents"]:  # newest first
            if event.get("ClientRequestToken") != token:
                if seen:
                    return reasons[::-1]
                continue
            seen = True
            if event["ResourceStatus"].endswith("_FAILED"):
                reasons.append(
                    f"{event['LogicalResourceId']} ({event.get('ResourceType', '?')}) "
                    f"{event['ResourceStatus']}: {event.get('ResourceStatusReason', 'no reason given')}"
                )
    return reasons[::-1]


def deploy_stack(
    cfn: Any, stack: str, template_url: str, parameters: dict[str, str], declared: list[str], operation: str
) -> dict[str, str]:
    """Create and execute change set ``operation`` (also the token of its stack events); returns the outputs.

    Raises ``DeployError`` when CloudFormation refuses the change set or the stack fails.
    """
    existing = current_stack(cfn, stack)
    status = None if existing is None else str(existing["StackStatus"])
    if status == "ROLLBACK_COMPLETE":
        raise DeployError(
            f"stack {stack} is ROLLBACK_COMPLETE (its first creation failed) and cannot be updated: "
            f"delete it (aws cloudformation delete-stack --stack-name {stack}) and deploy again"
        )
    change_type = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    change_set = cfn.create_change_set(
        StackName=stack,
        ChangeSetName=operation,
        ChangeSetType=change_type,
        TemplateURL=template_url,
        Parameters=parameter_list(parameters, declared, None if change_type == "CREATE" else existing),
        Capabilities=CAPABILITIES,
    )["Id"]
    print(f"stack {stack}: {change_type.lower()} change set created, waiting for CloudFormation", flush=True)
    try:
        cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=change_set, WaiterConfig=CHANGE_SET_WAIT)
    except WaiterError as exc:
        reason = str(exc.last_response.get("StatusReason") or exc)
        if not any(marker in reason for marker in NO_CHANGES):
            raise DeployError(f"change set for stack {stack} failed: {reason}") from None
        cfn.delete_change_set(ChangeSetName=change_set)
        print(f"stack {stack} is up to date: nothing to change", flush=True)
        return outputs(cfn, stack)
    cfn.execute_change_set(ChangeSetName=change_set, ClientRequestToken=operation)
    print(f"stack {stack}: executing (a first creation takes a few minutes)", flush=True)
    waiter = "stack_create_complete" if change_type == "CREATE" else "stack_update_complete"
    try:
        cfn.get_waiter(waiter).wait(StackName=stack, WaiterConfig=STACK_WAIT)
    except WaiterError as exc:
        stacks = exc.last_response.get("Stacks") or [{}]
        failed = stacks[0].get("StackStatus", "failed")
        lines = [f"  {reason}" for reason in failure_reasons(cfn, stack, operation)]
        raise DeployError("\n".join([f"stack {stack} {failed}:", *lines])) from None
    print(f"stack {stack}: {change_type.lower()} complete", flush=True)
    return outputs(cfn, stack)


def outputs(cfn: Any, stack: str) -> dict[str, str]:
    found = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    return {str(output["OutputKey"]): str(output["OutputValue"]) for output in found}


def render_outputs(stack: str, found: dict[str, str]) -> str:
    lines = [f"outputs of {stack}:", *(f"  {key:<24}{found[key]}" for key in sorted(found))]
    if "AdminTokenSecretArn" in found:
        lines.append(
            f"admin token: aws secretsmanager get-secret-value --secret-id {found['AdminTokenSecretArn']} "
            "--query SecretString --output text"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Deployment:
    """What to deploy: the command's arguments."""

    stage: str
    template: Path
    parameters: list[str] = field(default_factory=list)  # ``Key=Value``
    artifacts_bucket: str | None = None


def deploy(session: Any, deployment: Deployment) -> str:
    """Everything after the arguments; returns what to print."""
    who = caller_identity(session)
    template = read_template(deployment.template)
    parameters = parse_parameters(deployment.parameters, template)
    code_path = deployment.template.parent / code_uri(template)
    try:
        code = code_path.read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read the code package {code_path} ({exc}): run `make package` first") from None
    stack = stack_name(deployment.stage)
    s3 = session.client("s3", config=CLIENT_CONFIG)
    artifacts = deployment.artifacts_bucket or default_artifacts_bucket(who)
    infra.ensure_private_bucket(s3, artifacts)
    code_key = upload(s3, artifacts, f"{stack}/", code, ".zip")
    packaged = json.dumps(with_code_location(template, artifacts, code_key), separators=(",", ":")).encode()
    template_key = upload(s3, artifacts, f"{stack}/", packaged, ".template.json")
    print(f"uploaded s3://{artifacts}/{code_key} and the template", flush=True)
    template_url = f"{s3.meta.endpoint_url}/{artifacts}/{template_key}"
    cfn = session.client("cloudformation", config=CLIENT_CONFIG)
    operation = f"{time.strftime('asyncgate-%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    found = deploy_stack(cfn, stack, template_url, parameters, list(template.get("Parameters", {})), operation)
    return render_outputs(stack, found)


def run(session: Any, deployment: Deployment) -> int:
    """Deploy and report: 0 done, 1 AWS refused or the stack failed, 2 something to fix first (credentials...)."""
    try:
        print(deploy(session, deployment))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DeployError, ClientError, BotoCoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--template", type=Path, required=True, help="the SAM template `make package` wrote")
    parser.add_argument("--parameters", nargs="*", default=[], metavar="KEY=VALUE", help="stack parameters")
    parser.add_argument("--artifacts-bucket", help="where code and template go (default: one per account and region)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9-]+", args.stage):
        parser.error("stage must be letters, digits or - (it names the stack)")
    return run(boto3.session.Session(), Deployment(args.stage, args.template, args.parameters, args.artifacts_bucket))


if __name__ == "__main__":
    sys.exit(main())
