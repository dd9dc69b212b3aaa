"""The RDS port: snapshot the cluster, ask Aurora to fail over. Nothing else talks to RDS.

`ClusterPort` is the interface the coordinator depends on; `AuroraCluster` implements it on
the RDS API, and local/cluster.py implements it on a real PostgreSQL pair for the rehearsal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from hapg import aws, errors
from hapg.models import ClusterSnapshot, Endpoint, Member
from hapg.telemetry import child_logger

log = child_logger()
LagSource = Callable[[], dict[str, float | None]]


class ClusterPort(Protocol):
    cluster_id: str

    def snapshot(self, with_lag: bool = True) -> ClusterSnapshot: ...

    def failover(self, target: str) -> None: ...


class AuroraCluster:
    def __init__(self, cluster_id: str, lag_source: LagSource | None = None, rds: Any = None):
        self.cluster_id = cluster_id
        self._lag_source = lag_source
        self._rds = rds

    @property
    def rds(self) -> Any:
        return self._rds or aws.client("rds")

    def describe(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Raw DescribeDBClusters + DescribeDBInstances for this cluster's members."""
        with aws.call("rds:DescribeDBClusters"):
            cluster = self.rds.describe_db_clusters(DBClusterIdentifier=self.cluster_id)["DBClusters"][0]
        ids = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])]
        instances: dict[str, dict[str, Any]] = {}
        if ids:
            with aws.call("rds:DescribeDBInstances"):
                pages = self.rds.get_paginator("describe_db_instances").paginate(
                    Filters=[{"Name": "db-instance-id", "Values": ids}]
                )
                for page in pages:
                    instances.update({i["DBInstanceIdentifier"]: i for i in page["DBInstances"]})
        return cluster, instances

    def snapshot(self, with_lag: bool = True) -> ClusterSnapshot:
        """Membership and status from RDS; replica lag from the writer only when asked (it costs a
        database round trip that promote and status polling do not need)."""
        cluster, instances = self.describe()
        lags = self._lags() if with_lag else {}
        members = tuple(
            _member(m, instances.get(m["DBInstanceIdentifier"], {}), lags) for m in cluster["DBClusterMembers"]
        )
        return ClusterSnapshot(self.cluster_id, cluster.get("Status", "unknown"), members, time.time())

    def failover(self, target: str) -> None:
        try:
            with aws.call("rds:FailoverDBCluster"):
                self.rds.failover_db_cluster(DBClusterIdentifier=self.cluster_id, TargetDBInstanceIdentifier=target)
        except errors.AwsRequestFailed as exc:
            if aws.error_code(exc) in ("InvalidDBClusterStateFault", "InvalidDBInstanceState"):
                raise errors.NotReady(f"Aurora cannot fail over now: {exc}") from exc
            raise

    def _lags(self) -> dict[str, float | None]:
        """Replica lag per instance from the writer; unknown (empty) if the writer is unreachable."""
        if self._lag_source is None:
            return {}
        try:
            return self._lag_source()
        except errors.HapgError as exc:
            log.warning("replica lag unavailable", extra={"cause": str(exc)})
            return {}


def _member(raw: dict[str, Any], instance: dict[str, Any], lags: dict[str, float | None]) -> Member:
    ident = raw["DBInstanceIdentifier"]
    endpoint = instance.get("Endpoint") or {}
    writer = bool(raw.get("IsClusterWriter"))
    return Member(
        instance_id=ident,
        is_writer=writer,
        status=instance.get("DBInstanceStatus", "unknown"),
        promotion_tier=int(raw.get("PromotionTier", instance.get("PromotionTier", 1)) or 0),
        az=instance.get("AvailabilityZone"),
        endpoint=Endpoint(endpoint["Address"], endpoint.get("Port", 5432)) if endpoint.get("Address") else None,
        lag_ms=0.0 if writer else lags.get(ident),
    )
