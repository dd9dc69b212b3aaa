"""Backup verification: the backup_verifier function and its role, the daily check rule, the
restore-test state machine, its role and weekly schedule, and the outputs."""

import json
import re

from hapg import backups, names, restore_run
from hapg.steps import Step
from template_helpers import (
    PREFIX,
    REQUIRED_TAGS,
    ROOT,
    allowed_pairs,
    as_list,
    getatt,
    props,
    ref,
    role_statements,
    statements,
    sub,
    tag_dict,
)

ASL_PATH = ROOT / "statemachines/backup_verification.asl.json"
ASL_TEXT = ASL_PATH.read_text()
ASL = json.loads(ASL_TEXT)
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
ARN = "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:"
REGIONAL = "arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}"
TEMP_CLUSTERS = sub(f"{ARN}cluster:{PREFIX}-restore-*")
TEMP_INSTANCES = sub(f"{ARN}db:{PREFIX}-restore-*")
AUTOMATED_SNAPSHOTS = sub(f"{ARN}cluster-snapshot:rds:${{AuroraCluster}}-*")
FUNCTION = "BackupVerifierFunction"
MACHINE = "BackupVerificationStateMachine"


def j(value) -> str:
    return json.dumps(value, sort_keys=True)


def by_sid(stmts):
    sids = [s.get("Sid") for s in stmts]
    assert None not in sids and len(sids) == len(set(sids)), sids
    return {s["Sid"]: s for s in stmts}


def env(sam) -> dict:
    return props(sam, FUNCTION)["Environment"]["Variables"]


def settings(sam):
    """backups.load_settings over Globals + the function's variables (intrinsics as plausible values),
    and the names it looked up."""
    stand_ins = {
        names.Env.CLUSTER_ID: "hapg-dev-cluster",
        names.Env.BACKUP_KMS_KEY_ARN: "arn:aws:kms:us-east-1:123456789012:key/1111aaaa-2222-bbbb-3333-cccc4444dddd",
        names.Env.DB_SUBNET_GROUP: "hapg-dev-db-subnets",
        names.Env.DB_SECURITY_GROUP_ID: "sg-0123456789abcdef0",
        names.Env.DB_CLUSTER_PARAMETER_GROUP: "hapg-dev-cluster-pg15",
        names.Env.RESTORE_PREFIX: "hapg-dev-restore",
        names.Env.STATE_TABLE: "hapg-dev-state",
        names.Env.ALERT_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:hapg-dev-alerts",
    }
    variables = {**sam["Globals"]["Function"]["Environment"]["Variables"], **env(sam)}
    values = {k: v if isinstance(v, str) else stand_ins.get(k, "stand-in") for k, v in variables.items()}
    seen = set()

    class Recorder(dict):
        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

    return backups.load_settings(Recorder(values)), seen


# ---- function ------------------------------------------------------------------------------------


def test_function(sam):
    p = props(sam, FUNCTION)
    assert p["FunctionName"] == sub(f"{PREFIX}-backup-verifier")
    assert p["CodeUri"] == "functions/backup_verifier/"
    assert (p["Timeout"], p["MemorySize"], p["ReservedConcurrentExecutions"]) == (900, 1024, 2)
    assert p["LoggingConfig"] == {"LogGroup": ref("BackupVerifierLogGroup")}
    assert "Events" not in p, "explicit, tagged rules start it"
    assert env(sam) == {
        names.Env.SERVICE_NAME: names.Function.BACKUP_VERIFIER,
        names.Env.STATE_TABLE: ref("StateTable"),
        names.Env.BACKUP_RETENTION_DAYS: "35",
        names.Env.BACKUP_KMS_KEY_ARN: getatt("AuroraKey", "Arn"),
        names.Env.DB_SUBNET_GROUP: ref("DbSubnetGroup"),
        names.Env.DB_SECURITY_GROUP_ID: ref("DbSecurityGroup"),
        names.Env.DB_CLUSTER_PARAMETER_GROUP: ref("ClusterParameterGroup"),
        names.Env.RESTORE_INSTANCE_CLASS: names.Backup.DEFAULT_INSTANCE_CLASS,
        names.Env.RESTORE_PREFIX: sub(f"{PREFIX}-restore"),
        names.Env.RESTORE_DEADLINE_S: str(names.Backup.RESTORE_DEADLINE_S),
        names.Env.CLEANUP_DEADLINE_S: str(names.Backup.CLEANUP_DEADLINE_S),
        names.Env.CREDENTIALS_WAIT_S: str(names.Backup.CREDENTIALS_WAIT_S),
        names.Env.DB_STATEMENT_TIMEOUT_MS: "60000",
    }


