"""Parameters and conditions: names, defaults and constraints."""

import json
import re
from pathlib import Path

import cfnlint
import pytest

RDS_CLUSTER_DATA = Path(cfnlint.__file__).parent / "data/schemas/extensions/aws_rds_dbcluster"


def aurora_pg_versions(filename: str, where: str) -> set[str]:
    """EngineVersion enum of the aurora-postgresql branch of a cfn-lint RDS data file.

    engine_version.json lists valid versions under `then`; engine_version_deprecated.json lists
    the deprecated ones (W3690) under `if`.
    """
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            cond = node.get("if", {}).get("properties", {})
            if cond.get("Engine", {}).get("const") == "aurora-postgresql":
                found.update(str(v) for v in node[where]["properties"]["EngineVersion"]["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads((RDS_CLUSTER_DATA / filename).read_text()))
    assert found, f"no aurora-postgresql data in {filename}: cfn-lint data layout changed"
    return found


def test_parameter_set(sam):
    params = set(sam["Parameters"])
    required = {
        "EnvironmentSuffix",
        "Repository",
        "CommitAuthor",
        "PRNumber",
        "Team",
        "AlertEmail",
        "EngineVersion",
        "InstanceClass",
        "ReaderCount",
        "DeletionProtection",
    }
    assert required <= params
    # The region comes from AWS::Region; environment and project are not parameters.
    assert not params & {"ProjectName", "Environment", "Region"}


def test_environment_suffix(sam):
    p = sam["Parameters"]["EnvironmentSuffix"]
    assert p["Default"] == "dev"
    assert p["ConstraintDescription"]
    pattern = re.compile(p["AllowedPattern"])

    def allowed(value: str) -> bool:
        return bool(pattern.fullmatch(value)) and len(value) <= int(p["MaxLength"])

    for good in ("dev", "prod", "pr-123", "a", "0" * 20, "pr-12-b"):
        assert allowed(good), good
    for bad in ("", "Dev", "-dev", "dev-", "dev--1", "dev_1", "a" * 21, "dev.1"):
        assert not allowed(bad), bad


@pytest.mark.parametrize("name", ["Repository", "CommitAuthor", "PRNumber", "Team"])
def test_tag_parameters_default_to_unknown(sam, name):
    assert sam["Parameters"][name]["Type"] == "String"
    assert sam["Parameters"][name]["Default"] == "unknown"


def test_alert_email_is_optional(sam):
    p = sam["Parameters"]["AlertEmail"]
    assert p["Default"] == ""
    pattern = re.compile(p["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("ops-oncall@example.com")
    assert not pattern.fullmatch("not-an-email")
    assert sam["Conditions"]["HasAlertEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]}


def test_engine_version_default_creates_new_clusters(sam):
    p = sam["Parameters"]["EngineVersion"]
    default = p["Default"]
    pattern = re.compile(p["AllowedPattern"])
    assert pattern.fullmatch(default)
    for bad in ("15", "16.1", "14.10", "15.x"):
        assert not pattern.fullmatch(bad), bad
    # cfn-lint does not follow the Ref to the default, so check the default against its data here.
    assert default in aurora_pg_versions("engine_version.json", "then")
    assert default not in aurora_pg_versions("engine_version_deprecated.json", "if"), "W3690: deprecated"


def test_instance_class(sam):
    p = sam["Parameters"]["InstanceClass"]
    assert p["Default"] == "db.r6g.large"
    pattern = re.compile(p["AllowedPattern"])
    assert pattern.fullmatch("db.r6g.xlarge")
    assert not pattern.fullmatch("r6g.large")


def test_reader_count(sam):
    p = sam["Parameters"]["ReaderCount"]
    assert [int(v) for v in p["AllowedValues"]] == [1, 2]
    assert int(p["Default"]) == 2
    cond = sam["Conditions"]["HasSecondReader"]["Fn::Equals"]
    assert {"Ref": "ReaderCount"} in cond
    assert [int(v) for v in cond if not isinstance(v, dict)] == [2]


def test_deletion_protection(sam):
    p = sam["Parameters"]["DeletionProtection"]
    assert sorted(p["AllowedValues"]) == ["false", "true"]
    assert p["Default"] == "true"
