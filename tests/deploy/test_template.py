"""The packaged ``dev`` stack: lint-clean, the resources the code expects, wiring, IAM, timeouts and zip.

The template is compared with what the code assumes (``infra``, ``iam``, ``Settings``, the
boto3 client config), so drift between ``deploy/resources.json`` and the code fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib import aws, iam, infra
from chalicelib.config import ENV_NAMES, Settings
from chalicelib.items import CALLER_INDEX
from chalicelib.key_store import KEY_ID_INDEX
from chalicelib.providers.registry import SPECS
from deploy.package import DEV_ONLY
from tests.deploy.conftest import Packaged
from tests.support.aws import PROJECT_DIR, fake_aws_environment

FUNCTIONS = {"api_handler": "APIHandler", "worker": "Worker", "dead_letters": "DeadLetters"}
WIRED = {
    "ASYNCGATE_JOBS_TABLE": ("JobsTable", "AWS::DynamoDB::Table"),
    "ASYNCGATE_KEYS_TABLE": ("KeysTable", "AWS::DynamoDB::Table"),
    "ASYNCGATE_JOBS_QUEUE": ("JobsQueue", "AWS::SQS::Queue"),
    "ASYNCGATE_BUCKET": ("PayloadBucket", "AWS::S3::Bucket"),
    "ASYNCGATE_ADMIN_TOKEN_SECRET": ("AdminTokenSecret", "AWS::SecretsManager::Secret"),
    "ASYNCGATE_PROVIDER_KEYS_SECRET": ("ProviderKeysSecret", "AWS::SecretsManager::Secret"),
}
STANDARD_RETRIES = 2  # botocore's standard retry mode: 3 attempts unless configured
MAX_BACKOFF_S = 20
IAM_TYPES = ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return found


def arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def sqs_event_source(template: dict[str, Any], function: str) -> dict[str, Any]:
    events = properties(template, FUNCTIONS[function])["Events"].values()
    sources: list[dict[str, Any]] = [event["Properties"] for event in events if event["Type"] == "SQS"]
    assert len(sources) == 1
    return sources[0]


def test_packaged_template_passes_cfn_lint(packaged: Packaged) -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    linted = subprocess.run([str(cfn_lint), str(packaged.out / "sam.json")], capture_output=True, text=True)

    assert linted.returncode == 0, linted.stdout + linted.stderr


# tables --------------------------------------------------------------------------------------
def table_shape(description: dict[str, Any]) -> dict[str, Any]:
    """Attributes, key and indexes of a table, from its template properties or from DescribeTable."""

    def projection(index: dict[str, Any]) -> dict[str, Any]:
        found = dict(index["Projection"])
        if "NonKeyAttributes" in found:
            found["NonKeyAttributes"] = sorted(found["NonKeyAttributes"])
        return found

    return {
        "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in description["AttributeDefinitions"]),
        "key": description["KeySchema"],
        "indexes": {
            index["IndexName"]: (index["KeySchema"], projection(index))
            for index in description.get("GlobalSecondaryIndexes", [])
        },
    }


@pytest.fixture
def moto_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake_aws_environment(monkeypatch)
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


@pytest.mark.parametrize(
    ("logical_id", "ensure", "index"),
    [("JobsTable", infra.ensure_table, CALLER_INDEX), ("KeysTable", infra.ensure_keys_table, KEY_ID_INDEX)],
)
def test_table_has_the_key_indexes_and_ttl_the_local_stack_creates(
    template: dict[str, Any], moto_dynamodb: Any, logical_id: str, ensure: Callable[[Any, str], None], index: str
) -> None:
    ensure(moto_dynamodb, "created")
    created = moto_dynamodb.describe_table(TableName="created")["Table"]
    ttl = moto_dynamodb.describe_time_to_live(TableName="created")["TimeToLiveDescription"]
    declared = properties(template, logical_id)

    assert table_shape(declared) == table_shape(created)
    assert index in table_shape(declared)["indexes"]
    assert declared["BillingMode"] == created["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert declared["TimeToLiveSpecification"] == {"AttributeName": ttl["AttributeName"], "Enabled": True}


@pytest.mark.parametrize("logical_id", ["JobsTable", "KeysTable"])
def test_table_is_encrypted_and_recoverable_to_a_point_in_time(template: dict[str, Any], logical_id: str) -> None:
    declared = properties(template, logical_id)

    assert declared["SSESpecification"]["SSEEnabled"] is True
    assert declared["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


# queues and event sources --------------------------------------------------------------------
def test_jobs_queue_redrives_to_the_dlq_only_after_every_attempt(template: dict[str, Any]) -> None:
    redrive = properties(template, "JobsQueue")["RedrivePolicy"]

    assert redrive["deadLetterTargetArn"] == arn("JobsDeadLetterQueue")
    assert redrive["maxReceiveCount"] == infra.max_receive_count(Settings())
    assert redrive["maxReceiveCount"] > Settings().max_attempts


def test_queues_keep_messages_as_long_as_the_local_stack_and_the_dlq_outlives_the_queue(
    template: dict[str, Any],
) -> None:
    queue = properties(template, "JobsQueue")
    dead_letters = properties(template, "JobsDeadLetterQueue")

    assert queue["MessageRetentionPeriod"] == infra.QUEUE_RETENTION_S
    assert dead_letters["MessageRetentionPeriod"] == infra.DLQ_RETENTION_S
    assert dead_letters["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


@pytest.mark.parametrize(("function", "queue"), [("worker", "JobsQueue"), ("dead_letters", "JobsDeadLetterQueue")])
def test_sqs_consumer_reads_its_queue_and_reports_failed_messages_only(
    template: dict[str, Any], function: str, queue: str
) -> None:
    source = sqs_event_source(template, function)

    assert source["Queue"] == arn(queue)
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_api_handler_consumes_no_queue(template: dict[str, Any]) -> None:
    assert "Events" not in properties(template, "APIHandler")


# bucket and secrets --------------------------------------------------------------------------
def test_bucket_is_encrypted_and_blocks_all_public_access(template: dict[str, Any]) -> None:
    bucket = properties(template, "PayloadBucket")
    encryption = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]

    assert [rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in encryption] in (["AES256"], ["aws:kms"])
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def as_cloudformation_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """An S3 API lifecycle rule (as ``infra`` puts it) in ``AWS::S3::Bucket`` spelling."""
    translated: dict[str, Any] = {"Id": rule["ID"], "Status": rule["Status"]}
    if rule["Filter"]["Prefix"]:
        translated["Prefix"] = rule["Filter"]["Prefix"]
    if "Expiration" in rule:
        translated["ExpirationInDays"] = rule["Expiration"]["Days"]
    if "AbortIncompleteMultipartUpload" in rule:
        translated["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    return translated


def test_bucket_expires_payloads_like_the_local_stack(template: dict[str, Any]) -> None:
    declared = properties(template, "PayloadBucket")["LifecycleConfiguration"]["Rules"]

    assert declared == [as_cloudformation_rule(rule) for rule in infra.lifecycle_rules(Settings())]


def test_bucket_policy_denies_every_request_without_tls(template: dict[str, Any]) -> None:
    policies = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::S3::BucketPolicy"]
    assert [policy["Bucket"] for policy in policies] == [{"Ref": "PayloadBucket"}]

    assert {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn("PayloadBucket"), {"Fn::Sub": "${PayloadBucket.Arn}/*"}],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }.items() <= policies[0]["PolicyDocument"]["Statement"][0].items()


def test_admin_token_is_a_generated_secret_and_provider_keys_a_secret(template: dict[str, Any]) -> None:
    resources = template["Resources"]

    assert resources["AdminTokenSecret"]["Type"] == resources["ProviderKeysSecret"]["Type"]
    assert resources["AdminTokenSecret"]["Type"] == "AWS::SecretsManager::Secret"
    assert "GenerateSecretString" in properties(template, "AdminTokenSecret")
    assert "SecretString" not in properties(template, "AdminTokenSecret")


# environment ---------------------------------------------------------------------------------
@pytest.mark.parametrize("function", iam.FUNCTIONS)
def test_function_finds_the_stacks_resources_by_reference(template: dict[str, Any], function: str) -> None:
    variables = properties(template, FUNCTIONS[function])["Environment"]["Variables"]

    for name, (logical_id, resource_type) in WIRED.items():
        assert variables[name] == {"Ref": logical_id}, name
        assert template["Resources"][logical_id]["Type"] == resource_type


def test_every_variable_the_template_sets_is_read_by_the_code(template: dict[str, Any]) -> None:
    provider_variables = {name for spec in SPECS for name in spec.key_variables}
    provider_variables |= {f"{spec.name.upper()}_BASE_URL" for spec in SPECS}
    known = set(ENV_NAMES.values()) | provider_variables

    for logical_id in FUNCTIONS.values():
        variables = properties(template, logical_id)["Environment"]["Variables"]
        assert set(variables) <= known, logical_id


# IAM -----------------------------------------------------------------------------------------
def template_arns() -> iam.Arns:
    """The ARNs of the template's own resources, as CloudFormation expressions."""
    return iam.Arns(
        jobs_table=arn("JobsTable"),
        jobs_index={"Fn::Sub": iam.index_arn("${JobsTable.Arn}", CALLER_INDEX)},
        keys_table=arn("KeysTable"),
        keys_index={"Fn::Sub": iam.index_arn("${KeysTable.Arn}", KEY_ID_INDEX)},
        jobs_queue=arn("JobsQueue"),
        dead_letter_queue=arn("JobsDeadLetterQueue"),
        payload_bucket=arn("PayloadBucket"),
        payload_objects={"Fn::Sub": "${PayloadBucket.Arn}/*"},
        admin_token_secret={"Ref": "AdminTokenSecret"},
        provider_keys_secret={"Ref": "ProviderKeysSecret"},
        log_group={function: arn(f"{logical_id}LogGroup") for function, logical_id in FUNCTIONS.items()},
        bedrock_models=tuple({"Fn::Sub": a} for a in iam.bedrock_arns("${AWS::Partition}", "${AWS::AccountId}")),
    )


