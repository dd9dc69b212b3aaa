"""The operations dashboard `hapg-<env>-dashboard`: widgets, layout and the JSON body.

Rows of widgets on CloudWatch's 24-column grid, top to bottom in the order an on-call engineer reads
them: what is alarming, the figures now, health checks, replication, throughput and connections,
the cluster, failover history, backups, then the Lambdas and queues behind it all.

A widget that shows the conditional reader-2 (ReaderCount=2) is rendered twice, with and without
it, and the template picks one with Fn::If: the dashboard never lists an instance that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hapg.names import DB_NAME, Function, Metric, OutcomeLog

from observability import alarms as alarm_defs
from observability.catalog import (
    CLUSTER,
    HAS_SECOND_READER,
    PREFIX,
    QUEUES,
    REGION,
    RESTORE_TEST_MACHINE,
    STATE_MACHINE,
    Line,
    custom,
    lambda_metric,
    per_instance,
    rds_cluster,
    rds_instances,
    sqs_metric,
    states_metric,
)
from observability.cfn import If, Join, Ref, Sub, in_sub

GRID_WIDTH = 24
COORDINATOR_LOGS = f"/aws/lambda/{PREFIX}-{Function.resource_suffix(Function.FAILOVER_COORDINATOR)}"
WORKFLOW_LOGS = f"/aws/vendedlogs/states/{PREFIX}-failover"


@dataclass
class Widget:
    kind: str  # metric | text | log | alarm
    title: str
    width: int
    height: int
    lines: list[Line] = field(default_factory=list)
    view: str = "timeSeries"
    stacked: bool = False
    period: int = 60
    annotations: list[tuple[str, Any, bool]] = field(default_factory=list)  # (label, value, right axis)
    left: dict[str, Any] = field(default_factory=dict)  # left y-axis settings
    right: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""
    query: str = ""
    alarm_arns: list[str] = field(default_factory=list)
    x: int = 0
    y: int = 0

    @property
    def conditions(self) -> set[str]:
        return {line.condition for line in self.lines if line.condition}

    def metric_lines(self, conditions: dict[str, bool]) -> Iterator[Line]:
        for line in self.lines:
            if line.condition is None or conditions.get(line.condition, False):
                yield line

    def body(self, conditions: dict[str, bool]) -> dict[str, Any]:
        """The widget as CloudWatch dashboard JSON (values still in Fn::Sub syntax)."""
        out: dict[str, Any] = {"type": self.kind, "x": self.x, "y": self.y, "width": self.width, "height": self.height}
        if self.kind == "text":
            out["properties"] = {"markdown": self.markdown}
        elif self.kind == "log":
            out["properties"] = {"title": self.title, "region": REGION, "view": "table", "query": self.query}
        elif self.kind == "alarm":
            out["properties"] = {"title": self.title, "alarms": self.alarm_arns, "sortBy": "stateUpdatedTimestamp"}
        else:
            out["properties"] = self._metric_properties(conditions)
        return out

    def _metric_properties(self, conditions: dict[str, bool]) -> dict[str, Any]:
        metrics = [_row(line) for line in self.metric_lines(conditions)]
        props: dict[str, Any] = {
            "title": self.title,
            "region": REGION,
            "view": self.view,
            "stacked": self.stacked,
            "period": self.period,
            "metrics": metrics,
        }
        if self.view == "singleValue":
            props["setPeriodToTimeRange"] = False
            props["sparkline"] = True
        axes = {}
        if self.left:
            axes["left"] = self.left
        if self.right:
            axes["right"] = self.right
        if axes:
            props["yAxis"] = axes
        if self.annotations:
            props["annotations"] = {
                "horizontal": [
                    {"label": label, "value": value, **({"yAxis": "right"} if right else {})}
                    for label, value, right in self.annotations
                ]
            }
        return props


def _row(line: Line) -> list[Any]:
    """A metric row of a widget: namespace, name, dimension pairs, then the rendering options."""
    row: list[Any] = [line.namespace, line.name]
    for key, value in line.dims:
        row += [key, in_sub(value)]
    opts: dict[str, Any] = {"stat": line.stat, "label": line.label or line.name}
    if line.right:
        opts["yAxis"] = "right"
    if line.period:
        opts["period"] = line.period
    return [*row, opts]


def _text(markdown: str, height: int = 1) -> Widget:
    return Widget("text", "", GRID_WIDTH, height, markdown=markdown)


def _section(title: str) -> list[Widget]:
    return [_text(f"## {title}")]


def _limit(threshold: alarm_defs.Threshold, label: str, right: bool = False) -> tuple[str, Any, bool]:
    return (label, threshold.ref, right)


def _outcome_query() -> str:
    f = OutcomeLog
    return (
        f"SOURCE '{COORDINATOR_LOGS}' | filter message = \"{f.MESSAGE}\""
        f" | fields @timestamp as finished, {f.OUTCOME}, {f.MODE}, {f.KIND},"
        f' concat({f.OLD_WRITER}, " -> ", {f.NEW_WRITER}) as writers, {f.DURATION_S}, {f.REASON}, {f.EXECUTION}'
        " | sort @timestamp desc | limit 50"
    )


def _unrecorded_query() -> str:
    return (
        f"SOURCE '{WORKFLOW_LOGS}'"
        ' | filter type in ["ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"]'
        " | fields @timestamp as ended, type, execution_arn | sort @timestamp desc | limit 20"
    )


def rows() -> list[list[Widget]]:
    a = alarm_defs
    console = "https://${AWS::Region}.console.aws.amazon.com"
    header = _text(
        f"# {PREFIX}: Aurora PostgreSQL cluster ${{AuroraCluster}}\n"
        f"Health checks every minute (custom metrics: namespace `{Metric.NAMESPACE}`, dimension "
        f"`{Metric.DIM_CLUSTER}`). Failover workflow: [{PREFIX}-failover]"
        f"({console}/states/home?region=${{AWS::Region}}#/statemachines/view/${{FailoverStateMachine}}). "
        f"Alerts: SNS topic `{PREFIX}-alerts`. Every alarm's description says what to do first; the runbook is "
        "docs/runbook.md in the repository. Instance names say where an instance started, not its role now: "
        "the writer is whichever instance the health verdict names.",
        height=2,
    )
    now = Widget(
        "metric",
        "Now",
        GRID_WIDTH,
        3,
        [
            custom(Metric.HEALTHY, "Minimum", "writer healthy (1 = yes)"),
            custom(Metric.REPLICA_LAG_MAX, "Maximum", "max replica lag ms (ours)"),
            rds_cluster("AuroraReplicaLagMaximum", "Maximum", "max replica lag ms (Aurora)"),
            custom(Metric.TPS, "Average", "transactions/s"),
            custom(Metric.CONNECTIONS_PCT_MAX, "Maximum", "connections % of max"),
            custom(Metric.BACKUP_AGE, "Maximum", "backup age h", period=86400),
            custom(Metric.AUTOMATION_PAUSED, "Maximum", "automation paused (1 = yes)"),
        ],
        view="singleValue",
    )
    alarm_status = Widget(
        "alarm", "Alarms (newest state change first)", GRID_WIDTH, 4, alarm_arns=[x.arn for x in a.build()]
    )

    health = [
        Widget(
            "metric",
            "Health verdict",
            8,
            6,
            [
                custom(Metric.HEALTHY, "Minimum", "writer healthy"),
                custom(Metric.READER_HEALTHY, "Minimum", "reader healthy"),
                custom(Metric.PROXY_HEALTHY, "Minimum", "RDS Proxy healthy (when enabled)"),
                custom(Metric.HEALTH_CHECK_FAILED, "Sum", "checks failed / min", right=True),
            ],
            left={"min": 0, "max": 1, "label": "1 = healthy", "showUnits": False},
            right={"min": 0, "label": "failed", "showUnits": False},
        ),
        Widget(
            "metric",
            "Write-probe latency (ms)",
            8,
            6,
            [
                custom(Metric.WRITE_PROBE_LATENCY, "p50", "p50"),
                custom(Metric.WRITE_PROBE_LATENCY, "p99", "p99"),
                custom(Metric.WRITE_PROBE_LATENCY, "Maximum", "max"),
            ],
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Maintenance flag (automation paused)",
            8,
            6,
            [custom(Metric.AUTOMATION_PAUSED, "Maximum", "paused (1 = yes)")],
            left={"min": 0, "max": 1, "showUnits": False},
        ),
    ]

    replication = [
        Widget(
            "metric",
            "Aurora replica lag per instance (ms)",
            12,
            6,
            [
                *rds_instances("AuroraReplicaLag", "Maximum"),
                rds_cluster("AuroraReplicaLagMaximum", "Maximum", "maximum"),
            ],
            annotations=[_limit(a.REPLICA_LAG_MS, "alarm")],
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Replica lag seen by the writer, per instance (ms, health checker)",
            12,
            6,
            [*per_instance(Metric.REPLICA_LAG, "Maximum"), custom(Metric.REPLICA_LAG_MAX, "Maximum", "maximum")],
            annotations=[_limit(a.REPLICA_LAG_MS, "alarm")],
            left={"min": 0, "showUnits": False},
        ),
    ]

    throughput = [
        Widget(
            "metric",
            "Transactions per second",
            6,
            6,
            [
                rds_cluster("CommitThroughput", "Average", "commits/s (Aurora, writer)", role="WRITER"),
                custom(Metric.TPS, "Average", f"transactions/s (ours, {DB_NAME})"),
            ],
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "DatabaseConnections per instance",
            6,
            6,
            rds_instances("DatabaseConnections", "Maximum"),
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Writer connections by state",
            6,
            6,
            [
                custom(Metric.CONNECTIONS_ACTIVE, "Maximum", "active"),
                custom(Metric.CONNECTIONS_IDLE, "Maximum", "idle"),
                custom(Metric.CONNECTIONS_IDLE_IN_TX, "Maximum", "idle in transaction"),
            ],
            stacked=True,
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Writer connections, % of max_connections",
            6,
            6,
            [custom(Metric.CONNECTIONS_PCT_MAX, "Maximum", "% of max")],
            annotations=[_limit(a.CONNECTIONS_PERCENT, "alarm")],
            left={"min": 0, "max": 100, "showUnits": False},
        ),
    ]

    cluster = [
        Widget(
            "metric",
            "CPU per instance (%)",
            8,
            6,
            rds_instances("CPUUtilization", "Maximum"),
            annotations=[_limit(a.CPU_PERCENT, "alarm")],
            left={"min": 0, "max": 100, "showUnits": False},
        ),
        Widget(
            "metric",
            "Freeable memory per instance (bytes)",
            8,
            6,
            rds_instances("FreeableMemory", "Minimum"),
            annotations=[_limit(a.FREEABLE_MEMORY_BYTES, "alarm")],
            left={"min": 0},
        ),
        Widget(
            "metric",
            "Commit latency on the writer (ms)",
            8,
            6,
            [
                rds_cluster("CommitLatency", "Average", "average", role="WRITER"),
                rds_cluster("CommitLatency", "Maximum", "maximum", role="WRITER"),
            ],
            left={"min": 0, "showUnits": False},
        ),
    ]

    failover = [
        Widget(
            "metric",
            "Failovers and switchovers (per hour)",
            8,
            6,
            [custom(Metric.SWITCHOVERS, "Sum", "switchovers"), custom(Metric.FAILOVERS, "Sum", "failovers")],
            period=3600,
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Failover duration and drain",
            8,
            6,
            [
                custom(Metric.FAILOVER_DURATION, "Maximum", "failover total (s)"),
                custom(Metric.DRAIN_DURATION, "Maximum", "drain (ms)", right=True),
                custom(Metric.CONNECTIONS_TERMINATED, "Sum", "connections terminated", right=True),
            ],
            period=300,
            left={"min": 0, "label": "s", "showUnits": False},
            right={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Failover workflow executions",
            8,
            6,
            [
                states_metric("ExecutionsSucceeded", label="succeeded"),
                states_metric("ExecutionsFailed", label="failed"),
                states_metric("ExecutionsTimedOut", label="timed out"),
                states_metric("ExecutionsAborted", label="aborted"),
            ],
            period=3600,
            left={"min": 0, "showUnits": False},
        ),
    ]
    history = Widget("log", "Recent failovers (one line per recorded execution)", GRID_WIDTH, 6, query=_outcome_query())
    unrecorded = Widget(
        "log",
        "Executions that did not succeed (timed out and aborted ones have no record)",
        GRID_WIDTH,
        4,
        query=_unrecorded_query(),
    )

    backups = [
        Widget(
            "metric",
            "Backup age (h)",
            5,
            6,
            [custom(Metric.BACKUP_AGE, "Maximum", "latest snapshot age")],
            period=3600,
            annotations=[_limit(a.BACKUP_AGE_HOURS, "alarm")],
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Point-in-time recovery lag (s)",
            5,
            6,
            [custom(Metric.PITR_LAG, "Maximum", "restorable time lag")],
            period=3600,
            annotations=[_limit(a.PITR_LAG_SECONDS, "alarm")],
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Restore test",
            5,
            6,
            [
                custom(Metric.RESTORE_SUCCEEDED, "Minimum", "succeeded (1 = yes)"),
                custom(Metric.RESTORE_DURATION, "Maximum", "restore duration (s)", right=True),
            ],
            period=3600,
            left={"min": 0, "max": 1, "showUnits": False},
            right={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Restore-test runs (per day)",
            5,
            6,
            [
                states_metric("ExecutionsStarted", label="started", machine=RESTORE_TEST_MACHINE),
                states_metric("ExecutionsSucceeded", label="succeeded", machine=RESTORE_TEST_MACHINE),
                states_metric("ExecutionsFailed", label="failed", machine=RESTORE_TEST_MACHINE),
                states_metric("ExecutionsTimedOut", label="timed out", machine=RESTORE_TEST_MACHINE),
                states_metric("ExecutionsAborted", label="aborted", machine=RESTORE_TEST_MACHINE),
            ],
            period=86400,
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Secret rotation",
            4,
            6,
            [custom(Metric.ROTATION_SUCCEEDED, "Minimum", "succeeded (1 = yes)")],
            period=3600,
            left={"min": 0, "max": 1, "showUnits": False},
        ),
    ]

    lambdas = [
        Widget("metric", "Lambda errors", 6, 6, [lambda_metric("Errors", fn) for fn in Function.ALL], period=300),
        Widget("metric", "Lambda throttles", 6, 6, [lambda_metric("Throttles", fn) for fn in Function.ALL], period=300),
        Widget(
            "metric",
            "Lambda duration p99 (ms)",
            6,
            6,
            [lambda_metric("Duration", fn, "p99") for fn in Function.ALL],
            period=300,
            left={"min": 0, "showUnits": False},
        ),
        Widget(
            "metric",
            "Dead-letter queues (messages)",
            6,
            6,
            [sqs_metric("ApproximateNumberOfMessagesVisible", queue, label) for label, queue in QUEUES],
            period=300,
            left={"min": 0, "showUnits": False},
        ),
    ]

    return [
        [header],
        [alarm_status],
        [now],
        _section("Health checks"),
        health,
        _section("Replication"),
        replication,
        _section("Throughput and connections"),
        throughput,
        _section("Cluster"),
        cluster,
        _section("Failover history"),
        failover,
        [history],
        [unrecorded],
        _section("Backups and credential rotation"),
        backups,
        _section("Lambdas and queues"),
        lambdas,
    ]


def layout() -> list[Widget]:
    """Every widget with its grid position (x, y)."""
    widgets: list[Widget] = []
    y = 0
    for row in rows():
        if sum(w.width for w in row) > GRID_WIDTH:
            raise ValueError(f"row wider than the grid: {[w.title for w in row]}")
        x = 0
        for w in row:
            w.x, w.y = x, y
            x += w.width
            widgets.append(w)
        y += max(w.height for w in row)
    return widgets


# ---- the body as template values --------------------------------------------------------------
_NUMBER = "@@number:{}@@"


def widget_json(widget: Widget, conditions: dict[str, bool]) -> str:
    """One widget's JSON with Fn::Sub placeholders; numbers from parameters stay unquoted (${Param})."""
    refs: list[Ref] = []

    def placeholders(value: Any) -> Any:
        if isinstance(value, Ref):
            refs.append(value)
            return _NUMBER.format(len(refs) - 1)
        if isinstance(value, dict):
            return {k: placeholders(v) for k, v in value.items()}
        if isinstance(value, list):
            return [placeholders(v) for v in value]
        return value

    text = json.dumps(placeholders(widget.body(conditions)), separators=(",", ":"))
    for i, ref in enumerate(refs):
        text = text.replace(f'"{_NUMBER.format(i)}"', ref.in_sub())
    return text


