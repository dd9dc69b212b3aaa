"""The operations dashboard, the alarms and the alert path, as CloudFormation deploys them.

The dashboard body is resolved (parameters, conditions, Fn::Sub) and parsed as real JSON for both
ReaderCount values; every metric it or an alarm references must exist: custom metrics by name and
dimension set as the code emits them (hapg.names / hapg.telemetry; proven by
tests/integration/test_emitted_metrics.py), AWS metrics against the allow-list below, and every
dimension value must name a resource of this template.
"""

from __future__ import annotations

import fnmatch
import json
import re

import pytest
from hapg import names
from template_helpers import PREFIX, ROOT, TEMPLATE, getatt, props, ref, resources, statements, sub

from observability import alarms as alarm_defs
from observability import catalog, render
from observability.readback import Resolver, alarm_uses, dashboard, widget_uses

# AWS metrics the dashboard and alarms may use, with the dimension sets CloudWatch publishes them under:
#   AWS/RDS     Aurora instance metrics per DBInstanceIdentifier, aggregated per DBClusterIdentifier and
#               per DBClusterIdentifier + Role (WRITER / READER): "Amazon CloudWatch dimensions for
#               Aurora" and "Instance-level metrics for Amazon Aurora" (Aurora User Guide).
#               AuroraReplicaLag comes from readers, AuroraReplicaLagMaximum from the writer.
#   AWS/Lambda  per FunctionName: "Types of metrics for Lambda functions" (Lambda Developer Guide).
#   AWS/States  execution metrics per StateMachineArn: "Monitoring Step Functions metrics using
#               Amazon CloudWatch" (Step Functions Developer Guide).
#   AWS/SQS     per QueueName: "Available CloudWatch metrics for Amazon SQS" (SQS Developer Guide).
RDS_DIMENSIONS = {
    frozenset({"DBInstanceIdentifier"}),
    frozenset({"DBClusterIdentifier"}),
    frozenset({"DBClusterIdentifier", "Role"}),
}
AWS_METRICS = {
    **{
        ("AWS/RDS", m): RDS_DIMENSIONS
        for m in (
            "AuroraReplicaLag",
            "AuroraReplicaLagMaximum",
            "CommitThroughput",
            "CommitLatency",
            "DatabaseConnections",
            "CPUUtilization",
            "FreeableMemory",
        )
    },
    **{
        ("AWS/Lambda", m): {frozenset({"FunctionName"})}
        for m in ("Errors", "Throttles", "Duration", "Invocations", "ConcurrentExecutions")
    },
    **{
        ("AWS/States", m): {frozenset({"StateMachineArn"})}
        for m in (
            "ExecutionsStarted",
            "ExecutionsSucceeded",
            "ExecutionsFailed",
            "ExecutionsTimedOut",
            "ExecutionsAborted",
            "ExecutionTime",
        )
    },
    **{
        ("AWS/SQS", m): {frozenset({"QueueName"})}
        for m in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage")
    },
}
CUSTOM_METRICS = {v for k, v in vars(names.Metric).items() if k.isupper() and not k.startswith(("NAMESPACE", "DIM_"))}
STAT = re.compile(r"^(Average|Sum|Minimum|Maximum|SampleCount|p\d{1,2}(\.\d+)?)$")
READER_COUNTS = ("1", "2")


@pytest.fixture(scope="module", params=READER_COUNTS, ids=lambda rc: f"ReaderCount={rc}")
def deployed(request, cfn):
    """(resolver, parsed dashboard body, metric uses of dashboard + alarms) for one ReaderCount."""
    resolver = Resolver(cfn, {"ReaderCount": request.param, "EnvironmentSuffix": "dev"})
    body = dashboard(cfn, resolver)
    return resolver, body, widget_uses(body), alarm_uses(cfn, resolver)


def existing(cfn, resolver, type_: str, name_prop: str) -> set[str]:
    return {
        resolver.resolve(p["Properties"][name_prop])
        for logical_id, p in resources(cfn, type_).items()
        if resolver.exists(logical_id)
    }


