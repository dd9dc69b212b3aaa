"""Customer-managed KMS keys: one per purpose, rotated, aliased, used where they should be."""

import pytest
from template_helpers import PREFIX, getatt, props, ref, resources, statements, sub

KEYS = {  # logical id -> alias purpose
    "AuroraKey": "aurora",
    "PerformanceInsightsKey": "performance-insights",
    "SecretsKey": "secrets",
    "SnsKey": "sns",
    "LogsKey": "logs",
    "FunctionKey": "lambda",
    "StateKey": "state",
}
ROOT = {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")}


def test_one_key_per_purpose(cfn):
    assert set(resources(cfn, "AWS::KMS::Key")) == set(KEYS)


@pytest.mark.parametrize(("key_id", "purpose"), KEYS.items())
def test_key_is_rotated_and_aliased(cfn, key_id, purpose):
    assert props(cfn, key_id)["EnableKeyRotation"] is True
    aliases = [
        a["Properties"]
        for a in resources(cfn, "AWS::KMS::Alias").values()
        if a["Properties"]["TargetKeyId"] == ref(key_id)
    ]
    assert aliases == [{"AliasName": sub(f"alias/{PREFIX}-{purpose}"), "TargetKeyId": ref(key_id)}]


@pytest.mark.parametrize("key_id", KEYS)
def test_key_policy_root_admin_and_no_wildcard_principal(cfn, key_id):
    stmts = statements(props(cfn, key_id)["KeyPolicy"])
    admin = [s for s in stmts if s.get("Principal") == ROOT]
    assert len(admin) == 1
    assert admin[0]["Effect"] == "Allow"
    assert admin[0]["Action"] == "kms:*"
    for s in stmts:
        principal = s["Principal"]
        assert principal != "*" and principal.get("AWS") != "*", f"{key_id}: {s}"
        if s is not admin[0]:
            assert "kms:*" not in s["Action"], f"{key_id}: kms:* only for the account root"
            assert "Service" in principal, f"{key_id}: non-root statements are for service principals"


@pytest.mark.parametrize("key_id", ["AuroraKey", "PerformanceInsightsKey", "SecretsKey", "StateKey"])
def test_keys_used_through_iam_trust_only_the_account(cfn, key_id):
    assert [s["Principal"] for s in statements(props(cfn, key_id)["KeyPolicy"])] == [ROOT]


def test_function_key_trusts_eventbridge_for_the_failover_rule_only(cfn):
    # EventBridge writes the failover-event DLQ as itself; nothing else uses the key outside IAM.
    stmts = statements(props(cfn, "FunctionKey")["KeyPolicy"])
    assert [s["Principal"] for s in stmts] == [ROOT, {"Service": "events.amazonaws.com"}]
    events = stmts[1]
    assert sorted(events["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    rule_name = props(cfn, "FailoverEventRule")["Name"]["Fn::Sub"]
    assert events["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        "ArnEquals": {
            "aws:SourceArn": sub(
                f"arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/{rule_name}"
            )
        },
    }


def test_logs_key_trusts_regional_logs_for_this_account_only(cfn):
    stmts = [s for s in statements(props(cfn, "LogsKey")["KeyPolicy"]) if "Service" in s["Principal"]]
    assert len(stmts) == 1
    (s,) = stmts
    assert s["Principal"]["Service"] == sub("logs.${AWS::Region}.amazonaws.com")
    assert {"kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"} <= set(s["Action"])
    assert s["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == sub(
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"
    )


def test_sns_key_trusts_the_alert_publishers(cfn):
    stmts = [s for s in statements(props(cfn, "SnsKey")["KeyPolicy"]) if "Service" in s["Principal"]]
    assert len(stmts) == 1
    assert sorted(stmts[0]["Principal"]["Service"]) == [
        "cloudwatch.amazonaws.com",
        "events.amazonaws.com",
        "states.amazonaws.com",
    ]
    assert sorted(stmts[0]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_aurora_key_outlives_the_stack(cfn):
    # The final snapshot taken on stack deletion is encrypted with it.
    key = cfn["Resources"]["AuroraKey"]
    assert key["DeletionPolicy"] == "Retain"
    assert key["UpdateReplacePolicy"] == "Retain"


def test_state_key_outlives_the_stack_with_its_table(cfn):
    # The state table (failover history) is retained, and unreadable without its key.
    for logical_id in ("StateKey", "StateTable"):
        res = cfn["Resources"][logical_id]
        assert (res["DeletionPolicy"], res["UpdateReplacePolicy"]) == ("Retain", "Retain"), logical_id


def test_each_data_store_uses_its_key(cfn):
    assert props(cfn, "AuroraCluster")["StorageEncrypted"] is True
    assert props(cfn, "AuroraCluster")["KmsKeyId"] == getatt("AuroraKey", "Arn")
    for instance in resources(cfn, "AWS::RDS::DBInstance"):
        assert props(cfn, instance)["PerformanceInsightsKMSKeyId"] == getatt("PerformanceInsightsKey", "Arn")
    assert props(cfn, "MasterSecret")["KmsKeyId"] == getatt("SecretsKey", "Arn")
    assert props(cfn, "AlertTopic")["KmsMasterKeyId"] == getatt("SnsKey", "Arn")
    assert props(cfn, "FunctionDeadLetterQueue")["KmsMasterKeyId"] == getatt("FunctionKey", "Arn")
    assert props(cfn, "FailoverEventDeadLetterQueue")["KmsMasterKeyId"] == getatt("FunctionKey", "Arn")
    assert props(cfn, "StateTable")["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": getatt("StateKey", "Arn"),
    }
    for fn in resources(cfn, "AWS::Lambda::Function"):
        assert props(cfn, fn)["KmsKeyArn"] == getatt("FunctionKey", "Arn"), fn


def test_every_log_group_is_encrypted_and_expires(cfn):
    groups = resources(cfn, "AWS::Logs::LogGroup")
    assert len(groups) >= 3
    for logical_id, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == getatt("LogsKey", "Arn"), logical_id
        assert group["Properties"]["RetentionInDays"] >= 365, logical_id  # a year of audit evidence


def test_every_queue_and_topic_is_encrypted(cfn):
    for logical_id in resources(cfn, "AWS::SQS::Queue"):
        assert "KmsMasterKeyId" in props(cfn, logical_id), logical_id
    for logical_id in resources(cfn, "AWS::SNS::Topic"):
        assert "KmsMasterKeyId" in props(cfn, logical_id), logical_id