def role_of(template: dict[str, Any], function: str) -> str:
    role = properties(template, FUNCTIONS[function])["Role"]
    assert set(role) == {"Fn::GetAtt"} and role["Fn::GetAtt"][1] == "Arn"
    logical_id: str = role["Fn::GetAtt"][0]
    assert template["Resources"][logical_id]["Type"] == "AWS::IAM::Role"
    return logical_id


def test_each_function_runs_as_its_own_role(template: dict[str, Any]) -> None:
    roles = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    placeholder = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())["iam_role_arn"]

    assert len({role_of(template, function) for function in iam.FUNCTIONS}) == len(roles) == 3
    assert "DefaultRole" not in template["Resources"]
    assert placeholder not in json.dumps(template)


@pytest.mark.parametrize("function", iam.FUNCTIONS)
def test_role_grants_exactly_the_policy_iam_py_defines(template: dict[str, Any], function: str) -> None:
    role = properties(template, role_of(template, function))

    assert role["AssumeRolePolicyDocument"] == iam.ASSUME_ROLE_POLICY
    assert [policy["PolicyDocument"] for policy in role["Policies"]] == [iam.policy(function, template_arns())]


def policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] in IAM_TYPES:
            documents = [resource["Properties"].get("PolicyDocument")]
            documents += [policy["PolicyDocument"] for policy in resource["Properties"].get("Policies", [])]
            yield from ((logical_id, document) for document in documents if document is not None)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_role_has_managed_policies_or_wildcard_grants(template: dict[str, Any]) -> None:
    kinds = {r["Type"] for r in template["Resources"].values()}
    roles = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    documents = list(policy_documents(template))

    assert "AWS::IAM::ManagedPolicy" not in kinds
    assert not [role["ManagedPolicyArns"] for role in roles if role.get("ManagedPolicyArns")]
    assert len(documents) >= 3
    for logical_id, document in documents:
        for statement in document["Statement"]:
            assert not {"NotAction", "NotResource"} & set(statement), logical_id
            assert not [action for action in as_list(statement["Action"]) if "*" in action], logical_id
            assert "*" not in as_list(statement["Resource"]), logical_id


