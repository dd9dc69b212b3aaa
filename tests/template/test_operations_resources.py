"""Operations: the FIS failover drill, the optional scheduled switchover, the optional RDS Proxy.

Both optional features are checked as CloudFormation would deploy them, for every combination of
EnableRdsProxy and EnableScheduledSwitchover: a small evaluator resolves the template's Conditions
(Fn::Equals / Fn::Not / Fn::And / Fn::Or / Condition over parameter values), drops the resources and
outputs whose condition is false, resolves every Fn::If and AWS::NoValue, and then proves that what
is left references only resources that exist in that deployment (a dangling Ref, GetAtt, Sub
variable or DependsOn fails the deploy).
"""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hapg import config, names, triggers
from hapg.errors import InvalidInput
from hapg.models import FailoverRequest
from template_helpers import (
    PREFIX,
    REQUIRED_TAGS,
    ROOT,
    SUBNETS,
    allowed_pairs,
    getatt,
    props,
    ref,
    role_statements,
    statements,
    sub,
    tag_dict,
)

from observability import readback

CLUSTER_ARN = getatt("AuroraCluster", "DBClusterArn")
FUNCTION_KEY = getatt("FunctionKey", "Arn")
SECRETS_KEY = getatt("SecretsKey", "Arn")
DLQ_ARN = getatt("FailoverEventDeadLetterQueue", "Arn")
NO_VALUE = ref("AWS::NoValue")
# Secrets Manager decrypts the app secret with the caller's rights: for that secret only.
APP_SECRET_VIA = {
    "StringEquals": {
        "kms:ViaService": sub("secretsmanager.${AWS::Region}.amazonaws.com"),
        "kms:EncryptionContext:SecretARN": ref("AppSecret"),
    }
}
PSEUDO = {**readback.PSEUDO, "AWS::NoValue": None}
SCHEDULE_INPUT = {"action": "switchover", "reason": "scheduled weekly switchover drill"}

PROXY_RESOURCES = {
    "RdsProxySecurityGroup",
    "RdsProxySecurityGroupIngressFromLambda",
    "LambdaSecurityGroupEgressToProxy",
    "DbSecurityGroupIngressFromProxy",
    "EndpointSecurityGroupIngressFromProxy",
    "RdsProxyRole",
    "RdsProxyLogGroup",
    "RdsProxy",
    "RdsProxyTargetGroup",
    "HealthCheckerProxyPolicy",
}
SCHEDULE_RESOURCES = {"ScheduledSwitchoverGroup", "ScheduledSwitchoverRole", "ScheduledSwitchoverSchedule"}
PROXY_OUTPUTS = {"RdsProxyEndpoint", "RdsProxySecurityGroupId"}
MODES = [
    {"EnableRdsProxy": proxy, "EnableScheduledSwitchover": schedule}
    for proxy, schedule in itertools.product(["true", "false"], repeat=2)
]
MODE_IDS = [f"proxy={m['EnableRdsProxy']}-schedule={m['EnableScheduledSwitchover']}" for m in MODES]


def j(value) -> str:
    return json.dumps(value, sort_keys=True)


def by_sid(stmts: list[dict]) -> dict[str, dict]:
    sids = [s.get("Sid") for s in stmts]
    assert None not in sids and len(sids) == len(set(sids)), sids
    return {s["Sid"]: s for s in stmts}


def arn(service: str, rest: str) -> dict:
    return sub(f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}")


