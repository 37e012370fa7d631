"""``python -m chalicelib.infra ensure --stage dev`` against moto: what ``chalice deploy`` needs, idempotently.

Every run works on a copy of ``.chalice/config.json`` in a temporary project directory.
ARNs the roles' policies must name are read back from the services, not rebuilt the way
the command builds them.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from chalice.cli.factory import CLIFactory
from moto import mock_aws

from chalicelib import iam, infra
from chalicelib.config import Settings
from chalicelib.infra_cli import main
from chalicelib.items import CALLER_INDEX
from chalicelib.key_store import KEY_ID_INDEX
from chalicelib.local_aws import EmbeddedAws
from tests.support.aws import PROJECT_DIR, fake_aws_environment, no_credentials_environment, without_aws

STAGE = "dev"
ADMIN_SECRET = "asyncgate-dev-admin-token"
KEYS_SECRET = "asyncgate-dev-provider-keys"
FUNCTION_NAMES = {
    "api_handler": "asyncgate-dev",
    "worker": "asyncgate-dev-worker",
    "dead_letters": "asyncgate-dev-dead_letters",
}


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def copy_project(tmp_path: Path) -> Path:
    (tmp_path / ".chalice").mkdir()
    shutil.copy(PROJECT_DIR / ".chalice" / "config.json", tmp_path / ".chalice" / "config.json")
    return tmp_path


def dev_names() -> dict[str, str]:
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    names: dict[str, str] = config["stages"][STAGE]["environment_variables"]
    return names


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake_aws_environment(monkeypatch)
    with mock_aws():
        yield


@pytest.fixture
def ensure(project: Path, moto: None, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(stage: str = STAGE) -> Result:
        code = main(["ensure", "--stage", stage, "--project-dir", str(project)])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1")


def admin_token() -> str:
    return str(client("secretsmanager").get_secret_value(SecretId=ADMIN_SECRET)["SecretString"])


def queue_attributes(name: str) -> dict[str, str]:
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes: dict[str, str] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return attributes


def inline_policy(function: str) -> dict[str, Any]:
    found = client("iam").get_role_policy(RoleName=f"asyncgate-dev-{function}", PolicyName=infra.ROLE_POLICY_NAME)
    document = found["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else dict(document)


def role_arns() -> dict[str, str]:
    return {
        function: client("iam").get_role(RoleName=f"asyncgate-dev-{function}")["Role"]["Arn"]
        for function in iam.FUNCTIONS
    }


def secret_arns() -> dict[str, str]:
    return {
        name: client("secretsmanager").describe_secret(SecretId=name)["ARN"] for name in (ADMIN_SECRET, KEYS_SECRET)
    }


def expected_arns() -> iam.Arns:
    """The resources as the services describe them."""
    names = dev_names()
    jobs = client("dynamodb").describe_table(TableName=names["ASYNCGATE_JOBS_TABLE"])["Table"]["TableArn"]
    keys = client("dynamodb").describe_table(TableName=names["ASYNCGATE_KEYS_TABLE"])["Table"]["TableArn"]
    groups = {
        group["logGroupName"]: group["arn"]
        for group in client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/asyncgate-dev")["logGroups"]
    }
    secrets = secret_arns()
    return iam.Arns(
        jobs_table=jobs,
        jobs_index=f"{jobs}/index/{CALLER_INDEX}",
        keys_table=keys,
        keys_index=f"{keys}/index/{KEY_ID_INDEX}",
        jobs_queue=queue_attributes(names["ASYNCGATE_JOBS_QUEUE"])["QueueArn"],
        dead_letter_queue=queue_attributes(f"{names['ASYNCGATE_JOBS_QUEUE']}-dlq")["QueueArn"],
        payload_bucket=f"arn:aws:s3:::{names['ASYNCGATE_BUCKET']}",
        payload_objects=f"arn:aws:s3:::{names['ASYNCGATE_BUCKET']}/*",
        admin_token_secret=secrets[ADMIN_SECRET],
        provider_keys_secret=secrets[KEYS_SECRET],
        log_group={function: groups[f"/aws/lambda/{name}"] for function, name in FUNCTION_NAMES.items()},
        bedrock_models=iam.bedrock_arns("aws", "123456789012"),
    )


def state() -> dict[str, Any]:
    """What a second run must leave exactly as it was."""
    return {
        "roles": role_arns(),
        "secrets": secret_arns(),
        "token": admin_token(),
        "policies": {function: inline_policy(function) for function in iam.FUNCTIONS},
    }


# what one run creates ----------------------------------------------------------------------------
def test_tables_are_encrypted_recoverable_and_expire_items_by_ttl(ensure: Any) -> None:
    assert ensure().code == 0

    dynamodb = client("dynamodb")
    for table in (dev_names()["ASYNCGATE_JOBS_TABLE"], dev_names()["ASYNCGATE_KEYS_TABLE"]):
        described = dynamodb.describe_table(TableName=table)["Table"]
        backups = dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
        ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert described["SSEDescription"]["Status"] == "ENABLED"
        assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}


def test_queue_redrives_to_its_dlq_and_both_are_sqs_encrypted(ensure: Any) -> None:
    assert ensure().code == 0

    queue = queue_attributes(dev_names()["ASYNCGATE_JOBS_QUEUE"])
    dlq = queue_attributes(infra.dlq_name(dev_names()["ASYNCGATE_JOBS_QUEUE"]))
    assert json.loads(queue["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq["QueueArn"],
        "maxReceiveCount": infra.max_receive_count(Settings()),
    }
    assert queue["SqsManagedSseEnabled"] == dlq["SqsManagedSseEnabled"] == "true"
    assert queue["VisibilityTimeout"] == str(infra.QUEUE_VISIBILITY_S)
    assert dlq["MessageRetentionPeriod"] == str(infra.DLQ_RETENTION_S)


def test_bucket_is_private_encrypted_expiring_and_tls_only(ensure: Any) -> None:
    assert ensure().code == 0

    s3, bucket = client("s3"), dev_names()["ASYNCGATE_BUCKET"]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert {rule["ID"] for rule in rules} == {rule["ID"] for rule in infra.lifecycle_rules(Settings())}
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == infra.tls_only_policy(f"arn:aws:s3:::{bucket}")


def test_secrets_hold_a_fresh_admin_token_and_an_empty_provider_key_map(ensure: Any) -> None:
    assert ensure().code == 0

    keys = client("secretsmanager").get_secret_value(SecretId=KEYS_SECRET)["SecretString"]
    assert keys == "{}"
    assert len(admin_token()) >= 40


def test_log_groups_exist_under_the_names_chalice_gives_the_functions(ensure: Any) -> None:
    assert ensure().code == 0

    groups = client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]
    assert {group["logGroupName"]: group["retentionInDays"] for group in groups} == {
        f"/aws/lambda/{name}": infra.LOG_RETENTION_DAYS for name in FUNCTION_NAMES.values()
    }


@pytest.mark.parametrize("function", iam.FUNCTIONS)
def test_each_role_is_for_lambda_and_its_policy_is_the_least_privilege_one_on_the_real_arns(
    ensure: Any, function: str
) -> None:
    assert ensure().code == 0

    role = client("iam").get_role(RoleName=f"asyncgate-dev-{function}")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    assert (json.loads(trust) if isinstance(trust, str) else trust) == iam.ASSUME_ROLE_POLICY
    assert client("iam").list_role_policies(RoleName=role["RoleName"])["PolicyNames"] == [infra.ROLE_POLICY_NAME]
    assert inline_policy(function) == iam.policy(function, expected_arns())


# the config file -----------------------------------------------------------------------------------
def test_config_gets_the_roles_and_secret_names_of_the_stage_and_keeps_everything_else(
    ensure: Any, project: Path
) -> None:
    path = project / ".chalice" / "config.json"
    before = json.loads(path.read_text())

    assert ensure().code == 0

    expected = copy.deepcopy(before)
    dev = expected["stages"][STAGE]
    dev["environment_variables"].update(
        {"ASYNCGATE_ADMIN_TOKEN_SECRET": ADMIN_SECRET, "ASYNCGATE_PROVIDER_KEYS_SECRET": KEYS_SECRET}
    )
    for function, arn in role_arns().items():
        dev.setdefault("lambda_functions", {}).setdefault(function, {})["iam_role_arn"] = arn
    assert path.read_text() == json.dumps(expected, indent=2) + "\n"


def test_chalice_reads_the_written_config_as_each_functions_role_and_environment(ensure: Any, project: Path) -> None:
    assert ensure().code == 0

    config = CLIFactory(str(project)).create_config_obj(chalice_stage_name=STAGE)
    for function, arn in role_arns().items():
        scoped = config.scope(STAGE, function)
        assert scoped.iam_role_arn == arn
        assert scoped.environment_variables["ASYNCGATE_ADMIN_TOKEN_SECRET"] == ADMIN_SECRET
        assert scoped.environment_variables["ASYNCGATE_PROVIDER_KEYS_SECRET"] == KEYS_SECRET
        assert scoped.environment_variables["ASYNCGATE_JOBS_TABLE"] == dev_names()["ASYNCGATE_JOBS_TABLE"]


# running it again ------------------------------------------------------------------------------------
def test_second_run_changes_nothing(ensure: Any, project: Path) -> None:
    path = project / ".chalice" / "config.json"
    assert ensure().code == 0
    first, config = state(), path.read_text()

    again = ensure()

    assert again.code == 0
    assert state() == first
    assert path.read_text() == config
    assert "already up to date" in again.out


def test_a_provider_key_map_filled_in_by_hand_survives_a_rerun(ensure: Any) -> None:
    assert ensure().code == 0
    client("secretsmanager").put_secret_value(SecretId=KEYS_SECRET, SecretString='{"openai": "sk-kept"}')

    assert ensure().code == 0

    assert client("secretsmanager").get_secret_value(SecretId=KEYS_SECRET)["SecretString"] == '{"openai": "sk-kept"}'


def test_summary_names_the_next_command_and_how_to_read_the_token_but_never_the_token(ensure: Any) -> None:
    first, second = ensure(), ensure()

    token = admin_token()
    for result in (first, second):
        assert token not in result.out + result.err
        assert f"deploy --stage {STAGE}" in result.out
        assert f"get-secret-value --region us-east-1 --secret-id {ADMIN_SECRET}" in result.out


def test_unknown_stage_is_refused_before_anything_is_created(ensure: Any, project: Path) -> None:
    before = (project / ".chalice" / "config.json").read_text()

    result = ensure("staging")

    assert result.code == 2
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
    assert client("dynamodb").list_tables()["TableNames"] == []
    assert (project / ".chalice" / "config.json").read_text() == before


# the tables' retries, with DynamoDB's real answers stubbed -------------------------------------------
def test_point_in_time_recovery_is_retried_while_a_new_table_is_not_ready_for_it() -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    sleeps: list[float] = []
    with Stubber(dynamodb) as stub:
        stub.add_client_error("update_continuous_backups", "ContinuousBackupsUnavailableException")
        stub.add_response(
            "update_continuous_backups", {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED"}}
        )
        infra.enable_point_in_time_recovery(dynamodb, "jobs", sleep=sleeps.append)
        stub.assert_no_pending_responses()

    assert sleeps == [infra.BACKUPS_RETRY_S]


def test_an_existing_table_with_ttl_on_is_not_asked_to_enable_it_again() -> None:
    """Real DynamoDB answers ``ValidationException: TimeToLive is already enabled``; moto does not."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(dynamodb) as stub:
        stub.add_client_error("create_table", "ResourceInUseException")
        stub.add_response("describe_table", {"Table": {"TableName": "jobs", "TableStatus": "ACTIVE"}})
        stub.add_response("describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED"}})
        stub.add_response(
            "update_continuous_backups", {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED"}}
        )
        infra.ensure_table(dynamodb, "jobs")
        stub.assert_no_pending_responses()


# as a command -------------------------------------------------------------------------------------------
def run_command(project: Path, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chalicelib.infra", "ensure", "--stage", STAGE, "--project-dir", str(project)],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_command_provisions_a_moto_server_and_keeps_the_token_out_of_its_output(project: Path) -> None:
    embedded = EmbeddedAws()
    endpoint = embedded.start()
    try:
        environment = without_aws(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        done = run_command(project, environment)
        secrets = boto3.client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        token = secrets.get_secret_value(SecretId=ADMIN_SECRET)["SecretString"]
    finally:
        embedded.stop()

    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    assert "ASYNCGATE_ADMIN_TOKEN_SECRET" in (project / ".chalice" / "config.json").read_text()


def test_command_without_credentials_exits_2_with_one_line_and_changes_nothing(project: Path, tmp_path: Path) -> None:
    before = (project / ".chalice" / "config.json").read_text()
    environment = no_credentials_environment(tmp_path)

    done = run_command(project, environment)

    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "credentials" in done.stderr and "Traceback" not in done.stderr
    assert (project / ".chalice" / "config.json").read_text() == before


# after `chalice deploy`: partial batch responses on the queue triggers ------------------------
def deployed_function(name: str, queue: str) -> str:
    """A function with a queue trigger as ``chalice deploy`` leaves it (no partial batch responses)."""
    role = client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as package:
        package.writestr("app.py", "def handler(event, context):\n    return {}\n")
    client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", Code={"ZipFile": archive.getvalue()}
    )
    sqs = client("sqs")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mapping = client("lambda").create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=name, BatchSize=10)
    return str(mapping["UUID"])


def response_types(uuid: str) -> list[str]:
    return list(client("lambda").get_event_source_mapping(UUID=uuid).get("FunctionResponseTypes", []))


def test_triggers_turns_on_partial_batch_responses_for_both_queue_triggers_once(
    project: Path, moto: None, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = deployed_function("asyncgate-dev-worker", "asyncgate-jobs-dev")
    dead_letters = deployed_function("asyncgate-dev-dead_letters", "asyncgate-jobs-dev-dlq")

    first = main(["triggers", "--stage", STAGE, "--project-dir", str(project)])
    first_out = capsys.readouterr().out
    second = main(["triggers", "--stage", STAGE, "--project-dir", str(project)])
    second_out = capsys.readouterr().out

    assert (first, second) == (0, 0)
    assert response_types(worker) == response_types(dead_letters) == ["ReportBatchItemFailures"]
    assert first_out.count("turned on") == 2
    assert second_out.count("already on") == 2


def test_triggers_before_chalice_deploy_says_to_deploy_first(
    project: Path, moto: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["triggers", "--stage", STAGE, "--project-dir", str(project)])

    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("error: function asyncgate-dev-worker does not exist")
    assert "chalice deploy --stage dev" in error and "Traceback" not in error