@pytest.mark.parametrize("function", iam.FUNCTIONS)
def test_function_logs_to_the_log_group_its_role_may_write(template: dict[str, Any], function: str) -> None:
    logical_id = FUNCTIONS[function]
    function_name = properties(template, logical_id)["FunctionName"]["Fn::Sub"]

    assert properties(template, f"{logical_id}LogGroup")["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/{function_name}"}
    assert f"{logical_id}LogGroup" in template["Resources"][logical_id]["DependsOn"]


# timeouts ------------------------------------------------------------------------------------
def test_queue_visibility_covers_six_worker_timeouts_plus_the_batching_window(template: dict[str, Any]) -> None:
    worker_timeout = properties(template, "Worker")["Timeout"]
    batching_window = sqs_event_source(template, "worker").get("MaximumBatchingWindowInSeconds", 0)

    visibility_s = properties(template, "JobsQueue")["VisibilityTimeout"]

    assert visibility_s >= 6 * worker_timeout + batching_window
    assert (worker_timeout, visibility_s) == (infra.WORKER_TIMEOUT_S, infra.QUEUE_VISIBILITY_S)  # as the local stack


def test_one_provider_call_fits_in_a_worker_invocation(template: dict[str, Any]) -> None:
    settings = Settings()
    provider_call_s = settings.provider_connect_timeout_s + settings.provider_read_timeout_s

    assert provider_call_s < properties(template, "Worker")["Timeout"]


