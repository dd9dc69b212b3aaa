"""Conventions: naming (hapg-<suffix>-<what>), the seven tags, deletion policies, layout."""

import re

import cfnlint.data.AdditionalSpecs
import pytest
from cfnlint.helpers import load_resource
from template_helpers import PREFIX, REQUIRED_TAGS, TEMPLATE, resources, sub, tag_dict, tag_property

EXPECTED_NAMES = [
    ("HealthCheckerFunction", "FunctionName", f"{PREFIX}-health-checker"),
    ("HealthCheckSchedule", "Name", f"{PREFIX}-health-check"),
    ("AuroraCluster", "DBClusterIdentifier", f"{PREFIX}-cluster"),
    ("WriterInstance", "DBInstanceIdentifier", f"{PREFIX}-writer"),
    ("ReaderInstance1", "DBInstanceIdentifier", f"{PREFIX}-reader-1"),
    ("ReaderInstance2", "DBInstanceIdentifier", f"{PREFIX}-reader-2"),
    ("AlertTopic", "TopicName", f"{PREFIX}-alerts"),
    ("DbLayer", "LayerName", f"{PREFIX}-db-layer"),
    ("FunctionDeadLetterQueue", "QueueName", f"{PREFIX}-dlq"),
    ("HealthCheckerLogGroup", "LogGroupName", f"/aws/lambda/{PREFIX}-health-checker"),
    ("FlowLogGroup", "LogGroupName", f"/aws/vpc/{PREFIX}-flow-logs"),
    ("PostgresLogGroup", "LogGroupName", f"/aws/rds/cluster/{PREFIX}-cluster/postgresql"),
    ("MasterSecret", "Name", f"{PREFIX}/db/master"),
    ("DbSubnetGroup", "DBSubnetGroupName", f"{PREFIX}-db-subnets"),
    ("ClusterParameterGroup", "DBClusterParameterGroupName", f"{PREFIX}-cluster-pg15"),
    ("InstanceParameterGroup", "DBParameterGroupName", f"{PREFIX}-instance-pg15"),
    ("LambdaSecurityGroup", "GroupName", f"{PREFIX}-lambda"),
    ("DbSecurityGroup", "GroupName", f"{PREFIX}-db"),
    ("EndpointSecurityGroup", "GroupName", f"{PREFIX}-endpoints"),
    ("AuroraKeyAlias", "AliasName", f"alias/{PREFIX}-aurora"),
    ("PerformanceInsightsKeyAlias", "AliasName", f"alias/{PREFIX}-performance-insights"),
    ("SecretsKeyAlias", "AliasName", f"alias/{PREFIX}-secrets"),
    ("SnsKeyAlias", "AliasName", f"alias/{PREFIX}-sns"),
    ("LogsKeyAlias", "AliasName", f"alias/{PREFIX}-logs"),
    ("FunctionKeyAlias", "AliasName", f"alias/{PREFIX}-lambda"),
    ("StateKeyAlias", "AliasName", f"alias/{PREFIX}-state"),
    ("StateTable", "TableName", f"{PREFIX}-state"),
    ("FailoverCoordinatorFunction", "FunctionName", f"{PREFIX}-failover-coordinator"),
    ("ConnectionDrainerFunction", "FunctionName", f"{PREFIX}-connection-drainer"),
    ("FailoverCoordinatorLogGroup", "LogGroupName", f"/aws/lambda/{PREFIX}-failover-coordinator"),
    ("ConnectionDrainerLogGroup", "LogGroupName", f"/aws/lambda/{PREFIX}-connection-drainer"),
    ("FailoverStateMachine", "Name", f"{PREFIX}-failover"),
    ("FailoverStateMachineLogGroup", "LogGroupName", f"/aws/vendedlogs/states/{PREFIX}-failover"),
    ("FailoverEventRule", "Name", f"{PREFIX}-rds-failover"),
    ("FailoverEventDeadLetterQueue", "QueueName", f"{PREFIX}-failover-events-dlq"),
]

# Every property that names something, and the prefixes AWS forces in front of our name.
NAME_PROPERTIES = {
    "FunctionName",
    "LayerName",
    "Name",
    "TopicName",
    "QueueName",
    "LogGroupName",
    "AliasName",
    "GroupName",
    "DBClusterIdentifier",
    "DBInstanceIdentifier",
    "DBSubnetGroupName",
    "DBClusterParameterGroupName",
    "DBParameterGroupName",
    "TableName",
    "StateMachineName",
    "AlarmName",
    "DashboardName",
}
NAME_PATTERN = re.compile(
    r"^(alias/|/aws/lambda/|/aws/vpc/|/aws/rds/cluster/|/aws/rds/proxy/|/aws/vendedlogs/(states|fis)/)?"
    r"hapg-\$\{EnvironmentSuffix\}([-/]|$)"  # bare: the scheduler group that holds this stack's schedules
)


