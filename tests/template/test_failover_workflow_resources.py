"""Failover workflow: state table, coordinator and drainer, state machine, RDS event rule, IAM."""

import ast
import json
import re

import pytest
from hapg import config, names
from template_helpers import (
    PREFIX,
    REQUIRED_TAGS,
    ROOT,
    allowed_pairs,
    getatt,
    props,
    ref,
    resources,
    role_statements,
    statements,
    sub,
    tag_dict,
)

ASL_PATH = ROOT / "statemachines/failover.asl.json"
ASL_TEXT = ASL_PATH.read_text()
ASL = json.loads(ASL_TEXT)
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")

CLUSTER_ARN = getatt("AuroraCluster", "DBClusterArn")
TABLE_ARN = getatt("StateTable", "Arn")
SECRETS_VIA = {"StringEquals": {"kms:ViaService": sub("secretsmanager.${AWS::Region}.amazonaws.com")}}
DYNAMODB_VIA = {"StringEquals": {"kms:ViaService": sub("dynamodb.${AWS::Region}.amazonaws.com")}}
SNS_VIA = {"StringEquals": {"kms:ViaService": sub("sns.${AWS::Region}.amazonaws.com")}}
FUNCTIONS = ["FailoverCoordinatorFunction", "ConnectionDrainerFunction", "HealthCheckerFunction"]


def j(value) -> str:
    return json.dumps(value, sort_keys=True)


def leading_keys(*prefixes: str) -> dict:
    """The dynamodb:LeadingKeys condition for items of this cluster under the given prefixes."""
    return {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [sub(f"{p}${{AuroraCluster}}") for p in prefixes]}}


def by_sid(stmts: list[dict]) -> dict[str, dict]:
    sids = [s.get("Sid") for s in stmts]
    assert None not in sids and len(sids) == len(set(sids)), sids
    return {s["Sid"]: s for s in stmts}


def arn_of(service: str, kind: str, name_sub: dict) -> dict:
    return sub(f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{kind}{name_sub['Fn::Sub']}")


def tasks(asl: dict = ASL) -> dict[str, dict]:
    return {k: s for k, s in asl["States"].items() if s["Type"] == "Task"}


def strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def env(sam, logical_id: str) -> dict:
    return props(sam, logical_id)["Environment"]["Variables"]


def recorded_settings(variables: dict) -> tuple[config.Settings, set[str]]:
    """config.load() over Globals + the function's variables (intrinsics replaced by plausible
    values), and the names it actually looked up."""
    stand_ins = {
        names.Env.CLUSTER_ID: "hapg-dev-cluster",
        names.Env.DB_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/master-AbCdEf",
        names.Env.DB_WRITER_ENDPOINT: "writer.example.internal",
        names.Env.DB_READER_ENDPOINT: "reader.example.internal",
        names.Env.DB_PORT: "5432",
        names.Env.ALERT_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:hapg-dev-alerts",
        names.Env.STATE_TABLE: "hapg-dev-state",
        names.Env.DB_PROXY_ENDPOINT: "hapg-dev-proxy.proxy-abcdefghijkl.us-east-1.rds.amazonaws.com",
        names.Env.APP_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/app-AbCdEf",
    }
    values = {k: (v if isinstance(v, str) else stand_ins[k]) for k, v in variables.items()}
    seen: set[str] = set()

    class Recorder(dict):
        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

    return config.load(Recorder(values)), seen


# ---- state table -------------------------------------------------------------------------------


def test_state_table_keys_are_the_ones_the_code_uses(cfn):
    p = props(cfn, "StateTable")
    assert p["TableName"] == sub(f"{PREFIX}-state")
    assert p["KeySchema"] == [
        {"AttributeName": names.Table.PK, "KeyType": "HASH"},
        {"AttributeName": names.Table.SK, "KeyType": "RANGE"},
    ]
    assert p["AttributeDefinitions"] == [
        {"AttributeName": names.Table.PK, "AttributeType": "S"},
        {"AttributeName": names.Table.SK, "AttributeType": "S"},
    ]
    assert "GlobalSecondaryIndexes" not in p and "LocalSecondaryIndexes" not in p
    assert p["TimeToLiveSpecification"] == {"AttributeName": names.Table.TTL, "Enabled": True}


def test_state_table_is_on_demand_recoverable_and_protected(cfn):
    p = props(cfn, "StateTable")
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in p
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 35}
    assert p["DeletionProtectionEnabled"] == {"Fn::If": ["IsDeletionProtected", True, False]}
    assert cfn["Conditions"]["IsDeletionProtected"] == {"Fn::Equals": [ref("DeletionProtection"), "true"]}
    # The same parameter protects the cluster.
    assert props(cfn, "AuroraCluster")["DeletionProtection"] == ref("DeletionProtection")


