"""Aurora PostgreSQL: cluster, instances, parameter groups, master secret."""

import json
import re

import pytest
from hapg import names
from template_helpers import PREFIX, SUBNETS, getatt, props, ref, resources, sub


def test_subnet_group_spans_the_three_subnets(cfn):
    assert props(cfn, "DbSubnetGroup")["SubnetIds"] == SUBNETS


def test_cluster_parameter_group_forces_tls_and_logs(cfn):
    p = props(cfn, "ClusterParameterGroup")
    assert p["Family"] == "aurora-postgresql15"
    params = p["Parameters"]
    assert params["rds.force_ssl"] == "1"
    assert params["ssl_min_protocol_version"] == "TLSv1.2"
    assert params["log_connections"] == "1"
    assert params["log_disconnections"] == "1"
    assert int(params["log_min_duration_statement"]) > 0
    assert all(isinstance(v, str) for v in params.values()), "RDS parameter values are strings"


def test_instance_parameter_group(cfn):
    assert props(cfn, "InstanceParameterGroup")["Family"] == "aurora-postgresql15"


def test_parameter_group_family_matches_engine_major(sam):
    major = sam["Parameters"]["EngineVersion"]["Default"].split(".")[0]
    for logical_id in ("ClusterParameterGroup", "InstanceParameterGroup"):
        assert props(sam, logical_id)["Family"] == f"aurora-postgresql{major}"


def test_cluster(cfn):
    p = props(cfn, "AuroraCluster")
    expected = {
        "DBClusterIdentifier": sub(f"{PREFIX}-cluster"),
        "Engine": "aurora-postgresql",
        "EngineVersion": ref("EngineVersion"),
        "DatabaseName": "financialdb",
        "Port": 5432,
        "StorageEncrypted": True,
        "KmsKeyId": getatt("AuroraKey", "Arn"),
        "EnableIAMDatabaseAuthentication": True,
        "BackupRetentionPeriod": 35,
        "EnableCloudwatchLogsExports": ["postgresql"],
        "CopyTagsToSnapshot": True,
        "DeletionProtection": ref("DeletionProtection"),
        "VpcSecurityGroupIds": [ref("DbSecurityGroup")],
        "DBSubnetGroupName": ref("DbSubnetGroup"),
        "DBClusterParameterGroupName": ref("ClusterParameterGroup"),
    }
    assert {k: p.get(k) for k in expected} == expected
    assert p["DatabaseName"] == names.DB_NAME


def test_backup_and_maintenance_windows_do_not_overlap(cfn):
    p = props(cfn, "AuroraCluster")
    backup = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", p["PreferredBackupWindow"])
    maint = re.fullmatch(r"([a-z]{3}):(\d\d):(\d\d)-([a-z]{3}):(\d\d):(\d\d)", p["PreferredMaintenanceWindow"])
    assert backup and maint
    b_start, b_end = int(backup[1]) * 60 + int(backup[2]), int(backup[3]) * 60 + int(backup[4])
    m_start, m_end = int(maint[2]) * 60 + int(maint[3]), int(maint[5]) * 60 + int(maint[6])
    assert b_end - b_start >= 30  # RDS minimum
    assert b_end <= m_start or m_end <= b_start


def test_cluster_is_snapshotted_not_deleted(cfn):
    cluster = cfn["Resources"]["AuroraCluster"]
    assert cluster["DeletionPolicy"] == "Snapshot"
    assert cluster["UpdateReplacePolicy"] == "Snapshot"


def test_postgres_log_group_exists_before_the_cluster(cfn):
    assert "PostgresLogGroup" in cfn["Resources"]["AuroraCluster"]["DependsOn"]
    cluster_id = props(cfn, "AuroraCluster")["DBClusterIdentifier"]["Fn::Sub"]
    assert props(cfn, "PostgresLogGroup")["LogGroupName"] == sub(f"/aws/rds/cluster/{cluster_id}/postgresql")


def test_credentials_come_from_the_secret(cfn):
    p = props(cfn, "AuroraCluster")
    assert p["MasterUsername"] == sub("{{resolve:secretsmanager:${MasterSecret}:SecretString:username}}")
    assert p["MasterUserPassword"] == sub("{{resolve:secretsmanager:${MasterSecret}:SecretString:password}}")
    assert "ManageMasterUserPassword" not in p