def test_lease_outlasts_the_provider_call_and_the_worker_but_not_the_queue_visibility(
    template: dict[str, Any],
) -> None:
    lease_s = Settings().lease_s

    assert lease_s >= Settings().provider_read_timeout_s
    assert lease_s >= properties(template, "Worker")["Timeout"]
    assert lease_s < properties(template, "JobsQueue")["VisibilityTimeout"]


def test_one_aws_sdk_call_with_all_its_retries_fits_in_the_api_handler_timeout(template: dict[str, Any]) -> None:
    config = aws._CLIENT_CONFIG
    retries = config.retries or {}
    # botocore: ``total_max_attempts`` counts the first try, ``max_attempts`` only the retries
    attempts = retries.get("total_max_attempts", retries.get("max_attempts", STANDARD_RETRIES) + 1)
    longest_backoff_s = sum(min(2**retry, MAX_BACKOFF_S) for retry in range(attempts - 1))  # throttled, no Retry-After
    worst_case_s = attempts * (config.connect_timeout + config.read_timeout) + longest_backoff_s

    assert worst_case_s < properties(template, "APIHandler")["Timeout"]


# deployment zip ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zipped_names(packaged: Packaged) -> list[str]:
    with zipfile.ZipFile(packaged.out / "deployment.zip") as archive:
        return archive.namelist()


def test_deployment_zip_leaves_the_aws_sdk_to_the_lambda_runtime(zipped_names: list[str]) -> None:
    distributions = {name.split("/")[0].split("-")[0].lower() for name in zipped_names}

    assert not distributions & {"boto3", "botocore", "s3transfer"}


def test_deployment_zip_has_no_compiled_extensions(zipped_names: list[str]) -> None:
    assert [name for name in zipped_names if name.endswith((".so", ".pyd"))] == []


def test_deployment_zip_holds_the_app_chalicelib_and_the_openapi_document(zipped_names: list[str]) -> None:
    sources = [*(PROJECT_DIR / "chalicelib").rglob("*.py"), PROJECT_DIR / "chalicelib" / "openapi.json"]
    expected = {path.relative_to(PROJECT_DIR).as_posix() for path in sources} - set(DEV_ONLY)

    assert "app.py" in zipped_names
    assert expected <= set(zipped_names)