# ---- the condition evaluator ---------------------------------------------------------------------
class Deployment:
    """The template as CloudFormation deploys it for one set of parameter values."""

    def __init__(self, template: dict, params: dict[str, str]):
        self.template = template
        self.params = {k: str(p.get("Default", "")) for k, p in template["Parameters"].items()}
        unknown = set(params) - set(self.params)
        assert not unknown, f"no such parameters: {unknown}"
        self.params.update(params)
        self.conditions = {name: self.condition(name) for name in template.get("Conditions", {})}

    def condition(self, name: str) -> bool:
        return self._eval(self.template["Conditions"][name])

    def _eval(self, node) -> bool:
        ((fn, arg),) = node.items()
        if fn == "Fn::Equals":
            left, right = (self._scalar(a) for a in arg)
            return left == right
        if fn == "Fn::Not":
            (inner,) = arg
            return not self._eval(inner)
        if fn == "Fn::And":
            return all(self._eval(a) for a in arg)
        if fn == "Fn::Or":
            return any(self._eval(a) for a in arg)
        if fn == "Condition":
            return self.condition(arg)
        raise AssertionError(f"unsupported condition function {fn}")

    def _scalar(self, node) -> str:
        if isinstance(node, dict):
            ((fn, arg),) = node.items()
            assert fn == "Ref", f"a condition may compare parameters and literals only, not {fn}"
            return self.params[arg] if arg in self.params else str(PSEUDO[arg])
        return str(node)

    def exists(self, logical_id: str) -> bool:
        cond = self.template["Resources"][logical_id].get("Condition")
        return cond is None or self.conditions[cond]

    @property
    def resources(self) -> dict[str, dict]:
        return {k: self.resolve(v) for k, v in self.template["Resources"].items() if self.exists(k)}

    @property
    def outputs(self) -> dict[str, dict]:
        return {
            k: self.resolve(v)
            for k, v in self.template.get("Outputs", {}).items()
            if "Condition" not in v or self.conditions[v["Condition"]]
        }

    def resolve(self, node):
        """Fn::If replaced by the branch taken; AWS::NoValue removed from mappings and lists."""
        if isinstance(node, list):
            return [r for r in (self.resolve(n) for n in node) if r != NO_VALUE]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::If"}:
            cond, yes, no = node["Fn::If"]
            return self.resolve(yes if self.conditions[cond] else no)
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in node.items()) if r != NO_VALUE}


SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def references(node) -> set[str]:
    """Logical ids a value refers to (Ref, Fn::GetAtt, Fn::Sub variables), pseudo parameters left out."""
    found: set[str] = set()
    if isinstance(node, list):
        for n in node:
            found |= references(n)
    elif isinstance(node, dict):
        if set(node) == {"Ref"}:
            found.add(node["Ref"])
        elif set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else target.split(".", 1)[0])
        elif set(node) == {"Fn::Sub"}:
            text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            found |= {v.split(".", 1)[0] for v in SUB_VAR.findall(text)} - set(variables)
            found |= references(list(variables.values()))
        else:
            for v in node.values():
                found |= references(v)
    return {f for f in found if not f.startswith("AWS::")}


@pytest.fixture(scope="module", params=MODES, ids=MODE_IDS)
def mode(request, cfn):
    return request.param, Deployment(cfn, request.param)


# ---- parameters and conditions --------------------------------------------------------------------
def test_parameters(sam):
    p = sam["Parameters"]
    for name in ("EnableRdsProxy", "EnableScheduledSwitchover"):
        assert (p[name]["Type"], p[name]["Default"], p[name]["AllowedValues"]) == ("String", "false", ["true", "false"])
        assert p[name]["Description"]
    cron = p["ScheduledSwitchoverCron"]
    assert cron["Default"] == "cron(0 4 ? * SUN *)"
    assert cron["ConstraintDescription"]
    assert re.fullmatch(cron["AllowedPattern"], cron["Default"])


@pytest.mark.parametrize(
    ("expression", "allowed"),
    [
        ("cron(0 4 ? * SUN *)", True),
        ("cron(30 2 ? * TUE#1 *)", True),
        ("rate(7 days)", True),
        ("rate(1 day)", True),
        ("rate(12 hours)", True),
        ("rate(5 minutes)", False),  # a switchover every few minutes is never a drill
        ("rate(0 days)", False),
        ("at(2026-12-01T04:00:00)", False),
        ("cron(0 4 ? * SUN *) ", False),
        ("cron()", False),
        ("", False),
        ("0 4 * * 0", False),
    ],
)
def test_schedule_expression_pattern(sam, expression, allowed):
    assert bool(re.fullmatch(sam["Parameters"]["ScheduledSwitchoverCron"]["AllowedPattern"], expression)) is allowed


def test_conditions(sam):
    c = sam["Conditions"]
    assert c["UseRdsProxy"] == {"Fn::Equals": [ref("EnableRdsProxy"), "true"]}
    assert c["UseScheduledSwitchover"] == {"Fn::Equals": [ref("EnableScheduledSwitchover"), "true"]}