def test_state_table_asl_items_use_the_table_keys():
    # The lock item the state machine writes and deletes has exactly the table's key plus data.
    acquire, release = ASL["States"][names.State.ACQUIRE_LOCK], ASL["States"][names.State.RELEASE_LOCK]
    lock_key = {
        names.Table.PK: {"S": f"{names.Table.LOCK_PREFIX}${{{names.Sub.CLUSTER}}}"},
        names.Table.SK: {"S": names.Table.LOCK_SK},
    }
    assert release["Parameters"]["Key"] == lock_key
    assert lock_key.items() <= acquire["Parameters"]["Item"].items()
    assert names.Table.TTL in acquire["Parameters"]["Item"]


# ---- functions -----------------------------------------------------------------------------


def test_coordinator(sam):
    p = props(sam, "FailoverCoordinatorFunction")
    assert p["FunctionName"] == sub(f"{PREFIX}-failover-coordinator")
    assert p["CodeUri"] == "functions/failover_coordinator/"
    assert (p["Timeout"], p["MemorySize"], p["ReservedConcurrentExecutions"]) == (300, 512, 5)
    assert p["LoggingConfig"] == {"LogGroup": ref("FailoverCoordinatorLogGroup")}
    assert "EventInvokeConfig" not in p and "Events" not in p  # invoked synchronously by the state machine
    assert p["Environment"]["Variables"] == {
        names.Env.SERVICE_NAME: names.Function.FAILOVER_COORDINATOR,
        names.Env.STATE_TABLE: ref("StateTable"),
        names.Env.LOCK_TTL_S: str(names.Timing.LOCK_TTL_S),
        names.Env.PROMOTE_DEADLINE_S: str(names.Timing.PROMOTE_DEADLINE_S),
        names.Env.STATUS_POLL_WINDOW_S: str(names.Timing.STATUS_POLL_WINDOW_S),
        names.Env.STATUS_POLL_INTERVAL_S: "1",
        names.Env.MAX_LAG_MS: "1000",
        names.Env.FAILOVER_COOLDOWN_S: "300",
        names.Env.STALE_EVENT_S: "900",
    }


def test_drainer(sam):
    p = props(sam, "ConnectionDrainerFunction")
    assert p["FunctionName"] == sub(f"{PREFIX}-connection-drainer")
    assert p["CodeUri"] == "functions/connection_drainer/"
    assert (p["Timeout"], p["MemorySize"], p["ReservedConcurrentExecutions"]) == (60, 256, 2)
    assert p["LoggingConfig"] == {"LogGroup": ref("ConnectionDrainerLogGroup")}
    assert "EventInvokeConfig" not in p and "Events" not in p
    assert p["Environment"]["Variables"] == {
        names.Env.SERVICE_NAME: names.Function.CONNECTION_DRAINER,
        names.Env.DRAIN_GRACE_S: "5",
        # with RDS Proxy only: the drain then awaits in-flight work and blocks nothing
        names.Env.DB_PROXY_ENDPOINT: {"Fn::If": ["UseRdsProxy", getatt("RdsProxy", "Endpoint"), ref("AWS::NoValue")]},
    }