def known_values(cfn, resolver) -> dict[str, set[str]]:
    """Every value a dimension may take: the names this template gives its resources."""
    machines = {resolver.ref(k) for k in resources(cfn, "AWS::StepFunctions::StateMachine")}
    return {
        "ClusterId": {
            resolver.resolve(
                cfn["Resources"]["HealthCheckerFunction"]["Properties"]["Environment"]["Variables"][
                    names.Env.CLUSTER_ID
                ]
            )
        },
        "InstanceId": existing(cfn, resolver, "AWS::RDS::DBInstance", "DBInstanceIdentifier"),
        "DBInstanceIdentifier": existing(cfn, resolver, "AWS::RDS::DBInstance", "DBInstanceIdentifier"),
        "DBClusterIdentifier": existing(cfn, resolver, "AWS::RDS::DBCluster", "DBClusterIdentifier"),
        "Role": {"WRITER", "READER"},
        "FunctionName": existing(cfn, resolver, "AWS::Lambda::Function", "FunctionName"),
        "QueueName": existing(cfn, resolver, "AWS::SQS::Queue", "QueueName"),
        "StateMachineArn": machines,
    }


# ---- one source: the committed template and picture are what observability/ renders ----------------


def test_generated_blocks_in_template_are_current():
    text = TEMPLATE.read_text()
    for block, expected in render.rendered_blocks().items():
        assert render.committed_block(text, block) == expected, f"{block} is stale: run `make render`"


def test_dashboard_picture_is_current():
    assert (ROOT / "docs" / "dashboard.png").is_file()
    assert render.picture_hash() == render.layout_hash(), "docs/dashboard.png is stale: run `make render`"


def test_runbook_alarm_table_is_current():
    text = render.RUNBOOK.read_text()
    assert render.apply_runbook(text, render.alarm_table()) == text, "docs/runbook.md is stale: run `make render`"
    for alarm in alarm_defs.build():
        assert f"`hapg-<env>-{alarm.suffix}`" in text


def test_render_refuses_a_template_without_markers():
    with pytest.raises(ValueError, match="markers"):
        render.apply("Resources: {}\n", render.rendered_blocks())


# ---- the dashboard ------------------------------------------------------------------------------------


def test_dashboard_resource(cfn):
    p = props(cfn, "OperationsDashboard")
    assert p["DashboardName"] == sub(f"{PREFIX}-dashboard")
    assert set(cfn["Resources"]["OperationsDashboard"]["DependsOn"]) == set(resources(cfn, "AWS::CloudWatch::Alarm"))


def test_dashboard_body_is_json_and_the_grid_is_sound(deployed):
    _, body, _, _ = deployed
    assert body["widgets"]
    taken: set[tuple[int, int]] = set()
    for w in body["widgets"]:
        assert w["type"] in {"metric", "text", "log", "alarm"}
        assert w["x"] >= 0 and w["x"] + w["width"] <= 24, w
        cells = {(x, y) for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])}
        assert not cells & taken, f"overlap: {w['properties'].get('title')}"
        taken |= cells
        if w["type"] in {"metric", "log"}:
            assert w["properties"]["region"] == "us-east-1"
            assert w["properties"]["title"]


def _check_use(use, values: dict[str, set[str]]) -> None:
    assert use.stat is None or STAT.match(use.stat), use
    if use.namespace == names.Metric.NAMESPACE:
        assert use.name in CUSTOM_METRICS, f"{use.where}: {use.name} is not in hapg.names.Metric"
        expected = {names.Metric.DIM_CLUSTER}
        if use.name in catalog.PER_INSTANCE:
            expected.add(names.Metric.DIM_INSTANCE)
        assert use.dimension_names == expected, f"{use.where}: {use.name} is emitted with {expected}"
    else:
        allowed = AWS_METRICS.get((use.namespace, use.name))
        assert allowed, f"{use.where}: {use.namespace} {use.name} is not on the allow-list"
        assert use.dimension_names in allowed, f"{use.where}: {use.name} has no dimension set {use.dims}"
    for key, value in use.dims:
        assert value in values[key], f"{use.where}: {key}={value!r} names nothing in this template ({values[key]})"


def test_every_widget_metric_exists(deployed, cfn):
    resolver, _, uses, _ = deployed
    values = known_values(cfn, resolver)
    assert len(uses) > 40
    for use in uses:
        _check_use(use, values)