def test_evaluator_evaluates(cfn):
    """The evaluator itself, on the template's other conditions and on made-up ones."""
    d = Deployment(cfn, {"AlertEmail": "ops@example.com", "ReaderCount": "1"})
    assert d.conditions["HasAlertEmail"] is True and d.conditions["HasSecondReader"] is False
    assert d.conditions["IsDeletionProtected"] is True and d.conditions["UseRdsProxy"] is False
    t = {
        "Parameters": {"A": {"Default": "x"}, "B": {"Default": "y"}},
        "Conditions": {
            "IsX": {"Fn::Equals": [ref("A"), "x"]},
            "IsY": {"Fn::Equals": ["y", ref("B")]},
            "Both": {"Fn::And": [{"Condition": "IsX"}, {"Condition": "IsY"}]},
            "Either": {"Fn::Or": [{"Fn::Not": [{"Condition": "IsX"}]}, {"Condition": "IsY"}]},
            "Neither": {"Fn::Not": [{"Fn::Or": [{"Condition": "IsX"}, {"Condition": "IsY"}]}]},
        },
        "Resources": {},
    }
    assert Deployment(t, {}).conditions == {"IsX": True, "IsY": True, "Both": True, "Either": True, "Neither": False}
    assert Deployment(t, {"A": "z", "B": "z"}).conditions == {
        "IsX": False,
        "IsY": False,
        "Both": False,
        "Either": True,
        "Neither": True,
    }
    with pytest.raises(AssertionError, match="no such parameters"):
        Deployment(t, {"C": "1"})


def test_references_finds_every_kind(cfn):
    node = {
        "a": ref("X"),
        "b": getatt("Y", "Arn"),
        "c": sub("${Z.Endpoint}/${AWS::Region}/${!Literal}"),
        "d": {"Fn::Sub": ["${V}-${W}", {"V": ref("U")}]},
        "e": [ref("AWS::AccountId")],
    }
    assert references(node) == {"X", "Y", "Z", "W", "U"}


# ---- both values of both switches -------------------------------------------------------------------
def test_conditional_resources_are_exactly_the_optional_features(cfn):
    conditional = {k: r["Condition"] for k, r in cfn["Resources"].items() if r.get("Condition")}
    assert {k for k, c in conditional.items() if c == "UseRdsProxy"} == PROXY_RESOURCES
    assert {k for k, c in conditional.items() if c == "UseScheduledSwitchover"} == SCHEDULE_RESOURCES
    outputs = {k: o["Condition"] for k, o in cfn["Outputs"].items() if o.get("Condition")}
    assert outputs == dict.fromkeys(PROXY_OUTPUTS, "UseRdsProxy")


def test_what_each_mode_deploys(mode, cfn):
    params, d = mode
    proxy, schedule = params["EnableRdsProxy"] == "true", params["EnableScheduledSwitchover"] == "true"
    deployed = set(d.resources)
    assert PROXY_RESOURCES & deployed == (PROXY_RESOURCES if proxy else set())
    assert SCHEDULE_RESOURCES & deployed == (SCHEDULE_RESOURCES if schedule else set())
    # the drill is always there: it costs nothing until someone starts it
    assert {"FailoverDrillExperimentTemplate", "FailoverDrillRole", "FailoverDrillLogGroup"} <= deployed
    assert PROXY_OUTPUTS & set(d.outputs) == (PROXY_OUTPUTS if proxy else set())
    assert "FailoverDrillTemplateId" in d.outputs


def test_nothing_references_a_resource_that_is_not_deployed(mode):
    """A Ref/GetAtt/Sub/DependsOn to a resource whose condition is false fails the whole deploy."""
    _, d = mode
    deployed = set(d.resources)
    parameters = set(d.params)
    for logical_id, res in d.resources.items():
        refs = references(res.get("Properties", {})) | set(
            res.get("DependsOn", []) if isinstance(res.get("DependsOn", []), list) else [res["DependsOn"]]
        )
        missing = refs - deployed - parameters
        assert not missing, f"{logical_id} refers to {missing}, not deployed with {d.params['EnableRdsProxy']=}"
    for key, output in d.outputs.items():
        missing = references(output["Value"]) - deployed - parameters
        assert not missing, f"output {key} refers to {missing}"


def test_the_checker_catches_a_dangling_reference(cfn):
    """The check above fails on a template that references a conditional resource unconditionally."""
    broken = json.loads(json.dumps(cfn))
    broken["Outputs"]["RdsProxyEndpoint"].pop("Condition")
    d = Deployment(broken, {"EnableRdsProxy": "false"})
    assert references(d.outputs["RdsProxyEndpoint"]["Value"]) - set(d.resources) == {"RdsProxy"}


