"""Lambda tier: the Globals pattern, per-function contract, health checker, DLQ, schedule, IAM."""

import json

import pytest
from hapg import names
from template_helpers import (
    PREFIX,
    REQUIRED_TAGS,
    ROOT,
    SUBNETS,
    allowed_pairs,
    as_list,
    getatt,
    load_sam,
    props,
    ref,
    resources,
    role_statements,
    statements,
    sub,
)

# Timeout (s) and memory (MB) per function folder, including those of later slices.
SIZES = {
    names.Function.HEALTH_CHECKER: (30, 256),
    names.Function.FAILOVER_COORDINATOR: (300, 512),
    names.Function.CONNECTION_DRAINER: (60, 256),
    names.Function.SECRET_ROTATION: (300, 512),
    names.Function.BACKUP_VERIFIER: (900, 1024),
}
FUNCTION_IDS = sorted(resources(load_sam(), "AWS::Serverless::Function"))
GLOBAL_ONLY = {
    "Runtime",
    "Handler",
    "Architectures",
    "Layers",
    "VpcConfig",
    "Tracing",
    "KmsKeyArn",
    "DeadLetterQueue",
    "Tags",
}
SAM_MANAGED_POLICIES = {  # what SAM attaches for logs, VPC ENIs and X-Ray; AWS-managed
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
OTHER_AWS_MANAGED = [sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")]
GLOBAL_ENV = {
    "CLUSTER_ID": ref("AuroraCluster"),
    "DB_SECRET_ARN": ref("MasterSecret"),
    "DB_NAME": "financialdb",
    "DB_WRITER_ENDPOINT": getatt("AuroraCluster", "Endpoint.Address"),
    "DB_READER_ENDPOINT": getatt("AuroraCluster", "ReadEndpoint.Address"),
    "DB_PORT": getatt("AuroraCluster", "Endpoint.Port"),
    "DB_SSLMODE": "verify-full",
    "ALERT_TOPIC_ARN": ref("AlertTopic"),
    "POWERTOOLS_METRICS_NAMESPACE": "HAPostgreSQL",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
# Read by Powertools itself, not by our code, so not in names.Env.
LIBRARY_ENV = {"POWERTOOLS_LOG_LEVEL"}


def folder(sam_fn: dict) -> str:
    return sam_fn["Properties"]["CodeUri"].removeprefix("functions/").rstrip("/")


# ---- Globals -------------------------------------------------------------------------------


def test_globals_function(sam):
    g = sam["Globals"]["Function"]
    assert g["Runtime"] == "python3.11"
    assert g["Handler"] == "index.lambda_handler"
    assert g["Architectures"] == ["x86_64"]
    assert g["Layers"] == [ref("DbLayer")]
    assert g["VpcConfig"] == {"SubnetIds": SUBNETS, "SecurityGroupIds": [ref("LambdaSecurityGroup")]}
    assert g["Tracing"] == "Active"
    assert g["KmsKeyArn"] == getatt("FunctionKey", "Arn")
    assert g["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": getatt("FunctionDeadLetterQueue", "Arn")}
    assert g["Tags"] == REQUIRED_TAGS


def test_globals_environment(sam):
    assert sam["Globals"]["Function"]["Environment"]["Variables"] == GLOBAL_ENV


def test_env_names_are_the_ones_the_code_reads(sam):
    code_names = {v for k, v in vars(names.Env).items() if not k.startswith("_")}
    used = set(GLOBAL_ENV)
    for fn in resources(sam, "AWS::Serverless::Function").values():
        used |= set(fn["Properties"].get("Environment", {}).get("Variables", {}))
    assert used - LIBRARY_ENV <= code_names, used - LIBRARY_ENV - code_names
    env = sam["Globals"]["Function"]["Environment"]["Variables"]
    assert env[names.Env.METRICS_NAMESPACE] == names.Metric.NAMESPACE
    assert env[names.Env.DB_NAME] == names.DB_NAME == props(sam, "AuroraCluster")["DatabaseName"]


# ---- per-function contract (every function, this slice and later ones) ----------------------


def test_function_folders_are_the_known_ones(sam):
    folders = [folder(fn) for fn in resources(sam, "AWS::Serverless::Function").values()]
    assert folders, "no functions"
    assert len(folders) == len(set(folders))
    assert set(folders) <= set(names.Function.ALL) == set(SIZES)


@pytest.mark.parametrize("logical_id", FUNCTION_IDS)
def test_function_contract(sam, logical_id):
    p = props(sam, logical_id)
    name = folder(sam["Resources"][logical_id])
    assert p["CodeUri"] == f"functions/{name}/"
    assert (ROOT / "functions" / name / "index.py").is_file()
    requirements = ROOT / "functions" / name / "requirements.txt"
    assert not requirements.exists() or requirements.read_text().strip(), "empty requirements.txt defeats --cached"
    assert p["FunctionName"] == sub(f"{PREFIX}-{names.Function.resource_suffix(name)}")
    assert (p["Timeout"], p["MemorySize"]) == SIZES[name]
    assert 1 <= p["ReservedConcurrentExecutions"] <= 10
    assert p["Environment"]["Variables"][names.Env.SERVICE_NAME] == name
    assert not GLOBAL_ONLY & set(p), "set in Globals.Function, not per function"


@pytest.mark.parametrize("logical_id", FUNCTION_IDS)
def test_function_log_group(sam, logical_id):
    p = props(sam, logical_id)
    log_ref = p["LoggingConfig"]["LogGroup"]
    group = props(sam, log_ref["Ref"])
    assert sam["Resources"][log_ref["Ref"]]["Type"] == "AWS::Logs::LogGroup"
    assert group["LogGroupName"] == sub("/aws/lambda/" + p["FunctionName"]["Fn::Sub"])
    assert group["KmsKeyId"] == getatt("LogsKey", "Arn")
    assert group["RetentionInDays"] >= 365


def test_translated_functions_carry_the_globals(cfn):
    (layer_id,) = resources(cfn, "AWS::Lambda::LayerVersion")
    functions = resources(cfn, "AWS::Lambda::Function")
    assert len(functions) == len(FUNCTION_IDS)
    for logical_id, fn in functions.items():
        p = fn["Properties"]
        assert p["Layers"] == [ref(layer_id)], logical_id
        assert p["TracingConfig"] == {"Mode": "Active"}, logical_id
        assert p["DeadLetterConfig"] == {"TargetArn": getatt("FunctionDeadLetterQueue", "Arn")}, logical_id
        assert GLOBAL_ENV.items() <= p["Environment"]["Variables"].items(), logical_id


# ---- health checker ----------------------------------------------------------------------------


def test_health_checker(sam):
    p = props(sam, "HealthCheckerFunction")
    assert p["FunctionName"] == sub(f"{PREFIX}-health-checker")
    assert p["CodeUri"] == "functions/health_checker/"
    assert (p["Timeout"], p["MemorySize"], p["ReservedConcurrentExecutions"]) == (30, 256, 2)
    assert p["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": names.Function.HEALTH_CHECKER,
        names.Env.STATE_TABLE: ref("StateTable"),  # the maintenance flag -> AutomationPaused
        # with RDS Proxy only (tests/template/test_operations_resources.py)
        names.Env.DB_PROXY_ENDPOINT: {"Fn::If": ["UseRdsProxy", getatt("RdsProxy", "Endpoint"), ref("AWS::NoValue")]},
        names.Env.APP_SECRET_ARN: {"Fn::If": ["UseRdsProxy", ref("AppSecret"), ref("AWS::NoValue")]},
    }
    assert p["LoggingConfig"] == {"LogGroup": ref("HealthCheckerLogGroup")}
    # Stale health samples are useless: no async retries, drop after a minute.
    assert p["EventInvokeConfig"] == {"MaximumEventAgeInSeconds": 60, "MaximumRetryAttempts": 0}


def test_health_check_schedule(cfn):
    rule = props(cfn, "HealthCheckSchedule")
    assert rule["Name"] == sub(f"{PREFIX}-health-check")
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == getatt("HealthCheckerFunction", "Arn")
    event = json.loads(target["Input"])
    assert event == {"mode": names.HealthMode.SCHEDULED}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 60


def test_schedule_may_invoke_only_the_health_checker(cfn):
    permissions = [
        p["Properties"]
        for p in resources(cfn, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    # each schedule may invoke its own function only (the daily backup checks: tests/template/test_backup_resources.py)
    schedules = {"HealthCheckerFunction": "HealthCheckSchedule", "BackupVerifierFunction": "BackupVerificationSchedule"}
    assert sorted(permissions, key=json.dumps) == sorted(
        (
            {
                "Action": "lambda:InvokeFunction",
                "FunctionName": ref(function),
                "Principal": "events.amazonaws.com",
                "SourceArn": getatt(rule, "Arn"),
            }
            for function, rule in schedules.items()
        ),
        key=json.dumps,
    )


def test_health_checker_event_invoke_config(cfn):
    (config,) = [c["Properties"] for c in resources(cfn, "AWS::Lambda::EventInvokeConfig").values()]
    assert config["FunctionName"] == ref("HealthCheckerFunction")
    assert config["MaximumRetryAttempts"] == 0
    assert config["MaximumEventAgeInSeconds"] == 60


# ---- dead-letter queue -------------------------------------------------------------------------


def test_dead_letter_queue(cfn):
    q = props(cfn, "FunctionDeadLetterQueue")
    assert q["QueueName"] == sub(f"{PREFIX}-dlq")
    assert q["KmsMasterKeyId"] == getatt("FunctionKey", "Arn")
    assert q["MessageRetentionPeriod"] == 1209600


def test_dead_letter_queue_refuses_plaintext_transport(cfn):
    policies = {
        p["Properties"]["Queues"][0]["Ref"]: p["Properties"] for p in resources(cfn, "AWS::SQS::QueuePolicy").values()
    }
    assert (
        set(policies)
        == set(resources(cfn, "AWS::SQS::Queue"))
        == {
            "FunctionDeadLetterQueue",
            "FailoverEventDeadLetterQueue",
        }
    )
    for queue, policy in policies.items():
        assert len(policy["Queues"]) == 1, queue
        denies = [s for s in statements(policy["PolicyDocument"]) if s["Effect"] == "Deny"]
        assert denies == [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": getatt(queue, "Arn"),
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ], queue
    # The function DLQ is written by the function roles through IAM: nothing else is allowed in.
    assert [s["Effect"] for s in statements(policies["FunctionDeadLetterQueue"]["PolicyDocument"])] == ["Deny"]


# ---- layer ---------------------------------------------------------------------------------


def test_db_layer(sam):
    layer = sam["Resources"]["DbLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Metadata"]["BuildMethod"] == "python3.11"
    p = layer["Properties"]
    assert p["LayerName"] == sub(f"{PREFIX}-db-layer")
    assert p["ContentUri"] == "layers/db/"
    assert p["CompatibleRuntimes"] == ["python3.11"]
    assert p["RetentionPolicy"] in ("Retain", "Delete")
    assert (ROOT / "layers/db/requirements.txt").is_file()
    assert (ROOT / "layers/db/hapg/names.py").is_file()


# ---- IAM -----------------------------------------------------------------------------------


def test_function_roles_trust_lambda_only(cfn):
    for logical_id in resources(cfn, "AWS::Lambda::Function"):
        role_id = props(cfn, logical_id)["Role"]["Fn::GetAtt"][0]
        (trust,) = statements(props(cfn, role_id)["AssumeRolePolicyDocument"])
        assert trust["Principal"] == {"Service": ["lambda.amazonaws.com"]}
        assert as_list(trust["Action"]) == ["sts:AssumeRole"]


def test_function_baseline_policy(cfn):
    doc = props(cfn, "FunctionBaselinePolicy")["PolicyDocument"]
    assert allowed_pairs(statements(doc)) == {
        ("kms:Decrypt", json.dumps(getatt("FunctionKey", "Arn"))),
        ("kms:GenerateDataKey", json.dumps(getatt("FunctionKey", "Arn"))),
    }


def test_health_checker_role_is_exactly_least_privilege(cfn):
    role = props(cfn, "HealthCheckerFunctionRole")
    managed = role["ManagedPolicyArns"]
    assert {m for m in managed if isinstance(m, str)} == SAM_MANAGED_POLICIES
    assert [m for m in managed if not isinstance(m, str)] == [ref("FunctionBaselinePolicy")]
    stmts = role_statements(cfn, "HealthCheckerFunctionRole")
    secret, dlq, secrets_key, table, state_key = (
        json.dumps(x)
        for x in (
            ref("MasterSecret"),
            getatt("FunctionDeadLetterQueue", "Arn"),
            getatt("SecretsKey", "Arn"),
            getatt("StateTable", "Arn"),
            getatt("StateKey", "Arn"),
        )
    )
    assert allowed_pairs(stmts) == {
        ("sqs:SendMessage", dlq),
        ("secretsmanager:GetSecretValue", secret),
        ("secretsmanager:DescribeSecret", secret),
        ("kms:Decrypt", secrets_key),
        ("dynamodb:GetItem", table),  # the maintenance flag only (below)
        ("kms:Decrypt", state_key),
    }
    by_sid = {s.get("Sid"): s for s in stmts}
    assert by_sid["DecryptMasterSecret"]["Condition"] == {
        "StringEquals": {"kms:ViaService": sub("secretsmanager.${AWS::Region}.amazonaws.com")}
    }
    assert by_sid["ReadMaintenanceFlag"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [sub(f"{names.Table.CONTROL_PREFIX}${{AuroraCluster}}")]}
    }
    assert by_sid["StateKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": sub("dynamodb.${AWS::Region}.amazonaws.com")}
    }


def _policy_documents(cfn):
    for logical_id, res in cfn["Resources"].items():
        p = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in p.get("Policies", []):
                yield logical_id, policy["PolicyDocument"]
        elif res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            yield logical_id, p["PolicyDocument"]


# Resource "*" only where the API has no resource-level permissions, per AWS's documentation:
# CloudWatch Logs vended-log delivery (Step Functions logging) and X-Ray (tracing).
RESOURCE_STAR_ALLOWED = {
    ("FailoverStateMachineRole", "LogDelivery"): {
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    },
    ("FailoverStateMachineRole", "Tracing"): {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
    },
}
# The restore-test workflow logs and traces like the failover workflow.
RESOURCE_STAR_ALLOWED[("BackupVerificationStateMachineRole", "LogDelivery")] = RESOURCE_STAR_ALLOWED[
    ("FailoverStateMachineRole", "LogDelivery")
]
RESOURCE_STAR_ALLOWED[("BackupVerificationStateMachineRole", "Tracing")] = RESOURCE_STAR_ALLOWED[
    ("FailoverStateMachineRole", "Tracing")
]
# FIS sets up the failover drill's log delivery with the experiment role (vended logs, no resource-level
# permissions; the log group's resource policy belongs to the stack).
RESOURCE_STAR_ALLOWED[("FailoverDrillRole", "ExperimentLogDelivery")] = {
    "logs:CreateLogDelivery",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
# GetRandomPassword acts on no resource; AWS's rotation policies grant it on "*".
RESOURCE_STAR_ALLOWED[("SecretRotationFunctionRole", "RandomPassword")] = {"secretsmanager:GetRandomPassword"}
# Wildcards inside an ARN: Lambda versions/aliases of the workflow's own functions, and the one
# DescribeDBInstances resource RDS accepts for a filtered (identifier-less) describe.
ARN_WILDCARDS_ALLOWED = {
    "${FailoverCoordinatorFunction.Arn}:*",
    "${ConnectionDrainerFunction.Arn}:*",
    "${HealthCheckerFunction.Arn}:*",
    "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:*",
    # backup_verifier (why each: template.yaml and tests/template/test_backup_resources.py)
    "${BackupVerifierFunction.Arn}:*",
    "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster:*",
    "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster-snapshot:rds:${AuroraCluster}-*",
    "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster:hapg-${EnvironmentSuffix}-restore-*",
    "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:hapg-${EnvironmentSuffix}-restore-*",
}


def test_no_wildcards_in_our_policies(cfn):
    checked, star = 0, {}
    for logical_id, doc in _policy_documents(cfn):
        for s in statements(doc):
            for action in as_list(s["Action"]):
                assert action != "*" and not action.endswith(":*"), f"{logical_id}: {action}"
            if "*" in as_list(s["Resource"]):
                assert as_list(s["Resource"]) == ["*"], f"{logical_id}: '*' mixed with ARNs"
                star[(logical_id, s.get("Sid"))] = set(as_list(s["Action"]))
            for resource in as_list(s["Resource"]):
                if isinstance(resource, dict) and "Fn::Sub" in resource and "*" in resource["Fn::Sub"]:
                    assert resource["Fn::Sub"] in ARN_WILDCARDS_ALLOWED, f"{logical_id}: {resource}"
            checked += 1
    assert checked >= 5
    assert star == RESOURCE_STAR_ALLOWED


def test_only_known_aws_managed_policies(cfn):
    own = set(resources(cfn, "AWS::IAM::ManagedPolicy"))
    for logical_id, role in resources(cfn, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and "Ref" in arn:
                assert arn["Ref"] in own, logical_id
            else:
                assert arn in [*SAM_MANAGED_POLICIES, *OTHER_AWS_MANAGED], f"{logical_id}: {arn}"
