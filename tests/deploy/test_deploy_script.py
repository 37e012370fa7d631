"""``python -m deploy.deploy``: artifacts to S3 (moto), then a CloudFormation change set (stubbed).

moto's CloudFormation cannot expand the SAM transform, so CloudFormation's answers are
stubbed with botocore's ``Stubber``: the real client validates every request and response
against the service model, and the waiters run on the stubbed answers (terminal at once,
so nothing sleeps).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from chalicelib.infra_cli import SetupError
from deploy.deploy import (
    CAPABILITIES,
    DeployError,
    Deployment,
    code_uri,
    deploy_stack,
    parameter_list,
    parse_parameters,
    run,
    upload,
    with_code_location,
)
from tests.deploy.conftest import Packaged
from tests.support.aws import PROJECT_DIR, fake_aws_environment, no_credentials_environment

STACK = "asyncgate-dev"
STACK_ID = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{STACK}/1"
CHANGE_SET = "arn:aws:cloudformation:us-east-1:123456789012:changeSet/asyncgate-test/1"
OPERATION = "asyncgate-test"
URL = "https://s3.amazonaws.com/artifacts/asyncgate-dev/abc.template.json"
DECLARED = ["Architecture", "RequireVirtualKey"]
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
OUTPUTS = {"EndpointURL": "https://abc.execute-api.us-east-1.amazonaws.com/api/", "AdminTokenSecretArn": "arn:secret"}
TEMPLATE: dict[str, Any] = {
    "Transform": "AWS::Serverless-2016-10-31",
    "Parameters": {"Architecture": {"Type": "String"}, "RequireVirtualKey": {"Type": "String"}},
    "Resources": {
        "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "./deployment.zip"}},
        "Worker": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "./deployment.zip"}},
        "JobsTable": {"Type": "AWS::DynamoDB::Table", "Properties": {"BillingMode": "PAY_PER_REQUEST"}},
    },
}


def cloudformation() -> Any:
    return boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def stack(status: str, **extra: Any) -> dict[str, Any]:
    return {"Stacks": [{"StackName": STACK, "StackId": STACK_ID, "CreationTime": NOW, "StackStatus": status, **extra}]}


def with_outputs(status: str) -> dict[str, Any]:
    return stack(status, Outputs=[{"OutputKey": key, "OutputValue": value} for key, value in OUTPUTS.items()])


def event(logical_id: str, status: str, token: str, reason: str = "") -> dict[str, Any]:
    return {
        "StackId": STACK_ID,
        "EventId": f"{logical_id}-{status}",
        "StackName": STACK,
        "LogicalResourceId": logical_id,
        "ResourceType": "AWS::DynamoDB::Table" if logical_id == "JobsTable" else "AWS::SQS::Queue",
        "Timestamp": NOW,
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
        "ClientRequestToken": token,
    }


def no_stack(stub: Stubber) -> None:
    stub.add_client_error(
        "describe_stacks",
        "ValidationError",
        f"Stack with id {STACK} does not exist",
        expected_params={"StackName": STACK},
    )


def change_set(
    stub: Stubber, change_type: str, parameters: list[dict[str, Any]], status: str, reason: str = ""
) -> None:
    stub.add_response(
        "create_change_set",
        {"Id": CHANGE_SET, "StackId": STACK_ID},
        {
            "StackName": STACK,
            "ChangeSetName": OPERATION,
            "ChangeSetType": change_type,
            "TemplateURL": URL,
            "Parameters": parameters,
            "Capabilities": CAPABILITIES,
        },
    )
    stub.add_response(
        "describe_change_set",
        {"ChangeSetName": OPERATION, "Status": status, "StatusReason": reason},
        {"ChangeSetName": CHANGE_SET},
    )


def execute(stub: Stubber, final: str) -> None:
    stub.add_response("execute_change_set", {}, {"ChangeSetName": CHANGE_SET, "ClientRequestToken": OPERATION})
    stub.add_response("describe_stacks", stack(final), {"StackName": STACK})


# the change-set flow ----------------------------------------------------------------------------------
def test_a_new_stack_is_created_from_a_change_set_and_its_outputs_returned(capsys: pytest.CaptureFixture[str]) -> None:
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        no_stack(stub)
        change_set(stub, "CREATE", [{"ParameterKey": "Architecture", "ParameterValue": "arm64"}], "CREATE_COMPLETE")
        execute(stub, "CREATE_COMPLETE")
        stub.add_response("describe_stacks", with_outputs("CREATE_COMPLETE"), {"StackName": STACK})

        found = deploy_stack(cfn, STACK, URL, {"Architecture": "arm64"}, DECLARED, OPERATION)

        stub.assert_no_pending_responses()
    assert found == OUTPUTS
    assert "create complete" in capsys.readouterr().out


def test_an_update_keeps_parameters_not_given_and_an_empty_change_set_means_up_to_date(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployed = stack("UPDATE_COMPLETE", Parameters=[{"ParameterKey": key, "ParameterValue": "x"} for key in DECLARED])
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", deployed, {"StackName": STACK})
        change_set(
            stub,
            "UPDATE",
            [
                {"ParameterKey": "Architecture", "ParameterValue": "arm64"},
                {"ParameterKey": "RequireVirtualKey", "UsePreviousValue": True},
            ],
            "FAILED",
            "The submitted information didn't contain changes. Submit different information to create a change set.",
        )
        stub.add_response("delete_change_set", {}, {"ChangeSetName": CHANGE_SET})
        stub.add_response("describe_stacks", with_outputs("UPDATE_COMPLETE"), {"StackName": STACK})

        found = deploy_stack(cfn, STACK, URL, {"Architecture": "arm64"}, DECLARED, OPERATION)

        stub.assert_no_pending_responses()
    assert found == OUTPUTS
    assert "up to date" in capsys.readouterr().out


def test_a_failed_stack_reports_the_failed_resources_of_this_deployment_first_failure_first() -> None:
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", stack("UPDATE_COMPLETE"), {"StackName": STACK})
        change_set(stub, "UPDATE", [], "CREATE_COMPLETE")
        execute(stub, "UPDATE_ROLLBACK_COMPLETE")
        newest_first = [
            event("JobsQueue", "UPDATE_FAILED", OPERATION, "Resource update cancelled"),
            event("JobsTable", "UPDATE_FAILED", OPERATION, "Table already exists"),
            event("JobsTable", "UPDATE_IN_PROGRESS", OPERATION),
            event("JobsQueue", "CREATE_FAILED", "an-earlier-deployment", "old news"),
        ]
        stub.add_response("describe_stack_events", {"StackEvents": newest_first}, {"StackName": STACK})

        with pytest.raises(DeployError) as raised:
            deploy_stack(cfn, STACK, URL, {}, DECLARED, OPERATION)

        stub.assert_no_pending_responses()
    lines = str(raised.value).splitlines()
    assert "UPDATE_ROLLBACK_COMPLETE" in lines[0]
    assert lines[1:] == [
        "  JobsTable (AWS::DynamoDB::Table) UPDATE_FAILED: Table already exists",
        "  JobsQueue (AWS::SQS::Queue) UPDATE_FAILED: Resource update cancelled",
    ]


def test_a_change_set_refused_for_another_reason_is_an_error() -> None:
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        no_stack(stub)
        change_set(stub, "CREATE", [], "FAILED", "Template error: instance of Fn::GetAtt references undefined resource")

        with pytest.raises(DeployError, match="undefined resource"):
            deploy_stack(cfn, STACK, URL, {}, DECLARED, OPERATION)

        stub.assert_no_pending_responses()


def test_a_stack_whose_first_creation_rolled_back_is_not_touched_and_the_fix_is_named() -> None:
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"), {"StackName": STACK})

        with pytest.raises(DeployError, match="delete-stack"):
            deploy_stack(cfn, STACK, URL, {}, DECLARED, OPERATION)

        stub.assert_no_pending_responses()


def test_a_stack_under_review_is_created_not_updated() -> None:
    cfn = cloudformation()
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", stack("REVIEW_IN_PROGRESS"), {"StackName": STACK})
        change_set(stub, "CREATE", [], "CREATE_COMPLETE")
        execute(stub, "CREATE_COMPLETE")
        stub.add_response("describe_stacks", with_outputs("CREATE_COMPLETE"), {"StackName": STACK})

        assert deploy_stack(cfn, STACK, URL, {}, DECLARED, OPERATION) == OUTPUTS


# pure parts --------------------------------------------------------------------------------------------
def test_code_location_replaces_every_functions_code_uri_and_nothing_else() -> None:
    original = copy.deepcopy(TEMPLATE)

    packaged = with_code_location(TEMPLATE, "artifacts", "asyncgate-dev/abc.zip")

    assert original == TEMPLATE
    for name in ("APIHandler", "Worker"):
        assert packaged["Resources"][name]["Properties"]["CodeUri"] == {
            "Bucket": "artifacts",
            "Key": "asyncgate-dev/abc.zip",
        }
    assert packaged["Resources"]["JobsTable"] == TEMPLATE["Resources"]["JobsTable"]
    assert {key: value for key, value in packaged.items() if key != "Resources"} == {
        key: value for key, value in TEMPLATE.items() if key != "Resources"
    }


def test_the_packaged_template_names_one_code_package_beside_it_for_all_three_functions(packaged: Packaged) -> None:
    uri = code_uri(packaged.template)
    rewritten = with_code_location(packaged.template, "artifacts", "key.zip")

    assert (packaged.out / uri).is_file()
    functions = [r for r in rewritten["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) == 3
    assert all(f["Properties"]["CodeUri"] == {"Bucket": "artifacts", "Key": "key.zip"} for f in functions)


def test_code_packages_that_differ_between_functions_are_refused() -> None:
    template = copy.deepcopy(TEMPLATE)
    template["Resources"]["Worker"]["Properties"]["CodeUri"] = "./other.zip"

    with pytest.raises(SetupError):
        code_uri(template)


def test_parameters_are_key_value_pairs_of_declared_parameters() -> None:
    assert parse_parameters(["Architecture=arm64", "RequireVirtualKey=true"], TEMPLATE) == {
        "Architecture": "arm64",
        "RequireVirtualKey": "true",
    }
    for bad in ("Architecture", "Unknown=1"):
        with pytest.raises(SetupError):
            parse_parameters([bad], TEMPLATE)


def test_a_new_stack_gets_only_the_given_parameters() -> None:
    assert parameter_list({"Architecture": "arm64"}, DECLARED, None) == [
        {"ParameterKey": "Architecture", "ParameterValue": "arm64"}
    ]


def test_an_update_does_not_carry_over_a_parameter_the_template_no_longer_declares() -> None:
    existing = {"Parameters": [{"ParameterKey": "Removed"}, {"ParameterKey": "RequireVirtualKey"}]}

    assert parameter_list({}, DECLARED, existing) == [{"ParameterKey": "RequireVirtualKey", "UsePreviousValue": True}]


# against moto's S3 ----------------------------------------------------------------------------------------
@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake_aws_environment(monkeypatch)
    with mock_aws():
        yield


class SessionWithStubbedCloudFormation:
    """A boto3 session (moto behind it) whose CloudFormation client is the given stubbed one."""

    def __init__(self, cfn: Any) -> None:
        self._cfn = cfn
        self._session = boto3.session.Session()
        self.region_name = self._session.region_name

    def client(self, service: str, **options: Any) -> Any:
        return self._cfn if service == "cloudformation" else self._session.client(service, **options)


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "deployment.zip").write_bytes(b"PK fake zip")
    template = tmp_path / "sam.json"
    template.write_text(json.dumps(TEMPLATE))
    return template


def test_upload_stores_content_under_its_hash_once(moto: None) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="artifacts")

    keys = {upload(s3, "artifacts", "asyncgate-dev/", b"code", ".zip") for _ in range(2)}

    assert keys == {f"asyncgate-dev/{hashlib.sha256(b'code').hexdigest()}.zip"}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="artifacts")["Contents"]] == list(keys)


def test_deploy_uploads_code_and_template_to_a_private_bucket_and_deploys_that_template(
    moto: None, built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfn = cloudformation()
    sent: dict[str, Any] = {}
    cfn.meta.events.register(
        "provide-client-params.cloudformation.CreateChangeSet", lambda params, **_: sent.update(params)
    )
    with Stubber(cfn) as stub:
        no_stack(stub)
        stub.add_response("create_change_set", {"Id": CHANGE_SET, "StackId": STACK_ID})
        stub.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"}, {"ChangeSetName": CHANGE_SET})
        stub.add_response("execute_change_set", {}, {"ChangeSetName": CHANGE_SET, "ClientRequestToken": ANY})
        stub.add_response("describe_stacks", stack("CREATE_COMPLETE"), {"StackName": STACK})
        stub.add_response("describe_stacks", with_outputs("CREATE_COMPLETE"), {"StackName": STACK})

        code = run(SessionWithStubbedCloudFormation(cfn), Deployment("dev", built, ["RequireVirtualKey=true"]))

        stub.assert_no_pending_responses()
    out = capsys.readouterr().out
    assert code == 0
    bucket = "asyncgate-artifacts-123456789012-us-east-1"
    s3 = boto3.client("s3", region_name="us-east-1")
    code_key = f"{STACK}/{hashlib.sha256(b'PK fake zip').hexdigest()}.zip"
    template_key = sent["TemplateURL"].split(f"/{bucket}/", 1)[1]
    deployed = json.loads(s3.get_object(Bucket=bucket, Key=template_key)["Body"].read())
    assert s3.get_object(Bucket=bucket, Key=code_key)["Body"].read() == b"PK fake zip"
    assert deployed == with_code_location(TEMPLATE, bucket, code_key)
    assert sent["Parameters"] == [{"ParameterKey": "RequireVirtualKey", "ParameterValue": "true"}]
    assert sent["Capabilities"] == ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert OUTPUTS["EndpointURL"] in out and "get-secret-value --secret-id arn:secret" in out


def test_a_failed_deployment_exits_1_with_the_reasons_on_stderr(
    moto: None, built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfn = cloudformation()
    failed = {"StackEvents": [event("JobsTable", "CREATE_FAILED", "unknown yet", "Table already exists")]}

    def tag_events(params: dict[str, Any], **_: Any) -> None:
        """The stack's events carry the token the execution was sent with."""
        failed["StackEvents"][0]["ClientRequestToken"] = params["ClientRequestToken"]

    cfn.meta.events.register("provide-client-params.cloudformation.ExecuteChangeSet", tag_events)
    with Stubber(cfn) as stub:
        no_stack(stub)
        stub.add_response("create_change_set", {"Id": CHANGE_SET, "StackId": STACK_ID})
        stub.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"}, {"ChangeSetName": CHANGE_SET})
        stub.add_response("execute_change_set", {}, {"ChangeSetName": CHANGE_SET, "ClientRequestToken": ANY})
        stub.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"), {"StackName": STACK})
        stub.add_response("describe_stack_events", failed, {"StackName": STACK})

        code = run(SessionWithStubbedCloudFormation(cfn), Deployment("dev", built))

        stub.assert_no_pending_responses()
    err = capsys.readouterr().err
    assert code == 1
    assert "ROLLBACK_COMPLETE" in err
    assert "JobsTable (AWS::DynamoDB::Table) CREATE_FAILED: Table already exists" in err


# as a command ---------------------------------------------------------------------------------------------
def test_command_without_credentials_exits_2_with_one_line_before_anything_else(tmp_path: Path) -> None:
    environment = no_credentials_environment(tmp_path)

    done = subprocess.run(
        [sys.executable, "-m", "deploy.deploy", "--stage", "dev", "--template", str(tmp_path / "missing.json")],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "credentials" in done.stderr and "Traceback" not in done.stderr