def _ifs(node, path=""):
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            yield path, node["Fn::If"]
        for k, v in node.items():
            yield from _ifs(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _ifs(v, f"{path}/{i}")


def test_every_if_on_the_switches_resolves_to_a_sane_value(cfn, mode):
    """Each Fn::If on UseRdsProxy / UseScheduledSwitchover yields NoValue or a value that exists."""
    _, d = mode
    seen = 0
    for logical_id, res in cfn["Resources"].items():
        if not d.exists(logical_id):
            continue
        for path, (cond, yes, no) in _ifs(res):
            if cond not in ("UseRdsProxy", "UseScheduledSwitchover"):
                continue
            seen += 1
            taken = d.resolve(yes if d.conditions[cond] else no)
            if taken is None or taken == NO_VALUE:
                continue
            assert taken not in ("", [], {}), f"{logical_id}{path}: empty value"
            assert references(taken) <= set(d.resources), f"{logical_id}{path}: {taken}"
    assert seen >= 3  # health checker: endpoint + app secret; drainer: endpoint


@pytest.mark.parametrize("function", ["HealthCheckerFunction", "ConnectionDrainerFunction"])
def test_functions_see_the_proxy_only_when_it_exists(cfn, mode, function):
    """The resolved environment, read by the real hapg.config: proxy endpoint and app secret or neither."""
    params, d = mode
    proxy = params["EnableRdsProxy"] == "true"
    variables = {**d.resources[function]["Properties"]["Environment"]["Variables"]}
    if proxy:
        assert variables[names.Env.DB_PROXY_ENDPOINT] == getatt("RdsProxy", "Endpoint")
    assert (names.Env.DB_PROXY_ENDPOINT in variables) is proxy
    if function == "HealthCheckerFunction":
        assert variables.get(names.Env.APP_SECRET_ARN) == (ref("AppSecret") if proxy else None)
    else:
        assert names.Env.APP_SECRET_ARN not in variables  # the drainer never logs in as the app user
    stand_ins = {
        names.Env.DB_PROXY_ENDPOINT: "hapg-dev-proxy.proxy-abcdefghijkl.us-east-1.rds.amazonaws.com",
        names.Env.APP_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/app-AbCdEf",
        names.Env.CLUSTER_ID: "hapg-dev-cluster",
        names.Env.DB_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/master-AbCdEf",
        names.Env.DB_WRITER_ENDPOINT: "writer.example.internal",
        names.Env.DB_READER_ENDPOINT: "reader.example.internal",
        names.Env.DB_PORT: "5432",
    }
    settings = config.load({k: v if isinstance(v, str) else stand_ins.get(k, "x") for k, v in variables.items()})
    if proxy:
        assert str(settings.db.proxy) == f"{stand_ins[names.Env.DB_PROXY_ENDPOINT]}:5432"
        assert settings.app_secret_arn == (
            stand_ins[names.Env.APP_SECRET_ARN] if function == "HealthCheckerFunction" else None
        )
    else:
        assert settings.db.proxy is None and settings.app_secret_arn is None


# ---- failover drill (FIS) -----------------------------------------------------------------------------
def test_drill_template(cfn):
    p = props(cfn, "FailoverDrillExperimentTemplate")
    assert p["Description"]
    assert p["RoleArn"] == getatt("FailoverDrillRole", "Arn")
    assert p["Targets"] == {
        "AuroraCluster": {"ResourceType": "aws:rds:cluster", "ResourceArns": [CLUSTER_ARN], "SelectionMode": "ALL"}
    }
    (action,) = p["Actions"].values()
    assert action["ActionId"] == "aws:rds:failover-db-cluster"
    assert action["Targets"] == {"Clusters": "AuroraCluster"}
    assert "Parameters" not in action and "StartAfter" not in action
    assert p["ExperimentOptions"] == {"AccountTargeting": "single-account", "EmptyTargetResolutionMode": "fail"}
    assert p["LogConfiguration"] == {
        "LogSchemaVersion": 2,
        "CloudWatchLogsConfiguration": {"LogGroupArn": getatt("FailoverDrillLogGroup", "Arn")},
    }


def test_drill_targets_the_cluster_the_failover_rule_watches(cfn):
    """Aurora's events of the drill's failover start the workflow like a real one's."""
    (target,) = props(cfn, "FailoverDrillExperimentTemplate")["Targets"].values()
    pattern = props(cfn, "FailoverEventRule")["EventPattern"]
    assert target["ResourceArns"] == pattern["resources"] == [CLUSTER_ARN]
    # a drill's failover emits started (0072/0073) and completed (0071): all in the rule
    assert {names.RdsEvent.STARTED_SAME_AZ, names.RdsEvent.STARTED_CROSS_AZ, names.RdsEvent.COMPLETED} <= set(
        pattern["detail"]["EventID"]
    )


def test_drill_stops_on_the_writer_unhealthy_alarm(cfn):
    (stop,) = props(cfn, "FailoverDrillExperimentTemplate")["StopConditions"]
    assert stop == {"Source": "aws:cloudwatch:alarm", "Value": getatt("WriterUnhealthyAlarm", "Arn")}
    alarm = props(cfn, "WriterUnhealthyAlarm")
    assert alarm["MetricName"] == names.Metric.HEALTHY
    assert alarm["AlarmName"] == sub(f"{PREFIX}-writer-unhealthy")


def test_drill_is_found_by_its_name_tag(cfn):
    tags = props(cfn, "FailoverDrillExperimentTemplate")["Tags"]
    assert isinstance(tags, dict)  # FIS tags are a map
    assert tags == {"Name": sub(f"{PREFIX}-failover-drill"), **REQUIRED_TAGS}
    runbook = (ROOT / "docs/runbook.md").read_text()
    assert "tags.Name=='hapg-$ENV-failover-drill'" in runbook


def test_drill_role_trusts_only_fis_experiments_of_this_account(cfn):
    role = props(cfn, "FailoverDrillRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "fis.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        "ArnLike": {"aws:SourceArn": arn("fis", "experiment/*")},
    }
    assert "ManagedPolicyArns" not in role


def test_drill_role_is_exactly_least_privilege(cfn):
    stmts = role_statements(cfn, "FailoverDrillRole")
    assert allowed_pairs(stmts) == {
        ("rds:FailoverDBCluster", j(CLUSTER_ARN)),
        ("rds:DescribeDBClusters", j(CLUSTER_ARN)),
        ("logs:CreateLogDelivery", j("*")),
        ("logs:DescribeResourcePolicies", j("*")),
        ("logs:DescribeLogGroups", j("*")),
    }
    assert not any("Condition" in s for s in stmts)
    assert all(s["Effect"] == "Allow" for s in stmts)


def test_drill_log_group_and_delivery_policy(cfn):
    group = props(cfn, "FailoverDrillLogGroup")
    assert group["LogGroupName"] == sub(f"/aws/vendedlogs/fis/{PREFIX}-failover-drill")
    assert group["KmsKeyId"] == getatt("LogsKey", "Arn")
    assert group["RetentionInDays"] >= 365
    assert tag_dict(group["Tags"]) == REQUIRED_TAGS
    policy = props(cfn, "FailoverDrillLogDeliveryPolicy")
    assert policy["PolicyName"] == sub(f"{PREFIX}-failover-drill-log-delivery")
    text = policy["PolicyDocument"]["Fn::Sub"]
    assert set(SUB_VAR.findall(text)) == {
        "FailoverDrillLogGroup.Arn",
        "AWS::AccountId",
        "AWS::Partition",
        "AWS::Region",
    }
    group_arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/fis/hapg-dev-failover-drill:*"
    values = {**PSEUDO, "FailoverDrillLogGroup.Arn": group_arn}
    (stmt,) = json.loads(SUB_VAR.sub(lambda m: values[m.group(1)], text))["Statement"]
    assert stmt == {
        "Sid": "FisExperimentLogDelivery",
        "Effect": "Allow",
        "Principal": {"Service": "delivery.logs.amazonaws.com"},
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": group_arn,  # this group only
        "Condition": {
            "StringEquals": {"aws:SourceAccount": "123456789012"},
            "ArnLike": {"aws:SourceArn": "arn:aws:logs:us-east-1:123456789012:*"},
        },
    }


# ---- scheduled switchover -------------------------------------------------------------------------------
def test_schedule_group(cfn):
    p = props(cfn, "ScheduledSwitchoverGroup")
    assert p["Name"] == sub(PREFIX)
    assert tag_dict(p["Tags"]) == REQUIRED_TAGS


def test_schedule(cfn):
    p = props(cfn, "ScheduledSwitchoverSchedule")
    assert p["Name"] == sub(f"{PREFIX}-scheduled-switchover")
    assert p["GroupName"] == ref("ScheduledSwitchoverGroup")
    assert p["Description"]
    assert p["ScheduleExpression"] == ref("ScheduledSwitchoverCron")
    assert p["ScheduleExpressionTimezone"] == "UTC"
    assert p["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert p["State"] == "ENABLED"
    assert p["KmsKeyArn"] == FUNCTION_KEY
    target = p["Target"]
    assert target["Arn"] == ref("FailoverStateMachine")
    assert target["RoleArn"] == getatt("ScheduledSwitchoverRole", "Arn")
    # a start later than 15 minutes would switch the writer over outside the chosen window
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 900, "MaximumRetryAttempts": 10}
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
    # the DLQ is encrypted with the key the role may use for it
    assert props(cfn, "FailoverEventDeadLetterQueue")["KmsMasterKeyId"] == FUNCTION_KEY


def test_schedule_input_is_the_console_contract(cfn):
    raw = props(cfn, "ScheduledSwitchoverSchedule")["Target"]["Input"]
    assert json.loads(raw) == SCHEDULE_INPUT
    request = triggers.parse_trigger(json.loads(raw), "hapg-dev-cluster")
    assert request == FailoverRequest(
        kind=names.Kind.SWITCHOVER, reason=SCHEDULE_INPUT["reason"], target=None, force=False
    )
    # maintenance mode refuses it like a person's switchover: it must not force
    assert request.force is False
    # the runbook quotes it verbatim
    assert json.dumps(SCHEDULE_INPUT) in (ROOT / "docs/runbook.md").read_text()


def test_the_contract_check_can_fail():
    with pytest.raises(InvalidInput, match="action"):
        triggers.parse_trigger({"action": "failover", "reason": "x"}, "hapg-dev-cluster")
    with pytest.raises(InvalidInput, match="when"):
        triggers.parse_trigger({**SCHEDULE_INPUT, "when": "sunday"}, "hapg-dev-cluster")


def test_default_time_is_in_the_quiet_window(sam):
    """Sunday 04:00 UTC: after the backup window closes, before the Sunday maintenance window opens."""
    minute, hour, dom, month, dow, year = sam["Parameters"]["ScheduledSwitchoverCron"]["Default"][5:-1].split()
    assert (minute, hour, dom, month, dow, year) == ("0", "4", "?", "*", "SUN", "*")
    cluster = props(sam, "AuroraCluster")
    backup_end = cluster["PreferredBackupWindow"].split("-")[1]
    maintenance_start = cluster["PreferredMaintenanceWindow"].split("-")[0]
    assert maintenance_start.startswith("sun:")
    assert backup_end <= f"{int(hour):02d}:{int(minute):02d}" < maintenance_start.removeprefix("sun:")


def test_schedule_role_trusts_only_this_schedule_group(cfn):
    role = props(cfn, "ScheduledSwitchoverRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        "ArnEquals": {"aws:SourceArn": getatt("ScheduledSwitchoverGroup", "Arn")},
    }
    assert "ManagedPolicyArns" not in role


def test_schedule_role_is_exactly_least_privilege(cfn):
    stmts = role_statements(cfn, "ScheduledSwitchoverRole")
    assert allowed_pairs(stmts) == {
        ("states:StartExecution", j(ref("FailoverStateMachine"))),
        ("sqs:SendMessage", j(DLQ_ARN)),
        ("kms:Decrypt", j(FUNCTION_KEY)),
        ("kms:GenerateDataKey", j(FUNCTION_KEY)),
    }
    sids = by_sid(stmts)
    schedule = props(cfn, "ScheduledSwitchoverSchedule")
    group_name = props(cfn, "ScheduledSwitchoverGroup")["Name"]["Fn::Sub"]
    schedule_arn = arn("scheduler", f"schedule/{group_name}/{schedule['Name']['Fn::Sub']}")
    assert sids["DecryptScheduleInput"]["Action"] == "kms:Decrypt"
    assert sids["DecryptScheduleInput"]["Condition"] == {
        "ArnEquals": {"kms:EncryptionContext:aws:scheduler:schedule:arn": schedule_arn}
    }
    assert sids["DeadLetterKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": sub("sqs.${AWS::Region}.amazonaws.com")}
    }
    for unconditional in ("StartFailoverWorkflow", "DeadLetters"):
        assert "Condition" not in sids[unconditional]