def _walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), value
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def test_no_password_literal_anywhere(sam):
    found = 0
    for path, value in _walk(sam["Resources"]):
        if isinstance(path[-1], str) and path[-1].endswith("Password"):
            text = value.get("Fn::Sub") if isinstance(value, dict) else value
            assert isinstance(text, str), path
            assert text.startswith("{{resolve:secretsmanager:"), path
            found += 1
    assert found >= 1


def test_master_secret(cfn):
    p = props(cfn, "MasterSecret")
    assert p["Name"] == sub(f"{PREFIX}/db/master")
    gen = p["GenerateSecretString"]
    assert json.loads(gen["SecretStringTemplate"]) == {"username": "hapg_admin"}
    assert gen["GenerateStringKey"] == "password"
    assert gen["PasswordLength"] == 32
    assert gen["ExcludePunctuation"] is False
    assert set("\"@/\\:?#[]%' ") <= set(gen["ExcludeCharacters"])


def test_secret_is_attached_to_the_cluster(cfn):
    (attachment,) = resources(cfn, "AWS::SecretsManager::SecretTargetAttachment").values()
    assert attachment["Properties"] == {
        "SecretId": ref("MasterSecret"),
        "TargetId": ref("AuroraCluster"),
        "TargetType": "AWS::RDS::DBCluster",
    }


INSTANCES = {  # logical id -> (identifier suffix, AZ index, promotion tier, condition)
    "WriterInstance": ("writer", 0, 0, None),
    "ReaderInstance1": ("reader-1", 1, 1, None),
    "ReaderInstance2": ("reader-2", 2, 2, "HasSecondReader"),
}


def test_three_instances_at_most(cfn):
    assert set(resources(cfn, "AWS::RDS::DBInstance")) == set(INSTANCES)


@pytest.mark.parametrize("logical_id", INSTANCES)
def test_instance(cfn, logical_id):
    suffix, az, tier, condition = INSTANCES[logical_id]
    res = cfn["Resources"][logical_id]
    p = res["Properties"]
    expected = {
        "DBInstanceIdentifier": sub(f"{PREFIX}-{suffix}"),
        "DBClusterIdentifier": ref("AuroraCluster"),
        "Engine": "aurora-postgresql",
        "DBInstanceClass": ref("InstanceClass"),
        "DBParameterGroupName": ref("InstanceParameterGroup"),
        "AvailabilityZone": {"Fn::Select": [az, {"Fn::GetAZs": ""}]},
        "PromotionTier": tier,
        "PubliclyAccessible": False,
        "AutoMinorVersionUpgrade": True,
        "CACertificateIdentifier": "rds-ca-rsa2048-g1",  # in hapg/certs/rds-ca-bundle.pem (verify-full)
        "MonitoringInterval": 60,
        "MonitoringRoleArn": getatt("EnhancedMonitoringRole", "Arn"),
        "EnablePerformanceInsights": True,
        "PerformanceInsightsKMSKeyId": getatt("PerformanceInsightsKey", "Arn"),
        "PerformanceInsightsRetentionPeriod": 7,
    }
    assert {k: p.get(k) for k in expected} == expected
    assert res.get("Condition") == condition
    # Storage belongs to the cluster; instances are compute and cannot be snapshotted alone.
    assert res["DeletionPolicy"] == res["UpdateReplacePolicy"] == "Delete"
    # Instance-level settings that Aurora takes from the cluster must not be set here.
    assert not {"MasterUserPassword", "StorageEncrypted", "DBSubnetGroupName", "EngineVersion"} & set(p)


def test_writer_is_created_first(cfn):
    assert "DependsOn" not in cfn["Resources"]["WriterInstance"]
    for reader in ("ReaderInstance1", "ReaderInstance2"):
        assert "WriterInstance" in cfn["Resources"][reader]["DependsOn"]


def test_enhanced_monitoring_role(cfn):
    role = props(cfn, "EnhancedMonitoringRole")
    assert role["ManagedPolicyArns"] == [
        sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")
    ]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "monitoring.rds.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert "Policies" not in role
