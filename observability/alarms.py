"""Every alarm of the stack, its threshold parameter and what it tells the person it pages.

The alarm name is the subject of the e-mail CloudWatch sends (`ALARM: "hapg-prod-writer-unhealthy" in
...`), so it says what happened; the description is the first line of the body: what it means, what
missing data means, and the first thing to do. All alarms notify the alert topic. Conditions that
end (a sick writer, a full queue) also notify on recovery (OKActions); events (a failover, a failed
execution) do not, because their "OK" a minute later would only be noise.

Missing data is decided per alarm:
  * breaching  where silence is itself the problem: the writer verdict (a dead health checker must
               page), Aurora's replica lag (no figure = no replica replicating), and the
               "backup check / restore test missing" alarms;
  * ignore     for results that arrive once a day or week (backup age, PITR lag, restore test,
               rotation): the alarm keeps the state of the latest result until the next one, which
               is "the latest result is bad" and recovers only on a good one;
  * notBreaching for everything that only exists when something happens (errors, throttles, DLQ
               messages, executions, failovers) or is covered by the writer alarm when absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from hapg.names import Backup, Function, Metric, Timing

from observability.catalog import (
    PREFIX,
    QUEUES,
    RESTORE_TEST_MACHINE,
    Expression,
    Line,
    custom,
    lambda_metric,
    rds_cluster,
    sqs_metric,
    states_metric,
)
from observability.cfn import TAGS, Ref, Sub

TOPIC = Ref("AlertTopic")
RUNBOOK = "Runbook: docs/runbook.md, section 8 (Alarms)."


@dataclass(frozen=True)
class Threshold:
    """A template Parameter holding an alarm threshold."""

    name: str
    default: int
    description: str
    min_value: int = 0
    max_value: int | None = None

    @property
    def ref(self) -> Ref:
        return Ref(self.name)

    def parameter(self) -> dict:
        p: dict = {"Type": "Number", "Default": self.default, "MinValue": self.min_value}
        if self.max_value is not None:
            p["MaxValue"] = self.max_value
        p["Description"] = self.description
        return p


REPLICA_LAG_MS = Threshold(
    "ReplicaLagAlarmMs",
    Timing.MAX_LAG_MS,
    f"Alarm when Aurora replica lag stays above this (ms); at {Timing.MAX_LAG_MS} ms the planner also refuses to "
    "promote.",
    min_value=10,
)
CPU_PERCENT = Threshold("CpuAlarmPercent", 80, "Alarm when an instance's CPU stays above this (%).", 1, 100)
FREEABLE_MEMORY_BYTES = Threshold(
    "FreeableMemoryAlarmBytes",
    1073741824,
    "Alarm when an instance's freeable memory stays below this (bytes; ~10 % of the instance's RAM).",
)
CONNECTIONS_PERCENT = Threshold(
    "ConnectionsAlarmPercent",
    80,
    "Alarm when the writer's connections stay above this share of max_connections (%).",
    1,
    100,
)
BACKUP_AGE_HOURS = Threshold(
    "BackupAgeAlarmHours",
    Backup.MAX_SNAPSHOT_AGE_H,
    "Alarm when the latest automated snapshot is older than this (hours).",
    1,
)
PITR_LAG_SECONDS = Threshold(
    "PitrLagAlarmSeconds",
    Backup.MAX_PITR_LAG_S,
    "Alarm when the latest restorable time lags now by more than this (s).",
    60,
)
LAMBDA_ERRORS = Threshold(
    "LambdaErrorsAlarmCount",
    3,
    "Alarm when a function has more errors than this in 5 minutes (a failover's verify retries raise a few).",
)
PAUSED_HOURS = Threshold(
    "AutomationPausedAlarmHours",
    4,
    "Alarm when maintenance mode has paused failover automation this long (hours).",
    1,
    24,
)
THRESHOLDS = (
    REPLICA_LAG_MS,
    CPU_PERCENT,
    FREEABLE_MEMORY_BYTES,
    CONNECTIONS_PERCENT,
    BACKUP_AGE_HOURS,
    PITR_LAG_SECONDS,
    LAMBDA_ERRORS,
    PAUSED_HOURS,
)

# How long a scheduled result may be absent before its absence pages. The backup checks run daily
# (06:00 UTC): 2 h of slack. The restore test runs weekly (Tuesday 07:00 UTC) and CloudWatch looks at
# most 7 days back (period x evaluation periods), exactly one cadence: a run that ends later than last
# week's would leave a gap with no result in the window, so the restore-test alarm counts the
# execution's start too (the start is in the window before last week's result leaves it).
DAILY_WINDOW_H = 26
WEEKLY_WINDOW_DAYS = 7


@dataclass(frozen=True)
class Alarm:
    logical_id: str
    suffix: str  # hapg-<env>-<suffix>
    description: str
    comparison: str
    threshold: float | Threshold
    period: int
    evaluation_periods: int | Threshold
    missing: str
    recovers: bool
    line: Line | None = None
    math: tuple[Expression, tuple[Line, ...]] | None = None
    datapoints: int | None = None

    @property
    def name(self) -> Sub:
        return Sub(f"{PREFIX}-{self.suffix}")

    @property
    def arn(self) -> str:
        return f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{PREFIX}-{self.suffix}"

    @property
    def lines(self) -> tuple[Line, ...]:
        return (self.line,) if self.line else self.math[1]

    def resource(self) -> dict:
        description = Sub(self.description) if "${" in self.description else self.description
        p: dict = {"AlarmName": self.name, "AlarmDescription": description}
        if self.line:
            p["Namespace"] = self.line.namespace
            p["MetricName"] = self.line.name
            p["Dimensions"] = [{"Name": k, "Value": v} for k, v in self.line.dims]
            p["Statistic"] = self.line.stat
            p["Period"] = self.period
        else:
            expression, lines = self.math
            p["Metrics"] = [
                {
                    "Id": expression.ident,
                    "Expression": expression.expression,
                    "Label": expression.label,
                    "ReturnData": True,
                }
            ] + [
                {
                    "Id": line.ident,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": line.namespace,
                            "MetricName": line.name,
                            "Dimensions": [{"Name": k, "Value": v} for k, v in line.dims],
                        },
                        "Period": self.period,
                        "Stat": line.stat,
                    },
                    "ReturnData": False,
                }
                for line in lines
            ]
        p["EvaluationPeriods"] = _num(self.evaluation_periods)
        if self.datapoints is not None:
            p["DatapointsToAlarm"] = self.datapoints
        p["Threshold"] = _num(self.threshold)
        p["ComparisonOperator"] = self.comparison
        p["TreatMissingData"] = self.missing
        p["AlarmActions"] = [TOPIC]
        if self.recovers:
            p["OKActions"] = [TOPIC]
        p["Tags"] = TAGS
        return {"Type": "AWS::CloudWatch::Alarm", "Properties": p}


def _num(value: float | int | Threshold) -> float | int | Ref:
    return value.ref if isinstance(value, Threshold) else value


GT, GE, LT = "GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def _lambda_alarms() -> list[Alarm]:
    out = []
    for fn in Function.ALL:
        suffix = Function.resource_suffix(fn)
        out.append(
            Alarm(
                f"{_camel(fn)}ErrorsAlarm",
                f"{suffix}-errors",
                f"The {suffix} function failed more than LambdaErrorsAlarmCount times in 5 minutes. The failover "
                "workflow retries transient errors (a few during a failover's verification are expected) and "
                "alarms separately when an execution fails; sustained errors here mean the function is broken or "
                f"cannot reach the database or AWS. First: its log group /aws/lambda/{PREFIX}-{suffix}, level ERROR. "
                + RUNBOOK,
                GT,
                LAMBDA_ERRORS,
                300,
                1,
                "notBreaching",
                True,
                line=lambda_metric("Errors", fn),
            )
        )
        out.append(
            Alarm(
                f"{_camel(fn)}ThrottlesAlarm",
                f"{suffix}-throttles",
                f"Invocations of {suffix} were throttled in the last 5 minutes: its reserved concurrency is "
                "exhausted (or the account's). Throttled health checks leave gaps; throttled workflow steps are "
                "retried but slow the failover. First: ConcurrentExecutions of the function, then raise "
                "ReservedConcurrentExecutions in template.yaml if the load is legitimate. " + RUNBOOK,
                GT,
                0,
                300,
                1,
                "notBreaching",
                True,
                line=lambda_metric("Throttles", fn),
            )
        )
    return out


def _dlq_alarms() -> list[Alarm]:
    what = {  # queue label: alarm id, alarm suffix, the queue's name suffix, what a message there means
        "function DLQ": (
            "FunctionDlqNotEmptyAlarm",
            "dlq-not-empty",
            "dlq",
            "An asynchronous invocation of a function (e.g. a scheduled health check) failed after Lambda's "
            "retries and its event was parked in the function dead-letter queue.",
        ),
        "failover events DLQ": (
            "FailoverEventsDlqNotEmptyAlarm",
            "failover-events-dlq-not-empty",
            "failover-events-dlq",
            "An Aurora failover event or the scheduled switchover could not start the failover workflow "
            "(permissions or throttling beyond the retry policy): a failover may have gone unhandled. "
            "Check the cluster's writer now.",
        ),
    }
    out = []
    for label, queue in QUEUES:
        logical_id, suffix, queue_suffix, text = what[label]
        out.append(
            Alarm(
                logical_id,
                suffix,
                f"{text} Messages are kept 14 days: read them, act, then purge the queue ({PREFIX}-{queue_suffix}). "
                + RUNBOOK,
                GT,
                0,
                300,
                1,
                "notBreaching",
                True,
                line=sqs_metric("ApproximateNumberOfMessagesVisible", queue, label),
            )
        )
    return out


def build() -> list[Alarm]:
    """Every alarm, in the order the dashboard's alarm widget lists them."""
    alarms = [
        Alarm(
            "WriterUnhealthyAlarm",
            "writer-unhealthy",
            "The writer failed the health checker's connect-and-write probe through the cluster endpoint in 2 of "
            "the last 3 minutes, OR the health checker reported nothing (missing data counts as unhealthy: a "
            "silent checker must page too). Applications may be unable to write. The failover workflow handles "
            "Aurora's failover events and e-mails each outcome; if no such e-mail follows, check the writer and "
            "the health checker's log, then start a switchover (runbook section 1). " + RUNBOOK,
            LT,
            1,
            60,
            3,
            "breaching",
            True,
            line=custom(Metric.HEALTHY, "Minimum"),
            datapoints=2,
        ),
        Alarm(
            "HealthCheckFailingAlarm",
            "health-check-failing",
            "The full health verdict was unhealthy in 3 of the last 5 minutes although the writer may still take "
            "writes: the reader endpoint failed, a replica lags beyond MAX_LAG_MS or stopped replicating, RDS "
            "Proxy failed, or a drain left application roles blocked (runbook section 5). Failover safety is "
            "reduced. The reason is in the health checker's 'health verdict' log line. " + RUNBOOK,
            GE,
            1,
            60,
            5,
            "notBreaching",
            True,
            line=custom(Metric.HEALTH_CHECK_FAILED, "Sum"),
            datapoints=3,
        ),
        Alarm(
            "ReplicaLagHighAlarm",
            "replica-lag-high",
            "Aurora's maximum replica lag stayed above ReplicaLagAlarmMs in 3 of the last 5 minutes, or Aurora "
            "reported no lag at all (missing data breaches: it means no replica is replicating). A lagging replica "
            "serves stale reads and the planner will not promote it. First: per-instance lag on the dashboard, "
            "then the reader's CPU and I/O. " + RUNBOOK,
            GT,
            REPLICA_LAG_MS,
            60,
            5,
            "breaching",
            True,
            line=rds_cluster("AuroraReplicaLagMaximum", "Maximum"),
            datapoints=3,
        ),
        Alarm(
            "CpuHighAlarm",
            "cpu-high",
            "An instance of the cluster ran above CpuAlarmPercent CPU for 15 minutes (the highest instance counts). "
            "Queries slow down and replicas fall behind. First: Performance Insights top SQL on that instance. "
            + RUNBOOK,
            GT,
            CPU_PERCENT,
            300,
            3,
            "notBreaching",
            True,
            line=rds_cluster("CPUUtilization", "Maximum"),
        ),
        Alarm(
            "FreeableMemoryLowAlarm",
            "freeable-memory-low",
            "An instance of the cluster had less than FreeableMemoryAlarmBytes freeable memory for 15 minutes (the "
            "lowest instance counts). PostgreSQL may start swapping or be restarted by the out-of-memory killer. "
            "First: connections and work_mem-heavy queries on that instance. " + RUNBOOK,
            LT,
            FREEABLE_MEMORY_BYTES,
            300,
            3,
            "notBreaching",
            True,
            line=rds_cluster("FreeableMemory", "Minimum"),
        ),
        Alarm(
            "ConnectionsNearMaxAlarm",
            "connections-near-max",
            "The writer used more than ConnectionsAlarmPercent of max_connections in 3 of the last 5 minutes "
            "(measured by the health checker; absent while the writer is down, which the writer alarm covers). "
            "New connections will soon be refused. First: connections by state on the dashboard, idle-in-"
            "transaction sessions, application pool sizes; RDS Proxy multiplexes them. " + RUNBOOK,
            GT,
            CONNECTIONS_PERCENT,
            60,
            5,
            "notBreaching",
            True,
            line=custom(Metric.CONNECTIONS_PCT_MAX, "Maximum"),
            datapoints=3,
        ),
        Alarm(
            "BackupTooOldAlarm",
            "backup-too-old",
            "The latest backup check found the newest automated snapshot older than BackupAgeAlarmHours. A restore "
            "from snapshot would lose more than a day. The state holds until a check finds a fresh snapshot. First: "
            "the cluster's backup window and recent RDS events. " + RUNBOOK,
            GT,
            BACKUP_AGE_HOURS,
            3600,
            1,
            "ignore",
            True,
            line=custom(Metric.BACKUP_AGE, "Maximum"),
        ),
        Alarm(
            "BackupCheckMissingAlarm",
            "backup-check-missing",
            f"No backup check reported in the last {DAILY_WINDOW_H} hours (it runs daily): backups are unverified. "
            "First: the backup verifier's schedule, executions and log group. " + RUNBOOK,
            LT,
            1,
            3600,
            DAILY_WINDOW_H,
            "breaching",
            True,
            line=custom(Metric.BACKUP_AGE, "SampleCount"),
            datapoints=DAILY_WINDOW_H,
        ),
        Alarm(
            "PitrLagHighAlarm",
            "pitr-lag-high",
            "The latest backup check found the cluster's latest restorable time more than PitrLagAlarmSeconds "
            "behind: point-in-time recovery would lose that much. The state holds until a check finds it fresh. "
            + RUNBOOK,
            GT,
            PITR_LAG_SECONDS,
            3600,
            1,
            "ignore",
            True,
            line=custom(Metric.PITR_LAG, "Maximum"),
        ),
        Alarm(
            "RestoreTestFailedAlarm",
            "restore-test-failed",
            "The latest restore test failed: the newest snapshot did not restore into a working database, or the "
            "verification queries failed. The failure e-mail of that run has the reason. The state holds until a "
            "restore test succeeds. " + RUNBOOK,
            LT,
            1,
            3600,
            1,
            "ignore",
            True,
            line=custom(Metric.RESTORE_SUCCEEDED, "Minimum"),
        ),
        Alarm(
            "RestoreTestMissingAlarm",
            "restore-test-missing",
            f"No restore test started or reported a result in the last {WEEKLY_WINDOW_DAYS} days (it runs weekly, "
            f"Tuesday 07:00 UTC): backups are not proven restorable. First: the {PREFIX}-restore-test schedule "
            "and the backup verification state machine's executions; start one by hand (runbook section 8). " + RUNBOOK,
            LT,
            1,
            86400,
            WEEKLY_WINDOW_DAYS,
            "breaching",
            True,
            math=(
                Expression("seen", "FILL(results, 0) + FILL(starts, 0)", "restore tests started or recorded"),
                (
                    custom(Metric.RESTORE_SUCCEEDED, "SampleCount", ident="results"),
                    states_metric("ExecutionsStarted", machine=RESTORE_TEST_MACHINE, ident="starts"),
                ),
            ),
            datapoints=WEEKLY_WINDOW_DAYS,
        ),
        Alarm(
            "RestoreTestUnfinishedAlarm",
            "restore-test-unfinished",
            "A restore-test execution timed out or was aborted, so it recorded no result and sent no e-mail; its "
            f"temporary cluster ({PREFIX}-restore-<run id>) may still be running and costing money until the "
            "next run removes it. First: the execution's history, then delete the temporary cluster by its "
            "hapg:restore-test tag (runbook section 6). " + RUNBOOK,
            GE,
            1,
            300,
            1,
            "notBreaching",
            False,
            math=(
                Expression("unfinished", "FILL(timedout, 0) + FILL(aborted, 0)", "ended without a result"),
                (
                    states_metric("ExecutionsTimedOut", machine=RESTORE_TEST_MACHINE, ident="timedout"),
                    states_metric("ExecutionsAborted", machine=RESTORE_TEST_MACHINE, ident="aborted"),
                ),
            ),
        ),
        Alarm(
            "SecretRotationFailedAlarm",
            "secret-rotation-failed",
            "The latest rotation of a database secret failed. The previous credentials still work, but they will "
            "not rotate until the cause is fixed. The state holds until a rotation succeeds. First: the "
            "secret_rotation log and `aws secretsmanager describe-secret` (runbook section 7). " + RUNBOOK,
            LT,
            1,
            3600,
            1,
            "ignore",
            True,
            line=custom(Metric.ROTATION_SUCCEEDED, "Minimum"),
        ),
        Alarm(
            "FailoverWorkflowFailedAlarm",
            "failover-workflow-failed",
            "A failover workflow execution ended FAILED, TIMED_OUT or ABORTED. A failed execution has undone its "
            "connection block, recorded and e-mailed its reason; a timed-out or aborted one did neither (a separate "
            f"notice names it) and its lock expires within {Timing.LOCK_TTL_S // 60} minutes. First: the cluster's "
            "writer, then the execution's history (runbook sections 2 and 5). " + RUNBOOK,
            GE,
            1,
            60,
            1,
            "notBreaching",
            False,
            math=(
                Expression("ended", "FILL(failed, 0) + FILL(timedout, 0) + FILL(aborted, 0)", "ended badly"),
                (
                    states_metric("ExecutionsFailed", ident="failed"),
                    states_metric("ExecutionsTimedOut", ident="timedout"),
                    states_metric("ExecutionsAborted", ident="aborted"),
                ),
            ),
        ),
        Alarm(
            "FailoverHappenedAlarm",
            "failover-happened",
            "Information: the writer moved. A switchover or failover completed and was verified in the last minute; "
            "the workflow's own e-mail has the details (old and new writer, phases, duration). Nothing to do unless "
            "it was unexpected. " + RUNBOOK,
            GE,
            1,
            60,
            1,
            "notBreaching",
            False,
            math=(
                Expression("moved", "FILL(switchovers, 0) + FILL(failovers, 0)", "writer changes"),
                (
                    custom(Metric.SWITCHOVERS, "Sum", ident="switchovers"),
                    custom(Metric.FAILOVERS, "Sum", ident="failovers"),
                ),
            ),
        ),
        Alarm(
            "AutomationPausedAlarm",
            "automation-paused",
            "Maintenance mode has paused the failover automation for AutomationPausedAlarmHours: the workflow "
            "refuses switchovers and takeovers while it is on. If the maintenance is over, turn it off (runbook "
            "section 3). " + RUNBOOK,
            GE,
            1,
            3600,
            PAUSED_HOURS,
            "notBreaching",
            True,
            line=custom(Metric.AUTOMATION_PAUSED, "Minimum"),
        ),
    ]
    return alarms + _lambda_alarms() + _dlq_alarms()