def test_log_group(cfn):
    p = props(cfn, "BackupVerifierLogGroup")
    assert p["LogGroupName"] == sub(f"/aws/lambda/{PREFIX}-backup-verifier")
    assert p["KmsKeyId"] == getatt("LogsKey", "Arn") and p["RetentionInDays"] == 365


def test_every_variable_is_read(sam):
    s, seen = settings(sam)
    ours = set(env(sam)) - {names.Env.SERVICE_NAME, names.Env.DB_STATEMENT_TIMEOUT_MS}  # the latter: config.load
    assert ours <= seen, f"set but never read: {ours - seen}"
    assert s.prefix == "hapg-dev-restore" and s.state_table == "hapg-dev-state"


def test_the_restore_goes_where_the_cluster_is_and_is_checked_against_it(sam):
    """The verifier's expectations are the cluster's own settings, by reference."""
    cluster = props(sam, "AuroraCluster")
    e = env(sam)
    assert int(e[names.Env.BACKUP_RETENTION_DAYS]) == cluster["BackupRetentionPeriod"]
    assert e[names.Env.BACKUP_KMS_KEY_ARN] == cluster["KmsKeyId"]
    assert e[names.Env.DB_SUBNET_GROUP] == cluster["DBSubnetGroupName"]
    assert [e[names.Env.DB_SECURITY_GROUP_ID]] == cluster["VpcSecurityGroupIds"]
    assert e[names.Env.DB_CLUSTER_PARAMETER_GROUP] == cluster["DBClusterParameterGroupName"]
    assert cluster["CopyTagsToSnapshot"] is True and cluster["StorageEncrypted"] is True
    assert e[names.Env.RESTORE_INSTANCE_CLASS].startswith(("db.t4g.", "db.t3.")), "one small instance"


def test_deadlines_fire_before_the_execution_times_out(sam):
    s, _ = settings(sam)
    verify_attempts = 2  # statemachines/backup.py: each up to the function timeout
    function_timeout = props(sam, FUNCTION)["Timeout"]
    worst = s.cleanup_deadline_s + s.restore_deadline_s + verify_attempts * function_timeout + s.cleanup_deadline_s
    assert ASL["TimeoutSeconds"] == names.Backup.EXECUTION_TIMEOUT_S > worst + 600
    assert s.credentials_wait_s < function_timeout / 2, "room to verify after the login"
    # Every step renews the lease: the longest gap (one verify call, then a retry's back-off, or a
    # Wait between polls) must not let a live run's lease expire.
    waits = [s["Seconds"] for s in ASL["States"].values() if s["Type"] == "Wait"]
    assert waits and max(waits) < 120
    assert names.Backup.LEASE_S > function_timeout + 60 > max(waits)


# ---- function IAM --------------------------------------------------------------------------------


def test_role_is_exactly_least_privilege(cfn):
    role = props(cfn, "BackupVerifierFunctionRole")
    assert [m for m in role["ManagedPolicyArns"] if not isinstance(m, str)] == [ref("FunctionBaselinePolicy")]
    cluster, key = getatt("AuroraCluster", "DBClusterArn"), getatt("AuroraKey", "Arn")
    table = getatt("StateTable", "Arn")
    restore_resources = [
        TEMP_CLUSTERS,
        AUTOMATED_SNAPSHOTS,
        sub(f"{ARN}subgrp:${{DbSubnetGroup}}"),
        sub(f"{ARN}cluster-pg:${{ClusterParameterGroup}}"),
        sub(f"{ARN}og:default:aurora-postgresql-15"),
    ]
    assert allowed_pairs(role_statements(cfn, "BackupVerifierFunctionRole")) == {
        ("sqs:SendMessage", j(getatt("FunctionDeadLetterQueue", "Arn"))),
        ("secretsmanager:GetSecretValue", j(ref("MasterSecret"))),
        ("kms:Decrypt", j(getatt("SecretsKey", "Arn"))),
        ("rds:DescribeDBClusters", j(sub(f"{ARN}cluster:*"))),
        ("rds:DescribeDBClusterSnapshots", j(cluster)),
        ("rds:DescribeDBClusterSnapshots", j(AUTOMATED_SNAPSHOTS)),
        ("rds:DescribeDBInstances", j(TEMP_INSTANCES)),
        *{("rds:RestoreDBClusterFromSnapshot", j(r)) for r in restore_resources},
        ("rds:CreateDBInstance", j(TEMP_INSTANCES)),
        ("rds:CreateDBInstance", j(TEMP_CLUSTERS)),
        ("rds:AddTagsToResource", j(TEMP_CLUSTERS)),
        ("rds:AddTagsToResource", j(TEMP_INSTANCES)),
        ("rds:ModifyDBCluster", j(TEMP_CLUSTERS)),
        ("rds:DeleteDBCluster", j(TEMP_CLUSTERS)),
        ("rds:DeleteDBInstance", j(TEMP_INSTANCES)),
        ("kms:CreateGrant", j(key)),
        ("kms:DescribeKey", j(key)),
        ("kms:Decrypt", j(key)),
        ("dynamodb:PutItem", j(table)),
        ("dynamodb:GetItem", j(table)),
        ("dynamodb:DeleteItem", j(table)),
        ("kms:Decrypt", j(getatt("StateKey", "Arn"))),
        ("kms:GenerateDataKey", j(getatt("StateKey", "Arn"))),
        ("sns:Publish", j(ref("AlertTopic"))),
        ("kms:Decrypt", j(getatt("SnsKey", "Arn"))),
        ("kms:GenerateDataKey", j(getatt("SnsKey", "Arn"))),
    }