@pytest.mark.parametrize(("logical_id", "prop", "name"), EXPECTED_NAMES)
def test_expected_names(sam, logical_id, prop, name):
    assert sam["Resources"][logical_id]["Properties"][prop] == sub(name)


def test_every_named_resource_uses_the_prefix(sam):
    checked = 0
    for logical_id, res in sam["Resources"].items():
        for prop in NAME_PROPERTIES & set(res.get("Properties", {})):
            value = res["Properties"][prop]
            if isinstance(value, dict) and ("Ref" in value or "Fn::GetAtt" in value):
                continue  # refers to another resource (Permission.FunctionName, FlowLog.LogGroupName, ...)
            assert isinstance(value, dict), f"{logical_id}.{prop} = {value!r}: must be a !Sub of the prefix"
            assert "Fn::Sub" in value, f"{logical_id}.{prop}"
            assert NAME_PATTERN.match(value["Fn::Sub"]), f"{logical_id}.{prop} = {value}"
            checked += 1
    assert checked >= len(EXPECTED_NAMES)


def test_iam_is_unnamed_so_capability_iam_suffices(cfn):
    for logical_id, res in cfn["Resources"].items():
        p = res.get("Properties", {})
        assert "RoleName" not in p, logical_id
        assert "ManagedPolicyName" not in p, logical_id


def test_every_taggable_resource_has_the_seven_tags(cfn):
    checked_types = set()
    for logical_id, res in cfn["Resources"].items():
        prop = tag_property(res["Type"])
        if prop is None:
            continue
        tags = tag_dict(res.get("Properties", {}).get(prop))
        for key, value in REQUIRED_TAGS.items():
            assert tags.get(key) == value, f"{logical_id} ({res['Type']}) tag {key}: {tags.get(key)!r}"
        checked_types.add(res["Type"])
    # Guard against a vacuous pass (e.g. a schema lookup that stops recognising types).
    assert {
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::SecretsManager::Secret",
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::RouteTable",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::VPCEndpoint",
        "AWS::EC2::FlowLog",
        "AWS::RDS::DBSubnetGroup",
        "AWS::RDS::DBClusterParameterGroup",
        "AWS::RDS::DBParameterGroup",
        "AWS::RDS::DBCluster",
        "AWS::RDS::DBInstance",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::Events::Rule",
        "AWS::DynamoDB::Table",
        "AWS::StepFunctions::StateMachine",
    } <= checked_types


def test_taggability_comes_from_the_schema():
    assert tag_property("AWS::Events::Rule") == "Tags"  # taggable today, hence the explicit rule
    assert tag_property("AWS::SSM::Parameter") == "Tags"  # map form, handled by tag_dict
    assert tag_property("AWS::KMS::Alias") is None
    assert tag_property("AWS::Lambda::Permission") is None
    assert tag_dict({"A": "1"}) == tag_dict([{"Key": "A", "Value": "1"}]) == {"A": "1"}


def test_sam_generated_roles_inherit_function_tags(cfn):
    roles = resources(cfn, "AWS::IAM::Role")
    assert "HealthCheckerFunctionRole" in roles
    assert REQUIRED_TAGS.items() <= tag_dict(roles["HealthCheckerFunctionRole"]["Properties"]["Tags"]).items()


def test_stateful_resources_declare_deletion_policies(sam):
    # cfn-lint's I3011 (informational, off by default) with the same list of stateful types.
    spec = load_resource(cfnlint.data.AdditionalSpecs, "StatefulResources.json")["ResourceTypes"]
    stateful = {t for t, d in spec.items() if not d.get("DeleteRequiresEmptyResource", False)}
    checked = 0
    for logical_id, res in sam["Resources"].items():
        if res["Type"] in stateful:
            assert res.get("DeletionPolicy") and res.get("UpdateReplacePolicy"), logical_id
            checked += 1
    assert checked >= 10
    kept = {k for k, r in sam["Resources"].items() if r.get("DeletionPolicy") in ("Retain", "Snapshot")}
    # The cluster (final snapshot), the failover history (audit trail), and the keys they need.
    assert kept == {"AuroraCluster", "AuroraKey", "StateTable", "StateKey"}


def test_sections_in_order():
    text = TEMPLATE.read_text()
    headers = re.findall(r"^\s*# ---- (\w+) -+$", text, flags=re.MULTILINE)
    expected = [
        "Parameters",
        "Mappings",
        "Conditions",
        "Globals",
        "Network",
        "Encryption",
        "Database",
        "Layer",
        "Functions",
        "Alerting",
        "Failover",
        "Outputs",
    ]
    assert [h for h in headers if h in expected] == expected