@pytest.mark.parametrize("logical_id", ["FailoverCoordinatorFunction", "ConnectionDrainerFunction"])
def test_function_env_is_read_by_the_config(sam, logical_id):
    variables = {**sam["Globals"]["Function"]["Environment"]["Variables"], **env(sam, logical_id)}
    settings, seen = recorded_settings(variables)
    ours = set(env(sam, logical_id)) - {names.Env.SERVICE_NAME}
    assert ours <= seen, f"set but never read: {ours - seen}"
    assert settings.cluster_id == "hapg-dev-cluster"


def test_coordinator_timings_agree_with_the_asl_and_the_function(sam):
    p = props(sam, "FailoverCoordinatorFunction")
    settings, _ = recorded_settings(
        {**sam["Globals"]["Function"]["Environment"]["Variables"], **p["Environment"]["Variables"]}
    )
    assert settings.state_table == "hapg-dev-state"
    assert ASL["TimeoutSeconds"] == names.Timing.EXECUTION_TIMEOUT_S
    # A live execution never loses its lock; a status call returns well within the function timeout.
    assert settings.lock_ttl_s == names.Timing.LOCK_TTL_S > ASL["TimeoutSeconds"]
    assert settings.promote_deadline_s == names.Timing.PROMOTE_DEADLINE_S < ASL["TimeoutSeconds"]
    assert settings.poll_window_s == names.Timing.STATUS_POLL_WINDOW_S
    assert settings.poll_window_s * 2 <= p["Timeout"]
    assert 0 < settings.poll_interval_s < settings.poll_window_s


def test_drain_grace_fits_the_drainer_timeout(sam):
    settings, _ = recorded_settings(
        {**sam["Globals"]["Function"]["Environment"]["Variables"], **env(sam, "ConnectionDrainerFunction")}
    )
    timeout = props(sam, "ConnectionDrainerFunction")["Timeout"]
    # grace + a connect timeout + the terminate round trips, with room to spare
    assert settings.drain_grace_s + settings.db.connect_timeout_s * 2 < timeout / 2


# ---- function IAM ----------------------------------------------------------------------------------


def test_coordinator_role_is_exactly_least_privilege(cfn):
    role = props(cfn, "FailoverCoordinatorFunctionRole")
    assert [m for m in role["ManagedPolicyArns"] if not isinstance(m, str)] == [ref("FunctionBaselinePolicy")]
    stmts = role_statements(cfn, "FailoverCoordinatorFunctionRole")
    db_star = sub("arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:*")
    assert allowed_pairs(stmts) == {
        ("sqs:SendMessage", j(getatt("FunctionDeadLetterQueue", "Arn"))),
        ("rds:DescribeDBClusters", j(CLUSTER_ARN)),
        ("rds:DescribeDBInstances", j(db_star)),
        ("rds:FailoverDBCluster", j(CLUSTER_ARN)),
        ("secretsmanager:GetSecretValue", j(ref("MasterSecret"))),
        ("kms:Decrypt", j(getatt("SecretsKey", "Arn"))),
        ("dynamodb:Query", j(TABLE_ARN)),
        ("dynamodb:GetItem", j(TABLE_ARN)),
        ("dynamodb:PutItem", j(TABLE_ARN)),
        ("kms:Decrypt", j(getatt("StateKey", "Arn"))),
        ("kms:GenerateDataKey", j(getatt("StateKey", "Arn"))),
    }