def test_role_conditions(cfn):
    sids = by_sid([s for s in role_statements(cfn, "BackupVerifierFunctionRole") if "Sid" in s])
    source_tag = f"aws:RequestTag/{names.Backup.TAG_SOURCE}"
    resource_tag = f"aws:ResourceTag/{names.Backup.TAG_SOURCE}"
    # created only tagged as a restore test of this cluster; changed or deleted only when so tagged
    for sid in ("RestoreTemporaryCluster", "CreateTemporaryInstance", "TagTemporaryResources"):
        assert sids[sid]["Condition"] == {"StringEquals": {source_tag: ref("AuroraCluster")}}, sid
    for sid in ("ModifyAndDeleteTemporaryClusters", "DeleteTemporaryInstances"):
        assert sids[sid]["Condition"] == {"StringEquals": {resource_tag: ref("AuroraCluster")}}, sid
    via_rds = {"kms:ViaService": sub("rds.${AWS::Region}.amazonaws.com")}
    assert sids["AuroraKeyGrant"]["Condition"] == {
        "StringEquals": via_rds,
        "Bool": {"kms:GrantIsForAWSResource": "true"},
    }
    assert sids["AuroraKeyUse"]["Condition"] == {"StringEquals": via_rds}
    assert sids["RecordRestoreTests"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [sub(f"{names.Table.RESTORE_PREFIX}${{AuroraCluster}}")]}
    }
    assert sids["DecryptMasterSecret"]["Condition"] == {
        "StringEquals": {"kms:ViaService": sub("secretsmanager.${AWS::Region}.amazonaws.com")}
    }
    for sid, service in (("StateKey", "dynamodb"), ("AlertKey", "sns")):
        assert sids[sid]["Condition"] == {
            "StringEquals": {"kms:ViaService": sub(f"{service}.${{AWS::Region}}.amazonaws.com")}
        }


def test_iam_name_patterns_are_the_code_s_temporary_identifiers(sam):
    """The ARN patterns follow RESTORE_PREFIX; the identifiers the code makes match them, the cluster not."""
    prefix = env(sam)[names.Env.RESTORE_PREFIX]["Fn::Sub"]
    assert TEMP_CLUSTERS["Fn::Sub"].endswith(f":cluster:{prefix}-*")
    assert TEMP_INSTANCES["Fn::Sub"].endswith(f":db:{prefix}-*")
    execution = "arn:aws:states:us-east-1:123456789012:execution:hapg-dev-backup-verification:abc"
    run = restore_run.Request(execution, "hapg-dev-restore", "r", 0.0, None)
    assert re.fullmatch(r"hapg-dev-restore-[0-9a-f]{10}", run.cluster_id)
    assert run.instance_id == f"{run.cluster_id}-1" and len(run.instance_id) <= 63
    longest = "hapg-" + "x" * 20 + "-restore"
    assert len(f"{longest}-0123456789-1") <= 63 and len(longest) <= backups.PREFIX_MAX
    assert not props(sam, "AuroraCluster")["DBClusterIdentifier"]["Fn::Sub"].startswith(f"{prefix}-")
    for instance in ("WriterInstance", "ReaderInstance1", "ReaderInstance2"):
        assert not props(sam, instance)["DBInstanceIdentifier"]["Fn::Sub"].startswith(f"{prefix}-")
    assert names.Backup.TAG_SOURCE == "hapg:restore-source" and names.Backup.TAG_RUN == "hapg:restore-test"


