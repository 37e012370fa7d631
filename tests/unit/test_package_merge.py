"""Restoring the merge template's intrinsic functions after Chalice's deep merge has fused them."""

from __future__ import annotations

from typing import Any

import pytest
from chalice.package import TemplateDeepMerger

from deploy.package import is_intrinsic, restore_intrinsics

QUEUE_ARN = {"Fn::GetAtt": ["JobsQueue", "Arn"]}
CHALICE_QUEUE_ARN = {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:asyncgate-jobs-dev"}


def worker_event(queue: Any, **extra: Any) -> dict[str, Any]:
    return {"Resources": {"Worker": {"Properties": {"Events": {"Jobs": {"Properties": {"Queue": queue, **extra}}}}}}}


def event_properties(template: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"]["Worker"]["Properties"]["Events"]["Jobs"]["Properties"]
    return properties


@pytest.mark.parametrize(
    "value",
    [
        {"Ref": "JobsTable"},
        {"Fn::GetAtt": ["JobsTable", "Arn"]},
        {"Fn::Sub": "${JobsTable.Arn}/index/by_caller"},
        {"Fn::Join": ["", ["a", "b"]]},
    ],
)
def test_single_function_objects_are_intrinsics(value: dict[str, Any]) -> None:
    assert is_intrinsic(value)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"Type": "AWS::SQS::Queue"},
        {"Fn::GetAtt": ["JobsQueue", "Arn"], "Fn::Sub": "arn:queue"},
        {"Ref": "JobsTable", "Condition": "IsProd"},
        ["Ref", "JobsTable"],
        "Ref",
        None,
    ],
)
def test_plain_values_and_fused_functions_are_not_intrinsics(value: Any) -> None:
    assert not is_intrinsic(value)


def test_chalices_deep_merge_fuses_two_functions_and_restoring_puts_ours_back_whole() -> None:
    ours = worker_event(QUEUE_ARN)
    merged = TemplateDeepMerger().merge(ours, worker_event(CHALICE_QUEUE_ARN, BatchSize=10))
    assert event_properties(merged)["Queue"] == {**CHALICE_QUEUE_ARN, **QUEUE_ARN}

    restore_intrinsics(merged, ours)

    assert event_properties(merged) == {"Queue": QUEUE_ARN, "BatchSize": 10}


def test_an_intrinsic_replaces_a_literal_chalice_value() -> None:
    ours = {"Resources": {"Worker": {"Properties": {"Role": {"Fn::GetAtt": ["WorkerRole", "Arn"]}}}}}
    merged: dict[str, Any] = {"Resources": {"Worker": {"Properties": {"Role": "arn:aws:iam::0:role/placeholder"}}}}

    restore_intrinsics(merged, ours)

    assert merged["Resources"]["Worker"]["Properties"]["Role"] == {"Fn::GetAtt": ["WorkerRole", "Arn"]}


def test_restoring_keeps_what_only_chalice_declared_and_adds_what_only_we_declared() -> None:
    ours = {"Resources": {"Worker": {"Properties": {"Environment": {"Variables": {"TABLE": {"Ref": "JobsTable"}}}}}}}
    merged = {
        "Resources": {
            "Worker": {"Properties": {"Runtime": "python3.12", "Environment": {"Variables": {"TTL": "3600"}}}},
            "RestAPI": {"Type": "AWS::Serverless::Api"},
        }
    }

    restore_intrinsics(merged, ours)

    assert merged == {
        "Resources": {
            "Worker": {
                "Properties": {
                    "Runtime": "python3.12",
                    "Environment": {"Variables": {"TTL": "3600", "TABLE": {"Ref": "JobsTable"}}},
                }
            },
            "RestAPI": {"Type": "AWS::Serverless::Api"},
        }
    }


def test_plain_values_are_left_as_the_merge_made_them() -> None:
    ours = {"Resources": {"Worker": {"Properties": {"Timeout": 300, "Tags": {"team": "llm"}}}}}
    merged = {"Resources": {"Worker": {"Properties": {"Timeout": 900, "Tags": {"team": "ml", "app": "asyncgate"}}}}}

    restore_intrinsics(merged, ours)

    assert merged == {
        "Resources": {"Worker": {"Properties": {"Timeout": 900, "Tags": {"team": "ml", "app": "asyncgate"}}}}
    }