def test_coordinator_role_conditions(cfn):
    sids = by_sid([s for s in role_statements(cfn, "FailoverCoordinatorFunctionRole") if "Sid" in s])
    assert sids["DecryptMasterSecret"]["Condition"] == SECRETS_VIA
    assert sids["StateKey"]["Condition"] == DYNAMODB_VIA
    # It reads history, the lock owner and the maintenance flag of this cluster; it writes history only.
    t = names.Table
    assert sids["ReadState"]["Condition"] == leading_keys(t.HISTORY_PREFIX, t.LOCK_PREFIX, t.CONTROL_PREFIX)
    assert sids["WriteHistory"]["Condition"] == leading_keys(t.HISTORY_PREFIX)
    for unconditional in ("DescribeCluster", "DescribeInstances", "FailoverCluster", "ReadMasterSecret"):
        assert "Condition" not in sids[unconditional], unconditional


def test_drainer_role_reads_only_the_master_secret(cfn):
    role = props(cfn, "ConnectionDrainerFunctionRole")
    assert [m for m in role["ManagedPolicyArns"] if not isinstance(m, str)] == [ref("FunctionBaselinePolicy")]
    stmts = role_statements(cfn, "ConnectionDrainerFunctionRole")
    assert allowed_pairs(stmts) == {
        ("sqs:SendMessage", j(getatt("FunctionDeadLetterQueue", "Arn"))),
        ("secretsmanager:GetSecretValue", j(ref("MasterSecret"))),
        ("kms:Decrypt", j(getatt("SecretsKey", "Arn"))),
    }
    (kms,) = [s for s in stmts if s.get("Sid") == "DecryptMasterSecret"]
    assert kms["Condition"] == SECRETS_VIA


# ---- state machine -------------------------------------------------------------------------


def test_substitutions_cover_every_asl_placeholder(sam):
    placeholders = {m for s in strings(ASL) for m in PLACEHOLDER.findall(s)}
    assert placeholders, "no placeholders found: the ASL layout changed"
    subs = props(sam, "FailoverStateMachine")["DefinitionSubstitutions"]
    assert set(subs) == placeholders
    assert placeholders <= {v for k, v in vars(names.Sub).items() if not k.startswith("_")}
    assert subs == {
        names.Sub.COORDINATOR: getatt("FailoverCoordinatorFunction", "Arn"),
        names.Sub.DRAINER: getatt("ConnectionDrainerFunction", "Arn"),
        names.Sub.HEALTH: getatt("HealthCheckerFunction", "Arn"),
        names.Sub.TABLE: ref("StateTable"),
        names.Sub.TOPIC: ref("AlertTopic"),
        names.Sub.CLUSTER: ref("AuroraCluster"),
    }


def test_state_machine(sam):
    p = props(sam, "FailoverStateMachine")
    assert p["Name"] == sub(f"{PREFIX}-failover")
    assert p["Type"] == "STANDARD"
    assert p["DefinitionUri"] == "statemachines/failover.asl.json"
    assert "Definition" not in p and "Policies" not in p and "Events" not in p
    assert p["Role"] == getatt("FailoverStateMachineRole", "Arn")
    assert p["Tracing"] == {"Enabled": True}
    assert p["Logging"] == {
        "Level": "ALL",
        "IncludeExecutionData": True,
        "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": getatt("FailoverStateMachineLogGroup", "Arn")}}],
    }
    assert p["Tags"] == REQUIRED_TAGS


def test_state_machine_log_group(cfn):
    p = props(cfn, "FailoverStateMachineLogGroup")
    name = props(cfn, "FailoverStateMachine")["StateMachineName"]["Fn::Sub"]
    assert p["LogGroupName"] == sub(f"/aws/vendedlogs/states/{name}")
    assert p["KmsKeyId"] == getatt("LogsKey", "Arn")
    assert p["RetentionInDays"] == 365


def test_logged_execution_data_holds_no_credentials():
    # IncludeExecutionData is safe because no state passes secret material around: the functions
    # read the secret themselves and return none of it.
    assert not re.search(r"secret|password|credential|token", ASL_TEXT, flags=re.IGNORECASE)


