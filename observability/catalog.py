"""What the dashboard and the alarms look at: metric lines, and the stack's resources as dimension values.

Custom metrics come from hapg.names.Metric with the dimension sets the code emits (hapg.telemetry:
`emit` -> {ClusterId}, `emit_per_instance` -> {ClusterId, InstanceId}); AWS metrics name the
resources of template.yaml (instance identifiers, function names, queues, the state machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hapg.names import Function, Metric

from observability.cfn import GetAtt, Ref, Sub, Value

PREFIX = "hapg-${EnvironmentSuffix}"
REGION = "${AWS::Region}"
HAS_SECOND_READER = "HasSecondReader"  # template Conditions: ReaderCount = 2

# Custom metrics emitted once per instance (telemetry.emit_per_instance); all others per cluster.
PER_INSTANCE = frozenset({Metric.REPLICA_LAG})

CLUSTER = Ref("AuroraCluster")  # the cluster identifier, which is also CLUSTER_ID of every function
STATE_MACHINE = Ref("FailoverStateMachine")  # its ARN: the StateMachineArn dimension of AWS/States
RESTORE_TEST_MACHINE = Ref("BackupVerificationStateMachine")  # the weekly restore test
QUEUES = (
    ("function DLQ", GetAtt("FunctionDeadLetterQueue", "QueueName")),
    ("failover events DLQ", GetAtt("FailoverEventDeadLetterQueue", "QueueName")),
)


@dataclass(frozen=True)
class Instance:
    """An Aurora instance of template.yaml; `condition` is the template condition it exists under."""

    suffix: str  # writer, reader-1, reader-2: the name says where it started, not its role now
    condition: str | None = None

    @property
    def identifier(self) -> Sub:
        return Sub(f"{PREFIX}-{self.suffix}")


INSTANCES = (Instance("writer"), Instance("reader-1"), Instance("reader-2", HAS_SECOND_READER))


def function_name(fn: str) -> Sub:
    return Sub(f"{PREFIX}-{Function.resource_suffix(fn)}")


@dataclass(frozen=True)
class Line:
    """One metric of a widget or an alarm: namespace, name, dimensions and how to show it."""

    namespace: str
    name: str
    dims: tuple[tuple[str, Value], ...]
    stat: str = "Average"
    label: str | None = None
    right: bool = False  # right y-axis
    condition: str | None = None  # only where this template condition holds (e.g. reader-2)
    period: int | None = None
    ident: str | None = None  # id, for metric math (alarms)

    @property
    def dimension_names(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.dims)


@dataclass(frozen=True)
class Expression:
    """Metric math over Lines with ids (alarms)."""

    ident: str
    expression: str
    label: str


def custom(name: str, stat: str = "Average", label: str | None = None, **kw: Any) -> Line:
    """A per-cluster custom metric (names.Metric) of this cluster."""
    if name in PER_INSTANCE:
        raise ValueError(f"{name} is emitted per instance: use per_instance()")
    return Line(Metric.NAMESPACE, name, ((Metric.DIM_CLUSTER, CLUSTER),), stat, label or name, **kw)


def per_instance(name: str, stat: str = "Average", **kw: Any) -> list[Line]:
    """A per-instance custom metric, one line per instance of the template."""
    if name not in PER_INSTANCE:
        raise ValueError(f"{name} is emitted per cluster: use custom()")
    return [
        Line(
            Metric.NAMESPACE,
            name,
            ((Metric.DIM_CLUSTER, CLUSTER), (Metric.DIM_INSTANCE, i.identifier)),
            stat,
            i.suffix,
            condition=i.condition,
            **kw,
        )
        for i in INSTANCES
    ]


def rds_instances(name: str, stat: str = "Average", **kw: Any) -> list[Line]:
    """An AWS/RDS instance metric, one line per instance (DBInstanceIdentifier)."""
    return [
        Line("AWS/RDS", name, (("DBInstanceIdentifier", i.identifier),), stat, i.suffix, condition=i.condition, **kw)
        for i in INSTANCES
    ]


def rds_cluster(name: str, stat: str = "Average", label: str | None = None, role: str | None = None, **kw) -> Line:
    """An AWS/RDS metric aggregated over the cluster's instances, or over those of one role (WRITER
    follows the writer through failovers, which fixed instance names cannot)."""
    dims: tuple[tuple[str, Value], ...] = (("DBClusterIdentifier", CLUSTER),)
    if role:
        dims += (("Role", role),)
    return Line("AWS/RDS", name, dims, stat, label or name, **kw)


def lambda_metric(name: str, fn: str, stat: str = "Sum", **kw: Any) -> Line:
    return Line("AWS/Lambda", name, (("FunctionName", function_name(fn)),), stat, fn, **kw)


def states_metric(
    name: str, stat: str = "Sum", label: str | None = None, machine: Ref = STATE_MACHINE, **kw: Any
) -> Line:
    return Line("AWS/States", name, (("StateMachineArn", machine),), stat, label or name, **kw)


def sqs_metric(name: str, queue: GetAtt, label: str, stat: str = "Maximum", **kw: Any) -> Line:
    return Line("AWS/SQS", name, (("QueueName", queue),), stat, label, **kw)