def test_dead_letter_queue_policy_needs_no_scheduler_statement(cfn):
    """Scheduler writes dead letters with the schedule's role (IAM), not as a service principal: the
    queue policy keeps admitting only the failover rule."""
    (policy,) = [
        p["Properties"]
        for k, p in cfn["Resources"].items()
        if p["Type"] == "AWS::SQS::QueuePolicy" and p["Properties"]["Queues"] == [ref("FailoverEventDeadLetterQueue")]
    ]
    principals = [s.get("Principal") for s in statements(policy["PolicyDocument"]) if s["Effect"] == "Allow"]
    assert principals == [{"Service": "events.amazonaws.com"}]


# ---- RDS Proxy --------------------------------------------------------------------------------------------
def test_proxy(cfn):
    p = props(cfn, "RdsProxy")
    assert p["DBProxyName"] == sub(f"{PREFIX}-proxy")
    assert p["EngineFamily"] == "POSTGRESQL"
    assert p["RequireTLS"] is True
    assert p["Auth"] == [
        {
            "Description": p["Auth"][0]["Description"],
            "AuthScheme": "SECRETS",
            "SecretArn": ref("AppSecret"),
            "IAMAuth": "REQUIRED",
            "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
        }
    ]
    assert p["RoleArn"] == getatt("RdsProxyRole", "Arn")
    assert p["VpcSubnetIds"] == SUBNETS
    assert p["VpcSecurityGroupIds"] == [ref("RdsProxySecurityGroup")]
    assert 0 < p["IdleClientTimeout"] <= 28800
    assert p["DebugLogging"] is False
    assert "DefaultAuthScheme" not in p  # the proxy logs in with the secret, not end-to-end IAM
    assert tag_dict(p["Tags"]) == REQUIRED_TAGS