def test_translated_state_machine_runs_the_committed_asl(cfn):
    p = props(cfn, "FailoverStateMachine")
    assert cfn["Resources"]["FailoverStateMachine"]["Type"] == "AWS::StepFunctions::StateMachine"
    separator, parts = p["DefinitionString"]["Fn::Join"]
    assert json.loads(separator.join(parts)) == ASL
    assert set(p["DefinitionSubstitutions"]) == {m for s in strings(ASL) for m in PLACEHOLDER.findall(s)}
    assert p["StateMachineType"] == "STANDARD"
    assert p["TracingConfiguration"] == {"Enabled": True}
    assert p["LoggingConfiguration"]["Level"] == "ALL"
    assert p["RoleArn"] == getatt("FailoverStateMachineRole", "Arn")
    assert REQUIRED_TAGS.items() <= tag_dict(p["Tags"]).items()


# ---- state machine IAM ---------------------------------------------------------------------


def test_state_machine_role_trusts_only_this_state_machine(cfn):
    role = props(cfn, "FailoverStateMachineRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    name = props(cfn, "FailoverStateMachine")["StateMachineName"]
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        "ArnLike": {"aws:SourceArn": arn_of("states", "stateMachine:", name)},
    }
    assert "ManagedPolicyArns" not in role
    assert [p["PolicyName"] for p in role["Policies"]] == ["failover-workflow"]


def test_state_machine_role_is_exactly_least_privilege(cfn):
    stmts = role_statements(cfn, "FailoverStateMachineRole")
    invoke = set()
    for fn in FUNCTIONS:
        invoke |= {
            ("lambda:InvokeFunction", j(getatt(fn, "Arn"))),
            ("lambda:InvokeFunction", j(sub(f"${{{fn}.Arn}}:*"))),
        }
    star = j("*")
    assert allowed_pairs(stmts) == invoke | {
        ("dynamodb:PutItem", j(TABLE_ARN)),
        ("dynamodb:DeleteItem", j(TABLE_ARN)),
        ("kms:Decrypt", j(getatt("StateKey", "Arn"))),
        ("kms:GenerateDataKey", j(getatt("StateKey", "Arn"))),
        ("sns:Publish", j(ref("AlertTopic"))),
        ("kms:Decrypt", j(getatt("SnsKey", "Arn"))),
        ("kms:GenerateDataKey", j(getatt("SnsKey", "Arn"))),
        ("logs:CreateLogDelivery", star),
        ("logs:GetLogDelivery", star),
        ("logs:UpdateLogDelivery", star),
        ("logs:DeleteLogDelivery", star),
        ("logs:ListLogDeliveries", star),
        ("logs:PutResourcePolicy", star),
        ("logs:DescribeResourcePolicies", star),
        ("logs:DescribeLogGroups", star),
        ("xray:PutTraceSegments", star),
        ("xray:PutTelemetryRecords", star),
        ("xray:GetSamplingRules", star),
        ("xray:GetSamplingTargets", star),
    }
    sids = by_sid(stmts)
    assert sids["FailoverLock"]["Condition"] == leading_keys(names.Table.LOCK_PREFIX)
    assert sids["StateKey"]["Condition"] == DYNAMODB_VIA
    assert sids["AlertKey"]["Condition"] == SNS_VIA


def test_state_machine_role_covers_exactly_what_the_asl_calls(cfn, sam):
    """Every Task of the ASL is allowed, and nothing the ASL does not call (besides logs/X-Ray/KMS)."""
    subs = props(sam, "FailoverStateMachine")["DefinitionSubstitutions"]
    integration = re.compile(r"^arn:aws:states:::(\w+):(\w+)$")
    needed = set()
    for state_id, task in tasks().items():
        resource = task["Resource"]
        if m := PLACEHOLDER.fullmatch(resource):
            needed.add(("lambda:InvokeFunction", j(subs[m[1]])))
        elif m := integration.match(resource):
            service, api = m[1], m[2]
            target = {"dynamodb": ref("StateTable"), "sns": ref("AlertTopic")}[service]
            named = task["Parameters"].get("TableName") or task["Parameters"].get("TopicArn")
            assert subs[PLACEHOLDER.fullmatch(named)[1]] == target, state_id
            needed.add((f"{service}:{api[0].upper()}{api[1:]}", j(TABLE_ARN if service == "dynamodb" else target)))
        else:
            pytest.fail(f"{state_id}: unexpected Resource {resource}")
    granted = {
        (a, r)
        for a, r in allowed_pairs(role_statements(cfn, "FailoverStateMachineRole"))
        if a.split(":")[0] not in ("kms", "logs", "xray") and not r.endswith(':*"}')
    }
    assert granted == needed