def test_dashboard_shows_what_the_issue_asks_for(deployed, cfn):
    resolver, body, uses, _ = deployed
    values = known_values(cfn, resolver)
    by_metric: dict[tuple[str, str], list] = {}
    for use in uses:
        by_metric.setdefault((use.namespace, use.name), []).append(use)

    def dim_values(namespace: str, metric: str, key: str) -> set[str]:
        return {v for u in by_metric.get((namespace, metric), []) for k, v in u.dims if k == key}

    # replication lag of every instance (Aurora's and ours), plus Aurora's maximum
    assert dim_values("AWS/RDS", "AuroraReplicaLag", "DBInstanceIdentifier") == values["DBInstanceIdentifier"]
    assert dim_values(names.Metric.NAMESPACE, names.Metric.REPLICA_LAG, "InstanceId") == values["InstanceId"]
    assert ("AWS/RDS", "AuroraReplicaLagMaximum") in by_metric
    # transactions, connections (per instance, per state, % of max), cluster
    assert dim_values("AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier") == values["DBInstanceIdentifier"]
    m = names.Metric
    required_custom = {
        m.TPS, m.CONNECTIONS_ACTIVE, m.CONNECTIONS_IDLE, m.CONNECTIONS_IDLE_IN_TX, m.CONNECTIONS_PCT_MAX,
        m.BACKUP_AGE, m.PITR_LAG, m.RESTORE_SUCCEEDED, m.RESTORE_DURATION,  # backups
        m.SWITCHOVERS, m.FAILOVERS,  # failover history
        m.HEALTHY, m.WRITE_PROBE_LATENCY, m.HEALTH_CHECK_FAILED,  # health checks
        m.AUTOMATION_PAUSED,
    }  # fmt: skip
    assert {(m.NAMESPACE, x) for x in required_custom} <= set(by_metric)
    for metric in ("CommitThroughput", "CPUUtilization", "FreeableMemory", "CommitLatency"):
        assert ("AWS/RDS", metric) in by_metric, metric
    for metric in ("ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut"):
        assert resolver.ref("FailoverStateMachine") in dim_values("AWS/States", metric, "StateMachineArn"), metric
    for metric in ("Errors", "Throttles", "Duration"):  # all five functions, whether deployed or not
        expected = {resolver.sub(f"{PREFIX}-{names.Function.resource_suffix(fn)}") for fn in names.Function.ALL}
        assert dim_values("AWS/Lambda", metric, "FunctionName") == expected, metric


def test_recent_failovers_table_reads_the_coordinator_outcome_line(deployed, cfn):
    resolver, body, _, _ = deployed
    logs = {w["properties"]["title"]: w["properties"]["query"] for w in body["widgets"] if w["type"] == "log"}
    groups = {resolver.resolve(p["Properties"]["LogGroupName"]) for p in resources(cfn, "AWS::Logs::LogGroup").values()}
    for title, query in logs.items():
        sources = re.findall(r"SOURCE '([^']+)'", query)
        assert sources and set(sources) <= groups, f"{title}: {sources} are not log groups of this stack"
        assert "${" not in query
    (outcome,) = [q for t, q in logs.items() if t.startswith("Recent failovers")]
    assert f'filter message = "{names.OutcomeLog.MESSAGE}"' in outcome
    assert "/aws/lambda/hapg-dev-failover-coordinator" in outcome
    shown = set(re.findall(r"\b([a-z_]+)\b", outcome.split("| fields", 1)[1].split("|")[0]))
    assert set(names.OutcomeLog.FIELDS) <= shown  # when, mode, old -> new writer, duration, result
    (unrecorded,) = [q for t, q in logs.items() if t.startswith("Executions that did not succeed")]
    assert "/aws/vendedlogs/states/hapg-dev-failover" in unrecorded
    assert all(s in unrecorded for s in ("ExecutionTimedOut", "ExecutionAborted"))