def test_proxy_log_group_exists_before_the_proxy(cfn):
    group = props(cfn, "RdsProxyLogGroup")
    proxy_name = props(cfn, "RdsProxy")["DBProxyName"]["Fn::Sub"]
    assert group["LogGroupName"] == sub(f"/aws/rds/proxy/{proxy_name}")
    assert group["KmsKeyId"] == getatt("LogsKey", "Arn")
    assert group["RetentionInDays"] >= 365
    assert cfn["Resources"]["RdsProxy"]["DependsOn"] in ("RdsProxyLogGroup", ["RdsProxyLogGroup"])


def test_proxy_target_group(cfn):
    p = props(cfn, "RdsProxyTargetGroup")
    assert p["DBProxyName"] == ref("RdsProxy")
    assert p["TargetGroupName"] == "default"
    assert p["DBClusterIdentifiers"] == [ref("AuroraCluster")]
    assert "DBInstanceIdentifiers" not in p  # the cluster: the proxy follows its writer
    pool = p["ConnectionPoolConfigurationInfo"]
    # the proxy alone never fills the writer past the connections alarm
    alarm_pct = cfn["Parameters"]["ConnectionsAlarmPercent"]["Default"]
    assert 0 < pool["MaxIdleConnectionsPercent"] <= pool["MaxConnectionsPercent"] < alarm_pct
    # a client waits for a pooled connection longer than Aurora's failover takes (30-60 s)
    assert pool["ConnectionBorrowTimeout"] >= 60
    assert tag_dict(p["Tags"]) == REQUIRED_TAGS