def test_state_machine_lock_condition_matches_the_asl_lock_key(cfn, sam):
    (stmt,) = [s for s in role_statements(cfn, "FailoverStateMachineRole") if s.get("Sid") == "FailoverLock"]
    (allowed,) = stmt["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
    cluster_sub = props(sam, "FailoverStateMachine")["DefinitionSubstitutions"][names.Sub.CLUSTER]
    assert cluster_sub == ref("AuroraCluster")
    for state_id in (names.State.ACQUIRE_LOCK, names.State.RELEASE_LOCK):
        params = ASL["States"][state_id]["Parameters"]
        pk = (params.get("Item") or params["Key"])[names.Table.PK]["S"]
        assert pk.replace(f"${{{names.Sub.CLUSTER}}}", "${AuroraCluster}") == allowed["Fn::Sub"], state_id


def test_state_machine_can_publish_to_the_encrypted_topic(cfn):
    # Notify publishes with the role's credentials: sns:Publish on the topic plus the topic key,
    # which the key policy delegates to IAM through its account root statement.
    topic_key = props(cfn, "AlertTopic")["KmsMasterKeyId"]
    pairs = allowed_pairs(role_statements(cfn, "FailoverStateMachineRole"))
    assert {
        ("sns:Publish", j(ref("AlertTopic"))),
        ("kms:GenerateDataKey", j(topic_key)),
        ("kms:Decrypt", j(topic_key)),
    } <= pairs
    root = sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
    assert any(
        s["Principal"] == {"AWS": root} and s["Action"] == "kms:*"
        for s in statements(props(cfn, "SnsKey")["KeyPolicy"])
    )


# ---- RDS failover events ---------------------------------------------------------------------


def test_event_rule_matches_this_clusters_failover_events(cfn):
    rule = props(cfn, "FailoverEventRule")
    assert rule["Name"] == sub(f"{PREFIX}-rds-failover")
    assert rule["State"] == "ENABLED"
    assert rule["Description"]
    assert rule["EventPattern"] == {
        "source": [names.RdsEvent.SOURCE],
        "detail-type": [names.RdsEvent.DETAIL_TYPE],
        "resources": [CLUSTER_ARN],
        "detail": {"EventID": list(names.RdsEvent.FAILOVER_IDS)},
    }
    assert "ScheduleExpression" not in rule and "EventBusName" not in rule


def test_event_rule_target(cfn, sam):
    (target,) = props(cfn, "FailoverEventRule")["Targets"]
    assert target["Arn"] == ref("FailoverStateMachine")
    assert target["RoleArn"] == getatt("FailoverEventRuleRole", "Arn")
    # The raw event is the execution input: hapg.triggers parses it as such.
    assert not {"Input", "InputPath", "InputTransformer"} & set(target)
    assert target["DeadLetterConfig"] == {"Arn": getatt("FailoverEventDeadLetterQueue", "Arn")}
    stale_s = int(env(sam, "FailoverCoordinatorFunction")[names.Env.STALE_EVENT_S])
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": stale_s, "MaximumRetryAttempts": 10}


def test_event_rule_role_may_only_start_the_workflow(cfn):
    role = props(cfn, "FailoverEventRuleRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        "ArnEquals": {"aws:SourceArn": arn_of("events", "rule/", props(cfn, "FailoverEventRule")["Name"])},
    }
    assert "ManagedPolicyArns" not in role
    assert allowed_pairs(role_statements(cfn, "FailoverEventRuleRole")) == {
        ("states:StartExecution", j(ref("FailoverStateMachine")))
    }


def test_event_dead_letter_queue_admits_only_the_rule(cfn):
    q = props(cfn, "FailoverEventDeadLetterQueue")
    assert q["QueueName"] == sub(f"{PREFIX}-failover-events-dlq")
    assert q["KmsMasterKeyId"] == getatt("FunctionKey", "Arn")
    assert q["MessageRetentionPeriod"] == 1209600
    (policy,) = [
        p["Properties"]
        for p in resources(cfn, "AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [ref("FailoverEventDeadLetterQueue")]
    ]
    allows = [s for s in statements(policy["PolicyDocument"]) if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "FailoverEventRule",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": getatt("FailoverEventDeadLetterQueue", "Arn"),
            "Condition": {"ArnEquals": {"aws:SourceArn": getatt("FailoverEventRule", "Arn")}},
        }
    ]


def test_spelled_out_arns_name_the_real_resources(cfn):
    """Cycle-breaking ARNs built from names must track the resources' Name properties."""
    rule_arn = arn_of("events", "rule/", props(cfn, "FailoverEventRule")["Name"])
    machine_arn = arn_of("states", "stateMachine:", props(cfn, "FailoverStateMachine")["StateMachineName"])
    key_events = [s for s in statements(props(cfn, "FunctionKey")["KeyPolicy"]) if "Service" in s["Principal"]]
    assert [s["Condition"]["ArnEquals"]["aws:SourceArn"] for s in key_events] == [rule_arn]
    (rule_trust,) = statements(props(cfn, "FailoverEventRuleRole")["AssumeRolePolicyDocument"])
    assert rule_trust["Condition"]["ArnEquals"]["aws:SourceArn"] == rule_arn
    (machine_trust,) = statements(props(cfn, "FailoverStateMachineRole")["AssumeRolePolicyDocument"])
    assert machine_trust["Condition"]["ArnLike"]["aws:SourceArn"] == machine_arn


# ---- wiring ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "logical_id",
    [
        "StateTable",
        "FailoverStateMachineRole",
        "FailoverEventRule",
        "FailoverEventRuleRole",
        "FailoverEventDeadLetterQueue",
    ],
)
def test_failover_resources_carry_the_seven_tags(cfn, logical_id):
    assert tag_dict(props(cfn, logical_id)["Tags"]) == REQUIRED_TAGS


