"""Powertools Logger, Tracer and Metrics, configured once for every function."""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from hapg.names import Metric

logger = Logger(log_uncaught_exceptions=True)
tracer = Tracer()
# service="": Powertools would otherwise add a `service` dimension (POWERTOOLS_SERVICE_NAME, set per
# function for the logs) to every metric, and a series is found only by its exact dimension set: the
# dashboard and the alarms query {ClusterId} and {ClusterId, InstanceId} (names.Metric), nothing else.
metrics = Metrics(namespace=Metric.NAMESPACE, service="")

__all__ = ["MetricUnit", "child_logger", "emit", "emit_per_instance", "lambda_entry", "logger", "metrics", "tracer"]


def lambda_entry(handler: Callable) -> Callable:
    """The Powertools wrappers every handler wears: a fresh log context per invocation (outermost, so
    the tracer's and the metrics' own log lines carry it), an X-Ray subsegment, EMF flushed on return."""
    return logger.inject_lambda_context(clear_state=True)(tracer.capture_lambda_handler(metrics.log_metrics(handler)))


def child_logger() -> Logger:
    """Core modules log through children of the function's logger (same keys, same level)."""
    return Logger(child=True)


def emit(cluster_id: str, values: dict[str, tuple[float | None, str]]) -> None:
    """Add metrics under the ClusterId dimension; None values are skipped, not zeroed."""
    if metrics.default_dimensions.get(Metric.DIM_CLUSTER) != cluster_id:
        metrics.clear_default_dimensions()
        metrics.set_default_dimensions(**{Metric.DIM_CLUSTER: cluster_id})
    for name, (value, unit) in values.items():
        if value is not None:
            metrics.add_metric(name=name, unit=unit, value=value)


def emit_per_instance(cluster_id: str, name: str, unit: str, per_instance: dict[str, float]) -> None:
    """One EMF record per instance (ClusterId + InstanceId), flushed immediately."""
    for instance_id, value in per_instance.items():
        record = EphemeralMetrics(namespace=Metric.NAMESPACE, service="")  # no `service` dimension (above)
        record.add_dimension(name=Metric.DIM_CLUSTER, value=cluster_id)
        record.add_dimension(name=Metric.DIM_INSTANCE, value=instance_id)
        record.add_metric(name=name, unit=unit, value=value)
        record.flush_metrics()