def test_proxy_network_paths(cfn):
    sg = props(cfn, "RdsProxySecurityGroup")
    assert sg["GroupName"] == sub(f"{PREFIX}-proxy")
    assert sg["VpcId"] == ref("Vpc")
    assert sorted((r["FromPort"], r["DestinationSecurityGroupId"]["Ref"]) for r in sg["SecurityGroupEgress"]) == [
        (443, "EndpointSecurityGroup"),
        (5432, "DbSecurityGroup"),
    ]
    expected = {  # standalone rule -> (group, port, peer key, peer)
        "RdsProxySecurityGroupIngressFromLambda": (
            "RdsProxySecurityGroup",
            5432,
            "SourceSecurityGroupId",
            "LambdaSecurityGroup",
        ),
        "LambdaSecurityGroupEgressToProxy": (
            "LambdaSecurityGroup",
            5432,
            "DestinationSecurityGroupId",
            "RdsProxySecurityGroup",
        ),
        "DbSecurityGroupIngressFromProxy": ("DbSecurityGroup", 5432, "SourceSecurityGroupId", "RdsProxySecurityGroup"),
        "EndpointSecurityGroupIngressFromProxy": (
            "EndpointSecurityGroup",
            443,
            "SourceSecurityGroupId",
            "RdsProxySecurityGroup",
        ),
    }
    for logical_id, (group, port, key, peer) in expected.items():
        rule = props(cfn, logical_id)
        assert rule["GroupId"] == ref(group), logical_id
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", port, port), logical_id
        assert rule[key] == ref(peer), logical_id
        assert rule["Description"].strip(), logical_id
    # the only ingress into the proxy is the Lambda tier's (applications add their own rules)
    ingress = [
        k
        for k, r in cfn["Resources"].items()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress" and r["Properties"]["GroupId"] == ref("RdsProxySecurityGroup")
    ]
    assert ingress == ["RdsProxySecurityGroupIngressFromLambda"] and "SecurityGroupIngress" not in sg