# ---- daily checks ---------------------------------------------------------------------------------


def _cron(expr: str) -> list[str]:
    m = re.fullmatch(r"cron\((.+)\)", expr)
    assert m, expr
    return m[1].split()


def test_daily_check_rule(cfn):
    rule = props(cfn, "BackupVerificationSchedule")
    assert rule["Name"] == sub(f"{PREFIX}-backup-verification")
    assert rule["State"] == "ENABLED"
    minute, hour, dom, month, dow, year = _cron(rule["ScheduleExpression"])
    assert (dom, month, dow, year) == ("*", "*", "?", "*"), "daily"
    (target,) = rule["Targets"]
    assert target["Arn"] == getatt(FUNCTION, "Arn")
    step = Step.parse(json.loads(target["Input"]), ("check",), "backup_verifier")
    assert step.action == names.Action.CHECK and step.payload == {}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600
    # A missed snapshot must show at the check: run at least 2 h after the backup window closes,
    # so yesterday's snapshot is >= 26 h old then, and today's well under 26 h.
    window = props(cfn, "AuroraCluster")["PreferredBackupWindow"]
    start, end = ([int(x) for x in t.split(":")] for t in window.split("-"))
    check_min = int(hour) * 60 + int(minute)
    assert check_min - (end[0] * 60 + end[1]) >= (names.Backup.MAX_SNAPSHOT_AGE_H - 24) * 60
    assert check_min - (start[0] * 60 + start[1]) < names.Backup.MAX_SNAPSHOT_AGE_H * 60


def test_daily_check_permission(cfn):
    (permission,) = [
        p["Properties"]
        for p in cfn["Resources"].values()
        if p["Type"] == "AWS::Lambda::Permission" and p["Properties"]["FunctionName"] == ref(FUNCTION)
    ]
    assert permission == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": ref(FUNCTION),
        "Principal": "events.amazonaws.com",
        "SourceArn": getatt("BackupVerificationSchedule", "Arn"),
    }


# ---- restore-test state machine -------------------------------------------------------------------


def test_state_machine(sam):
    p = props(sam, MACHINE)
    assert p["Name"] == sub(f"{PREFIX}-backup-verification")
    assert p["Type"] == "STANDARD"
    assert p["DefinitionUri"] == "statemachines/backup_verification.asl.json"
    assert "Definition" not in p and "Policies" not in p and "Events" not in p
    assert p["Role"] == getatt("BackupVerificationStateMachineRole", "Arn")
    assert p["Tracing"] == {"Enabled": True}
    assert p["Logging"] == {
        "Level": "ALL",
        "IncludeExecutionData": True,
        "Destinations": [
            {"CloudWatchLogsLogGroup": {"LogGroupArn": getatt("BackupVerificationStateMachineLogGroup", "Arn")}}
        ],
    }
    assert p["Tags"] == REQUIRED_TAGS


def test_substitutions_cover_every_placeholder(sam):
    placeholders = set(PLACEHOLDER.findall(ASL_TEXT))
    subs = props(sam, MACHINE)["DefinitionSubstitutions"]
    assert set(subs) == placeholders == {names.Sub.BACKUP, names.Sub.TOPIC}
    assert subs == {names.Sub.BACKUP: getatt(FUNCTION, "Arn"), names.Sub.TOPIC: ref("AlertTopic")}


def test_translated_state_machine_runs_the_committed_asl(cfn):
    p = props(cfn, MACHINE)
    separator, parts = p["DefinitionString"]["Fn::Join"]
    assert json.loads(separator.join(parts)) == ASL
    assert p["StateMachineType"] == "STANDARD" and p["TracingConfiguration"] == {"Enabled": True}
    assert REQUIRED_TAGS.items() <= tag_dict(p["Tags"]).items()


def test_state_machine_log_group(cfn):
    p = props(cfn, "BackupVerificationStateMachineLogGroup")
    name = props(cfn, MACHINE)["StateMachineName"]["Fn::Sub"]
    assert p["LogGroupName"] == sub(f"/aws/vendedlogs/states/{name}")
    assert p["KmsKeyId"] == getatt("LogsKey", "Arn") and p["RetentionInDays"] == 365