def test_alarm_widget_lists_every_alarm(deployed, cfn):
    resolver, body, _, _ = deployed
    (widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    arns = {
        f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{resolver.resolve(p['Properties']['AlarmName'])}"
        for p in resources(cfn, "AWS::CloudWatch::Alarm").values()
    }
    assert set(widget["properties"]["alarms"]) == arns


def test_reader_2_appears_only_when_deployed(deployed):
    resolver, body, _, _ = deployed
    shown = "hapg-dev-reader-2" in json.dumps(body)
    assert shown == resolver.condition(catalog.HAS_SECOND_READER)


def test_threshold_annotations_are_numbers(deployed):
    _, body, _, _ = deployed
    annotations = [
        (w["properties"]["title"], a)
        for w in body["widgets"]
        for a in w["properties"].get("annotations", {}).get("horizontal", [])
    ]
    assert annotations, "no threshold annotation found"
    for title, a in annotations:
        assert isinstance(a["value"], int | float), title


# ---- alarms ---------------------------------------------------------------------------------------------
EVENT_ALARMS = {
    "FailoverWorkflowFailedAlarm",
    "FailoverHappenedAlarm",
    "RestoreTestUnfinishedAlarm",
}  # no "OK" e-mail a minute later
# What the issue lists -> the alarm that covers it.
ISSUE_ALARMS = {
    "writer unhealthy (including missing data)": ["WriterUnhealthyAlarm"],
    "replica lag over threshold": ["ReplicaLagHighAlarm"],
    "CPU over threshold": ["CpuHighAlarm"],
    "freeable memory under threshold": ["FreeableMemoryLowAlarm"],
    "connections near the maximum": ["ConnectionsNearMaxAlarm"],
    "backup age over 26 h": ["BackupTooOldAlarm", "BackupCheckMissingAlarm"],
    "PITR lag too high": ["PitrLagHighAlarm"],
    "restore test failed or missing": [
        "RestoreTestFailedAlarm",
        "RestoreTestMissingAlarm",
        "RestoreTestUnfinishedAlarm",
    ],
    "failover workflow failed or timed out": ["FailoverWorkflowFailedAlarm"],
    "a failover happened, as information": ["FailoverHappenedAlarm"],
    "Lambda errors and throttles": [
        f"{''.join(p.capitalize() for p in fn.split('_'))}{kind}Alarm"
        for fn in names.Function.ALL
        for kind in ("Errors", "Throttles")
    ],
    "DLQ depth above zero": ["FunctionDlqNotEmptyAlarm", "FailoverEventsDlqNotEmptyAlarm"],
}


def test_every_item_of_the_issue_has_its_alarm(cfn):
    alarms = resources(cfn, "AWS::CloudWatch::Alarm")
    for item, logical_ids in ISSUE_ALARMS.items():
        for logical_id in logical_ids:
            assert logical_id in alarms, f"{item}: {logical_id} missing"


def test_every_alarm_notifies_the_topic_and_recovers_where_it_makes_sense(cfn):
    alarms = resources(cfn, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 25
    for logical_id, alarm in alarms.items():
        p = alarm["Properties"]
        assert p["AlarmActions"] == [ref("AlertTopic")], logical_id
        assert p.get("ActionsEnabled", True) is True, logical_id
        if logical_id in EVENT_ALARMS:
            assert "OKActions" not in p, logical_id
        else:
            assert p["OKActions"] == [ref("AlertTopic")], logical_id
        assert "InsufficientDataActions" not in p, logical_id


def test_missing_data_is_a_deliberate_choice(cfn):
    missing = {k: v["Properties"]["TreatMissingData"] for k, v in resources(cfn, "AWS::CloudWatch::Alarm").items()}
    assert set(missing.values()) <= {"breaching", "notBreaching", "ignore"}
    assert missing["WriterUnhealthyAlarm"] == "breaching"  # a silent health checker pages
    assert missing["ReplicaLagHighAlarm"] == "breaching"  # no lag figure = no replica replicating
    assert missing["BackupCheckMissingAlarm"] == missing["RestoreTestMissingAlarm"] == "breaching"
    for latest_result in (
        "BackupTooOldAlarm",
        "PitrLagHighAlarm",
        "RestoreTestFailedAlarm",
        "SecretRotationFailedAlarm",
    ):
        assert missing[latest_result] == "ignore", latest_result  # the latest result holds until the next
    assert missing["FunctionDlqNotEmptyAlarm"] == missing["FailoverEventsDlqNotEmptyAlarm"] == "notBreaching"


def test_every_alarm_metric_exists(deployed, cfn):
    resolver, _, _, uses = deployed
    values = known_values(cfn, resolver)
    assert {u.where for u in uses} == set(resources(cfn, "AWS::CloudWatch::Alarm"))
    for use in uses:
        _check_use(use, values)


def test_alarm_thresholds_are_parameters_with_sane_defaults(cfn):
    params = cfn["Parameters"]
    used = set()
    for logical_id, alarm in resources(cfn, "AWS::CloudWatch::Alarm").items():
        p = alarm["Properties"]
        for key in ("Threshold", "EvaluationPeriods"):
            if isinstance(p[key], dict):
                name = p[key]["Ref"]
                used.add(name)
                assert params[name]["Type"] == "Number", (logical_id, name)
    assert used == {t.name for t in alarm_defs.THRESHOLDS}
    for t in alarm_defs.THRESHOLDS:
        p = params[t.name]
        assert p["MinValue"] <= p["Default"] <= p.get("MaxValue", p["Default"]), t.name
        assert p["Description"], t.name
    assert params["BackupAgeAlarmHours"]["Default"] == 26  # the issue's figure


def test_evaluation_windows_are_ones_cloudwatch_accepts(cfn):
    for logical_id, alarm in resources(cfn, "AWS::CloudWatch::Alarm").items():
        p = alarm["Properties"]
        period = p.get("Period") or p["Metrics"][1]["MetricStat"]["Period"]
        evaluations = p["EvaluationPeriods"]
        if isinstance(evaluations, dict):
            evaluations = cfn["Parameters"][evaluations["Ref"]].get("MaxValue", 1)
        assert period % 60 == 0, logical_id
        limit = 86400 if period < 3600 else 604800  # PutMetricAlarm: period x evaluations
        assert period * evaluations <= limit, logical_id
        assert p.get("DatapointsToAlarm", evaluations) <= evaluations, logical_id


def test_alarm_messages_read_well(cfn, sam):
    for logical_id, alarm in resources(cfn, "AWS::CloudWatch::Alarm").items():
        p = alarm["Properties"]
        name = p["AlarmName"]["Fn::Sub"]
        assert re.fullmatch(r"hapg-\$\{EnvironmentSuffix\}-[a-z0-9-]+", name), name  # the e-mail subject
        description = p["AlarmDescription"]
        text = description["Fn::Sub"] if isinstance(description, dict) else description
        assert 80 < len(text) <= 1024, logical_id
        assert "docs/runbook.md" in text, logical_id
        assert "${" not in text or isinstance(description, dict), logical_id


# ---- the alert path -----------------------------------------------------------------------------------------


def _source_arns(cfn, resolver) -> dict[str, str]:
    (policy,) = resources(cfn, "AWS::SNS::TopicPolicy").values()
    return {
        s["Principal"]["Service"]: resolver.resolve(s["Condition"]["ArnLike"]["aws:SourceArn"])
        for s in statements(policy["Properties"]["PolicyDocument"])
        if s["Effect"] == "Allow"
    }


def test_every_alarm_and_notice_rule_may_publish_to_the_topic(cfn):
    """A name outside the topic policy's SourceArn pattern deploys fine and silently never notifies."""
    resolver = Resolver(cfn, {"EnvironmentSuffix": "prod"})
    patterns = _source_arns(cfn, resolver)
    for logical_id, alarm in resources(cfn, "AWS::CloudWatch::Alarm").items():
        arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{resolver.resolve(alarm['Properties']['AlarmName'])}"
        assert fnmatch.fnmatchcase(arn, patterns["cloudwatch.amazonaws.com"]), logical_id
    for logical_id, rule in resources(cfn, "AWS::Events::Rule").items():
        if any(t["Arn"] == ref("AlertTopic") for t in rule["Properties"]["Targets"]):
            arn = f"arn:aws:events:us-east-1:123456789012:rule/{resolver.resolve(rule['Properties']['Name'])}"
            assert fnmatch.fnmatchcase(arn, patterns["events.amazonaws.com"]), logical_id
    machine = resolver.ref("FailoverStateMachine")
    assert fnmatch.fnmatchcase(machine, patterns["states.amazonaws.com"])
    other_env = Resolver(cfn, {"EnvironmentSuffix": "dev"})
    assert not fnmatch.fnmatchcase(other_env.ref("FailoverStateMachine"), patterns["states.amazonaws.com"])


def test_the_topic_key_lets_cloudwatch_publish_encrypted(cfn):
    (stmt,) = [s for s in statements(props(cfn, "SnsKey")["KeyPolicy"]) if "Service" in s["Principal"]]
    assert "cloudwatch.amazonaws.com" in stmt["Principal"]["Service"]
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(stmt["Action"])
    assert props(cfn, "AlertTopic")["KmsMasterKeyId"] == getatt("SnsKey", "Arn")


def test_unfinished_executions_send_a_readable_notice(cfn):
    rule = props(cfn, "FailoverUnfinishedNoticeRule")
    assert rule["Name"] == sub(f"{PREFIX}-failover-unfinished")
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["TIMED_OUT", "ABORTED"], "stateMachineArn": [ref("FailoverStateMachine")]},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == ref("AlertTopic")
    transformer = target["InputTransformer"]
    template = transformer["InputTemplate"]
    assert template.startswith('"Failover workflow execution <name> ended <status>') and template.endswith('"')
    placeholders = set(re.findall(r"<([a-z]+)>", template))
    assert placeholders == set(transformer["InputPathsMap"]), "every <placeholder> must be mapped"
    assert all(path.startswith("$.") for path in transformer["InputPathsMap"].values())