def body() -> Join:
    """DashboardBody: '{"widgets":[' + one Fn::Sub per widget (Fn::If where reader-2 shows) + ']}'."""
    parts: list[Any] = []
    for widget in layout():
        conditions = widget.conditions
        if not conditions:
            text = widget_json(widget, {})
            parts.append(Sub(text) if "${" in text else text)  # cfn-lint: no Fn::Sub without variables
            continue
        if conditions != {HAS_SECOND_READER}:
            raise ValueError(f"{widget.title}: only {HAS_SECOND_READER} is supported, got {conditions}")
        parts.append(
            If(
                HAS_SECOND_READER,
                Sub(widget_json(widget, {HAS_SECOND_READER: True})),
                Sub(widget_json(widget, {HAS_SECOND_READER: False})),
            )
        )
    return Join("", ('{"start":"-PT6H","periodOverride":"inherit","widgets":[', Join(",", tuple(parts)), "]}"))


def resource() -> dict[str, Any]:
    from observability.cfn import TAGS

    return {
        "Type": "AWS::CloudWatch::Dashboard",
        # The alarm widget lists the alarms by ARN: create them first.
        "DependsOn": [x.logical_id for x in alarm_defs.build()],
        "Properties": {"DashboardName": Sub(f"{PREFIX}-dashboard"), "DashboardBody": body(), "Tags": TAGS},
    }


__all__ = ["CLUSTER", "STATE_MACHINE", "Widget", "body", "layout", "resource", "rows", "widget_json"]
