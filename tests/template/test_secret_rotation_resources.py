"""Secret rotation: the app secret, the rotation function and its IAM, the invoke permissions, the schedules."""

import json
import re

import pytest
from hapg import config, names, rotation_rules
from hapg.models import Endpoint
from hapg.names import Rotation
from template_helpers import (
    PREFIX,
    allowed_pairs,
    as_list,
    getatt,
    props,
    ref,
    resources,
    role_statements,
    sub,
)

FUNCTION = "SecretRotationFunction"
ROLE = "SecretRotationFunctionRole"
SECRETS = {"MasterSecret": "MasterSecretRotationSchedule", "AppSecret": "AppSecretRotationSchedule"}
PERMISSIONS = {"MasterSecret": "MasterSecretRotationPermission", "AppSecret": "AppSecretRotationPermission"}


def j(value) -> str:
    return json.dumps(value, sort_keys=True)


def by_sid(stmts: list[dict]) -> dict[str, dict]:
    return {s["Sid"]: s for s in stmts if "Sid" in s}


# ---- the function ----------------------------------------------------------------------------------
def test_function(sam):
    p = props(sam, FUNCTION)
    assert p["FunctionName"] == sub(f"{PREFIX}-secret-rotation")
    assert p["CodeUri"] == f"functions/{names.Function.SECRET_ROTATION}/"
    assert (p["Timeout"], p["MemorySize"], p["ReservedConcurrentExecutions"]) == (300, 512, 2)
    assert p["LoggingConfig"] == {"LogGroup": ref("SecretRotationLogGroup")}
    assert "EventInvokeConfig" not in p and "Events" not in p, "Secrets Manager invokes it, step by step"
    assert p["Environment"]["Variables"] == {
        names.Env.SERVICE_NAME: names.Function.SECRET_ROTATION,
        names.Env.APP_SECRET_ARN: ref("AppSecret"),
        names.Env.STATE_TABLE: ref("StateTable"),
    }


def test_function_env_is_what_the_config_reads(sam):
    """config.load() over Globals + the function's variables: the ARNs and the table reach Settings."""
    variables = {
        **sam["Globals"]["Function"]["Environment"]["Variables"],
        **props(sam, FUNCTION)["Environment"]["Variables"],
    }
    stand_ins = {
        names.Env.CLUSTER_ID: "hapg-dev-cluster",
        names.Env.DB_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/master-AbCdEf",
        names.Env.APP_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/app-GhIjKl",
        names.Env.DB_WRITER_ENDPOINT: "writer.example.internal",
        names.Env.DB_READER_ENDPOINT: "reader.example.internal",
        names.Env.DB_PORT: "5432",
        names.Env.ALERT_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:hapg-dev-alerts",
        names.Env.STATE_TABLE: "hapg-dev-state",
    }
    settings = config.load({k: v if isinstance(v, str) else stand_ins[k] for k, v in variables.items()})
    assert settings.db.secret_arn == stand_ins[names.Env.DB_SECRET_ARN]
    assert settings.app_secret_arn == stand_ins[names.Env.APP_SECRET_ARN]
    assert settings.state_table == "hapg-dev-state"
    assert settings.db.sslmode == "verify-full"
    # the slowest setSecret: about six logins and a handful of statements, each bounded
    worst = 8 * (settings.db.connect_timeout_s + settings.db.statement_timeout_ms / 1000)
    assert worst < props(sam, FUNCTION)["Timeout"] / 2


def test_log_group(cfn):
    p = props(cfn, "SecretRotationLogGroup")
    assert p["LogGroupName"] == sub(f"/aws/lambda/{PREFIX}-secret-rotation")
    assert p["KmsKeyId"] == getatt("LogsKey", "Arn")
    assert p["RetentionInDays"] == 365


def test_role_is_exactly_least_privilege(cfn):
    role = props(cfn, ROLE)
    assert [m for m in role["ManagedPolicyArns"] if not isinstance(m, str)] == [ref("FunctionBaselinePolicy")]
    secrets = [j(ref("MasterSecret")), j(ref("AppSecret"))]
    rotate = ["DescribeSecret", "GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage"]
    assert allowed_pairs(role_statements(cfn, ROLE)) == {
        ("sqs:SendMessage", j(getatt("FunctionDeadLetterQueue", "Arn"))),
        *{(f"secretsmanager:{action}", secret) for action in rotate for secret in secrets},
        ("secretsmanager:GetRandomPassword", j("*")),
        ("kms:Decrypt", j(getatt("SecretsKey", "Arn"))),
        ("kms:GenerateDataKey", j(getatt("SecretsKey", "Arn"))),
        ("dynamodb:GetItem", j(getatt("StateTable", "Arn"))),
        ("kms:Decrypt", j(getatt("StateKey", "Arn"))),
    }