def test_workflow_functions_are_the_ones_the_asl_invokes(sam):
    subs = props(sam, "FailoverStateMachine")["DefinitionSubstitutions"]
    invoked = {PLACEHOLDER.fullmatch(t["Resource"])[1] for t in tasks().values() if t["Resource"].startswith("${")}
    assert {subs[k]["Fn::GetAtt"][0] for k in invoked} == set(FUNCTIONS)
    for fn in FUNCTIONS:
        assert sam["Resources"][fn]["Type"] == "AWS::Serverless::Function", fn


def test_local_stack_uses_the_deployed_timeouts(sam):
    """local/stack.py (rehearsal, state machine tests) runs the functions with the same timeouts."""
    tree = ast.parse((ROOT / "local/stack.py").read_text())
    (table,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["FUNCTION_TIMEOUTS"]
    ]
    local = {
        getattr(names.Function, k.attr): ast.literal_eval(v) for k, v in zip(table.keys, table.values, strict=True)
    }
    deployed = {
        fn["Properties"]["CodeUri"].removeprefix("functions/").rstrip("/"): fn["Properties"]["Timeout"]
        for fn in resources(sam, "AWS::Serverless::Function").values()
    }
    assert local == {name: deployed[name] for name in local}
    assert set(local) == {
        names.Function.FAILOVER_COORDINATOR,
        names.Function.CONNECTION_DRAINER,
        names.Function.HEALTH_CHECKER,
    }