def test_proxy_role(cfn):
    role = props(cfn, "RdsProxyRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "rds.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert "Condition" not in trust  # why: the comment on RdsProxyRole in template.yaml
    assert "ManagedPolicyArns" not in role
    stmts = role_statements(cfn, "RdsProxyRole")
    assert allowed_pairs(stmts) == {
        ("secretsmanager:GetSecretValue", j(ref("AppSecret"))),
        ("kms:Decrypt", j(SECRETS_KEY)),
    }
    assert by_sid(stmts)["DecryptAppSecret"]["Condition"] == APP_SECRET_VIA


def _connect_arn_user(resource: dict) -> tuple[str, str]:
    """(proxy resource id for a sample proxy ARN, db user) of an rds-db:connect resource."""
    text, variables = resource["Fn::Sub"]
    assert text.startswith("arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:${ProxyResourceId}/")
    select = variables["ProxyResourceId"]["Fn::Select"]
    index, (delimiter, source) = select[0], select[1]["Fn::Split"]
    assert source == getatt("RdsProxy", "DBProxyArn")
    sample = "arn:aws:rds:us-east-1:123456789012:db-proxy:prx-0123456789abcdef0"
    return sample.split(delimiter)[index], text.rsplit("/", 1)[1]


def test_health_checker_proxy_policy(cfn):
    res = cfn["Resources"]["HealthCheckerProxyPolicy"]
    assert res["Type"] == "AWS::IAM::Policy"
    p = res["Properties"]
    # attached to the health checker's own (SAM-generated) role, nobody else's
    assert p["Roles"] == [ref("HealthCheckerFunctionRole")]
    assert props(cfn, "HealthCheckerFunction")["Role"] == getatt("HealthCheckerFunctionRole", "Arn")
    stmts = statements(p["PolicyDocument"])
    sids = by_sid(stmts)
    connect = sids["ConnectThroughProxy"]["Resource"]
    assert {(a, r) for a, r in allowed_pairs(stmts) if a != "rds-db:connect"} == {
        ("secretsmanager:GetSecretValue", j(ref("AppSecret"))),
        ("kms:Decrypt", j(SECRETS_KEY)),
    }
    assert {a for a, _ in allowed_pairs(stmts)} == {"secretsmanager:GetSecretValue", "kms:Decrypt", "rds-db:connect"}
    assert sids["DecryptAppSecret"]["Condition"] == APP_SECRET_VIA
    # rds-db:connect on this proxy (its prx-... id, from DBProxyArn) as either alternating app user
    app = names.Rotation.APP_USER
    assert sorted(_connect_arn_user(r) for r in connect) == [
        ("prx-0123456789abcdef0", app),
        ("prx-0123456789abcdef0", app + names.Rotation.CLONE_SUFFIX),
    ]
    secret_template = props(cfn, "AppSecret")["GenerateSecretString"]["SecretStringTemplate"]["Fn::Sub"][0]
    assert json.loads(secret_template.replace("${Port}", "5432"))["username"] == app


def test_health_checker_role_reads_no_app_secret_without_the_proxy(cfn):
    """Without the proxy the checker has no use for the app user's password: its inline role never grants it."""
    granted = {r for _, r in allowed_pairs(role_statements(cfn, "HealthCheckerFunctionRole"))}
    assert j(ref("AppSecret")) not in granted


def test_proxy_outputs(cfn):
    assert cfn["Outputs"]["RdsProxyEndpoint"]["Value"] == getatt("RdsProxy", "Endpoint")
    assert cfn["Outputs"]["RdsProxySecurityGroupId"]["Value"] == ref("RdsProxySecurityGroup")
    assert cfn["Outputs"]["FailoverDrillTemplateId"]["Value"] == ref("FailoverDrillExperimentTemplate")
    for key in (*PROXY_OUTPUTS, "FailoverDrillTemplateId"):
        assert cfn["Outputs"][key]["Export"] == {"Name": sub(f"${{AWS::StackName}}-{key}")}


@pytest.mark.parametrize(
    "logical_id",
    sorted(
        (PROXY_RESOURCES | SCHEDULE_RESOURCES | {"FailoverDrillRole", "FailoverDrillLogGroup"})
        - {
            "HealthCheckerProxyPolicy",
            "ScheduledSwitchoverSchedule",  # not taggable (CloudFormation schema)
            "RdsProxySecurityGroupIngressFromLambda",
            "LambdaSecurityGroupEgressToProxy",
            "DbSecurityGroupIngressFromProxy",
            "EndpointSecurityGroupIngressFromProxy",
        }
    ),
)
def test_operations_resources_carry_the_seven_tags(cfn, logical_id):
    assert tag_dict(props(cfn, logical_id)["Tags"]) == REQUIRED_TAGS