def test_role_conditions(cfn):
    sids = by_sid(role_statements(cfn, ROLE))
    # the secrets key only through Secrets Manager, and only for the two secrets
    assert sids["SecretsKey"]["Condition"] == {
        "StringEquals": {
            "kms:ViaService": sub("secretsmanager.${AWS::Region}.amazonaws.com"),
            "kms:EncryptionContext:SecretARN": [ref("MasterSecret"), ref("AppSecret")],
        }
    }
    # the lock item of this cluster, read only
    assert sids["ReadFailoverLock"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [sub(f"{names.Table.LOCK_PREFIX}${{AuroraCluster}}")]}
    }
    assert as_list(sids["ReadFailoverLock"]["Action"]) == ["dynamodb:GetItem"]
    assert sids["StateKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": sub("dynamodb.${AWS::Region}.amazonaws.com")}
    }
    assert "Condition" not in sids["RotateSecrets"] and "Condition" not in sids["RandomPassword"]


def test_secrets_key_policy_lets_iam_grant_rotation(cfn):
    """Rotation needs no key-policy statement of its own: the root statement lets IAM grant the role
    Decrypt/GenerateDataKey (conditioned above); Secrets Manager calls KMS with its caller's rights."""
    (admin,) = as_list(props(cfn, "SecretsKey")["KeyPolicy"]["Statement"])
    assert admin["Principal"] == {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")}
    assert admin["Action"] == "kms:*"
    assert props(cfn, "AppSecret")["KmsKeyId"] == props(cfn, "MasterSecret")["KmsKeyId"] == getatt("SecretsKey", "Arn")


# ---- the app secret ----------------------------------------------------------------------------------
def app_template(cfn) -> tuple[str, dict]:
    gen = props(cfn, "AppSecret")["GenerateSecretString"]
    text, variables = gen["SecretStringTemplate"]["Fn::Sub"]
    return text, variables


def test_app_secret(cfn):
    p = props(cfn, "AppSecret")
    assert p["Name"] == sub(f"{PREFIX}/db/app")
    assert cfn["Resources"]["AppSecret"]["DeletionPolicy"] == "Delete"
    gen = p["GenerateSecretString"]
    assert gen["GenerateStringKey"] == "password"
    assert gen["PasswordLength"] == Rotation.PASSWORD_LENGTH
    assert gen["ExcludePunctuation"] is False
    text, variables = app_template(cfn)
    assert variables == {
        "Host": getatt("AuroraCluster", "Endpoint.Address"),
        "Port": getatt("AuroraCluster", "Endpoint.Port"),
    }
    assert set(re.findall(r"\$\{(\w+)\}", text)) == {"Host", "Port", "MasterSecret"}
    value = json.loads(text.replace("${Host}", "h").replace("${Port}", "5432").replace("${MasterSecret}", "m"))
    assert value == {
        "username": Rotation.APP_USER,
        "engine": "postgres",
        "host": "h",
        "port": 5432,
        "dbname": names.DB_NAME,
        "masterarn": "m",
    }


def test_the_app_secret_the_stack_creates_is_one_the_rotation_accepts(cfn):
    """Fill the template string as CloudFormation would and run the rotation's own checks on it."""
    text, _ = app_template(cfn)
    writer = "hapg-dev-cluster.cluster-abc.us-east-1.rds.amazonaws.com"
    master_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/master-AbCdEf"
    value = json.loads(
        text.replace("${Host}", writer).replace("${Port}", "5432").replace("${MasterSecret}", master_arn)
    )
    value["password"] = "Aa1!Bb2$Cc3&Dd4(Ee5)Ff6*Gg7+Hh8,"
    assert rotation_rules.secret_problems(value, rotation_rules.Strategy.ALTERNATING) == []
    db = config.DbSettings(
        master_arn, names.DB_NAME, Endpoint(writer, 5432), Endpoint("r", 5432), "verify-full", "", 5, 5000
    )
    assert rotation_rules.target_problems(value, db) == []


@pytest.mark.parametrize("secret", SECRETS)
def test_generated_passwords_leave_out_what_the_rotation_leaves_out(cfn, secret):
    gen = props(cfn, secret)["GenerateSecretString"]
    assert gen["ExcludeCharacters"] == Rotation.EXCLUDE_CHARACTERS
    assert gen["PasswordLength"] == Rotation.PASSWORD_LENGTH


# ---- who may invoke it --------------------------------------------------------------------------------
def test_secrets_manager_may_invoke_it_for_the_two_secrets_only(cfn):
    permissions = {
        k: p["Properties"]
        for k, p in resources(cfn, "AWS::Lambda::Permission").items()
        if p["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
    }
    assert set(permissions) == set(PERMISSIONS.values())
    for secret, logical_id in PERMISSIONS.items():
        assert permissions[logical_id] == {
            "Action": "lambda:InvokeFunction",
            "FunctionName": getatt(FUNCTION, "Arn"),
            "Principal": "secretsmanager.amazonaws.com",
            "SourceAccount": ref("AWS::AccountId"),
            "SourceArn": ref(secret),
        }
    others = [
        p["Properties"]["Principal"]
        for p in resources(cfn, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] in (getatt(FUNCTION, "Arn"), ref(FUNCTION))
    ]
    assert others == ["secretsmanager.amazonaws.com"] * 2


# ---- the schedules -----------------------------------------------------------------------------------
def test_one_schedule_per_secret(cfn):
    schedules = resources(cfn, "AWS::SecretsManager::RotationSchedule")
    assert set(schedules) == set(SECRETS.values())
    for secret, logical_id in SECRETS.items():
        p = schedules[logical_id]["Properties"]
        assert p["SecretId"] == ref(secret)
        assert p["RotationLambdaARN"] == getatt(FUNCTION, "Arn")
        assert p["RotationRules"] == {"ScheduleExpression": Rotation.SCHEDULE, "Duration": Rotation.WINDOW}
        assert "HostedRotationLambda" not in p


def test_rotate_immediately_only_the_app_secret(cfn):
    # the app's first rotation creates its roles; the master is not rotated by a deploy
    assert props(cfn, SECRETS["AppSecret"])["RotateImmediatelyOnUpdate"] is True
    assert props(cfn, SECRETS["MasterSecret"])["RotateImmediatelyOnUpdate"] is False


@pytest.mark.parametrize("secret", SECRETS)
def test_schedules_wait_for_what_the_first_invocation_needs(cfn, secret):
    depends = set(as_list(cfn["Resources"][SECRETS[secret]]["DependsOn"]))
    assert {PERMISSIONS[secret], "MasterSecretAttachment", "WriterInstance"} <= depends
    assert {"SecretsManagerEndpoint", "DynamoDbGatewayEndpoint"} <= depends


def _hour(hhmm: str) -> float:
    h, m = hhmm.split(":")
    return int(h) + int(m) / 60


def test_every_30_days_in_a_window_clear_of_backups_and_maintenance(cfn):
    assert re.fullmatch(r"rate\((\d+) days\)", Rotation.SCHEDULE).group(1) == "30"
    window_h = int(re.fullmatch(r"(\d+)h", Rotation.WINDOW).group(1))
    start, end = 0, window_h  # a rate() window opens at 00:00 UTC
    cluster = props(cfn, "AuroraCluster")
    backup_start, backup_end = (_hour(t) for t in cluster["PreferredBackupWindow"].split("-"))
    maint_start, maint_end = (_hour(t.split(":", 1)[1]) for t in cluster["PreferredMaintenanceWindow"].split("-"))
    assert end <= backup_start and end <= maint_start and start >= 0
    assert backup_end <= 24 and maint_end <= 24


# ---- outputs -------------------------------------------------------------------------------------
def test_outputs(sam):
    assert sam["Outputs"]["AppSecretArn"]["Value"] == ref("AppSecret")
    assert sam["Outputs"]["SecretRotationFunctionArn"]["Value"] == getatt(FUNCTION, "Arn")


@pytest.mark.parametrize(
    ("logical_id", "prop", "name"),
    [
        (FUNCTION, "FunctionName", f"{PREFIX}-secret-rotation"),
        ("SecretRotationLogGroup", "LogGroupName", f"/aws/lambda/{PREFIX}-secret-rotation"),
        ("AppSecret", "Name", f"{PREFIX}/db/app"),
    ],
)
def test_names(sam, logical_id, prop, name):
    assert props(sam, logical_id)[prop] == sub(name)