def test_logged_execution_data_holds_no_credentials():
    assert not re.search(r"secret|password|credential|token", ASL_TEXT, flags=re.IGNORECASE)


def test_state_machine_role(cfn):
    role = props(cfn, "BackupVerificationStateMachineRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    name = props(cfn, MACHINE)["StateMachineName"]["Fn::Sub"]
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        "ArnLike": {"aws:SourceArn": sub(f"{REGIONAL.format(service='states')}:stateMachine:{name}")},
    }
    assert "ManagedPolicyArns" not in role
    star = j("*")
    stmts = role_statements(cfn, "BackupVerificationStateMachineRole")
    assert allowed_pairs(stmts) == {
        ("lambda:InvokeFunction", j(getatt(FUNCTION, "Arn"))),
        ("lambda:InvokeFunction", j(sub(f"${{{FUNCTION}.Arn}}:*"))),
        ("sns:Publish", j(ref("AlertTopic"))),
        ("kms:Decrypt", j(getatt("SnsKey", "Arn"))),
        ("kms:GenerateDataKey", j(getatt("SnsKey", "Arn"))),
        *{(a, star) for a in as_list(by_sid(stmts)["LogDelivery"]["Action"])},
        *{(a, star) for a in as_list(by_sid(stmts)["Tracing"]["Action"])},
    }
    assert by_sid(stmts)["AlertKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": sub("sns.${AWS::Region}.amazonaws.com")}
    }


def test_role_covers_exactly_what_the_asl_calls():
    tasks = {k: s for k, s in ASL["States"].items() if s["Type"] == "Task"}
    resources = {s["Resource"] for s in tasks.values()}
    assert resources == {f"${{{names.Sub.BACKUP}}}", "arn:aws:states:::sns:publish"}
    (notify,) = [s for s in tasks.values() if s["Resource"].endswith("sns:publish")]
    assert notify["Parameters"]["TopicArn"] == f"${{{names.Sub.TOPIC}}}"


# ---- weekly restore test ---------------------------------------------------------------------------


def test_restore_test_schedule(cfn):
    rule = props(cfn, "RestoreTestSchedule")
    assert rule["Name"] == sub(f"{PREFIX}-restore-test")
    assert rule["State"] == "ENABLED"
    minute, hour, dom, month, dow, _ = _cron(rule["ScheduleExpression"])
    assert (dom, month) == ("?", "*") and dow in ("MON", "TUE", "WED", "THU", "FRI"), "weekly, on a working day"
    assert int(hour) >= 6, "after the daily check and the backup window"
    (target,) = rule["Targets"]
    assert target["Arn"] == ref(MACHINE)
    assert target["RoleArn"] == getatt("RestoreTestScheduleRole", "Arn")
    reason, snapshot = restore_run.parse_input(json.loads(target["Input"]))
    assert reason == "weekly restore test" and snapshot is None


def test_restore_test_schedule_role_may_only_start_the_restore_test(cfn):
    role = props(cfn, "RestoreTestScheduleRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    name = props(cfn, "RestoreTestSchedule")["Name"]["Fn::Sub"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        "ArnEquals": {"aws:SourceArn": sub(f"{REGIONAL.format(service='events')}:rule/{name}")},
    }
    assert "ManagedPolicyArns" not in role
    pairs = allowed_pairs(role_statements(cfn, "RestoreTestScheduleRole"))
    assert pairs == {("states:StartExecution", j(ref(MACHINE)))}


# ---- wiring ----------------------------------------------------------------------------------------


def test_resources_carry_the_seven_tags(cfn):
    for logical_id in (
        "BackupVerifierLogGroup",
        "BackupVerificationSchedule",
        "BackupVerificationStateMachineLogGroup",
        "BackupVerificationStateMachineRole",
        "RestoreTestSchedule",
        "RestoreTestScheduleRole",
        "BackupVerifierFunctionRole",
    ):
        assert REQUIRED_TAGS.items() <= tag_dict(props(cfn, logical_id)["Tags"]).items(), logical_id


def test_outputs(sam):
    outputs = sam["Outputs"]
    assert outputs["BackupVerifierFunctionArn"]["Value"] == getatt(FUNCTION, "Arn")
    assert outputs["BackupVerificationStateMachineArn"]["Value"] == ref(MACHINE)
    for key in ("BackupVerifierFunctionArn", "BackupVerificationStateMachineArn"):
        assert outputs[key]["Export"] == {"Name": sub(f"${{AWS::StackName}}-{key}")}
