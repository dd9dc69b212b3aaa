"""The RDS port of backup verification: describe the source's backups, restore a snapshot into a
temporary cluster, and delete it again. Nothing else in backup verification talks to RDS.

`AuroraRestore` implements `RestorePort` on the RDS API; local/restore.py extends it for the
local harness (the restored cluster's endpoint is then a real PostgreSQL server).

Temporary resources are `<prefix>-<run id>` (cluster) and `<prefix>-<run id>-1` (instance), tagged
`hapg:restore-test=<run id>` and `hapg:restore-source=<cluster>`. Every write here refuses an
identifier outside that pattern, whatever IAM would allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from hapg import aws, errors
from hapg.models import Endpoint
from hapg.names import Backup
from hapg.telemetry import child_logger

log = child_logger()

ENGINE = "aurora-postgresql"
CA_IDENTIFIER = "rds-ca-rsa2048-g1"  # the CA the production instances use (and the layer's bundle holds)
_BUSY = ("InvalidDBClusterStateFault", "InvalidDBInstanceState", "InvalidDBInstanceStateFault")
_GONE_CLUSTER = ("DBClusterNotFoundFault",)
_GONE_INSTANCE = ("DBInstanceNotFoundFault", "DBInstanceNotFound")
_GONE_SNAPSHOT = ("DBClusterSnapshotNotFoundFault",)


@dataclass(frozen=True)
class RestoreSpec:
    """What `restore_cluster` creates (identifiers already checked by the caller)."""

    cluster_id: str
    snapshot_id: str
    subnet_group: str
    security_group_id: str
    kms_key_arn: str
    cluster_parameter_group: str | None
    tags: tuple[tuple[str, str], ...]


class RestorePort(Protocol):
    cluster_id: str  # the source
    prefix: str

    def is_ours(self, resource: dict[str, Any]) -> bool: ...

    def source(self) -> dict[str, Any]: ...

    def automated_snapshots(self) -> list[dict[str, Any]]: ...

    def snapshot(self, snapshot_id: str) -> dict[str, Any] | None: ...

    def cluster(self, cluster_id: str) -> dict[str, Any] | None: ...

    def instance(self, instance_id: str) -> dict[str, Any] | None: ...

    def temporaries(self) -> list[dict[str, Any]]: ...

    def restore_cluster(self, spec: RestoreSpec) -> None: ...

    def create_instance(self, instance_id: str, cluster_id: str, instance_class: str, tags: tuple) -> None: ...

    def set_master_password(self, cluster_id: str, username: str, password: str) -> None: ...

    def disable_deletion_protection(self, cluster_id: str) -> None: ...

    def delete_instance(self, instance_id: str) -> None: ...

    def delete_cluster(self, cluster_id: str) -> None: ...

    def endpoint(self, cluster: dict[str, Any]) -> Endpoint: ...


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("TagList") or []}


class AuroraRestore:
    def __init__(self, cluster_id: str, prefix: str, rds: Any = None):
        self.cluster_id = cluster_id
        self.prefix = prefix
        self._rds = rds
        self._temporary = re.compile(rf"^{re.escape(prefix)}-[0-9a-f]{{10}}(-1)?$")

    @property
    def rds(self) -> Any:
        return self._rds or aws.client("rds")

    # -- guards ---------------------------------------------------------------------------------
    def is_temporary_id(self, identifier: str) -> bool:
        return bool(self._temporary.match(identifier))

    def is_ours(self, resource: dict[str, Any]) -> bool:
        """A temporary restore-test resource of this source: the name pattern AND both tags."""
        ident = resource.get("DBInstanceIdentifier") or resource.get("DBClusterIdentifier") or ""
        tags = tags_of(resource)
        return (
            self.is_temporary_id(ident)
            and tags.get(Backup.TAG_SOURCE) == self.cluster_id
            and bool(tags.get(Backup.TAG_RUN))
        )

    def _require_temporary(self, identifier: str, what: str) -> None:
        if not self.is_temporary_id(identifier):
            raise errors.FatalError(
                f"refusing to {what} {identifier}: not a restore-test identifier ({self.prefix}-<run id>)"
            )

    # -- reads ----------------------------------------------------------------------------------
    def source(self) -> dict[str, Any]:
        with aws.call("rds:DescribeDBClusters"):
            return self.rds.describe_db_clusters(DBClusterIdentifier=self.cluster_id)["DBClusters"][0]

    def automated_snapshots(self) -> list[dict[str, Any]]:
        with aws.call("rds:DescribeDBClusterSnapshots"):
            pages = self.rds.get_paginator("describe_db_cluster_snapshots").paginate(
                DBClusterIdentifier=self.cluster_id, SnapshotType="automated"
            )
            return [s for page in pages for s in page["DBClusterSnapshots"]]

    def snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        try:
            with aws.call("rds:DescribeDBClusterSnapshots"):
                found = self.rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=snapshot_id)
        except errors.AwsRequestFailed as exc:
            if aws.error_code(exc) in _GONE_SNAPSHOT:
                return None
            raise
        items = found["DBClusterSnapshots"]
        return items[0] if items else None

    def cluster(self, cluster_id: str) -> dict[str, Any] | None:
        try:
            with aws.call("rds:DescribeDBClusters"):
                return self.rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
        except errors.AwsRequestFailed as exc:
            if aws.error_code(exc) in _GONE_CLUSTER:
                return None
            raise

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        try:
            with aws.call("rds:DescribeDBInstances"):
                return self.rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
        except errors.AwsRequestFailed as exc:
            if aws.error_code(exc) in _GONE_INSTANCE:
                return None
            raise

    def temporaries(self) -> list[dict[str, Any]]:
        """Every restore-test cluster of this source, found by its tags (RDS cannot filter clusters by
        tag, so this lists them; the Resource Groups Tagging API has no endpoint in this VPC)."""
        with aws.call("rds:DescribeDBClusters"):
            pages = self.rds.get_paginator("describe_db_clusters").paginate()
            clusters = [c for page in pages for c in page["DBClusters"]]
        return [c for c in clusters if self.is_ours(c)]

    # -- writes (temporary resources only) ------------------------------------------------------
    def restore_cluster(self, spec: RestoreSpec) -> None:
        self._require_temporary(spec.cluster_id, "restore into")
        params: dict[str, Any] = {
            "DBClusterIdentifier": spec.cluster_id,
            "SnapshotIdentifier": spec.snapshot_id,
            "Engine": ENGINE,
            "DBSubnetGroupName": spec.subnet_group,
            "VpcSecurityGroupIds": [spec.security_group_id],
            "KmsKeyId": spec.kms_key_arn,
            "DeletionProtection": False,
            "CopyTagsToSnapshot": False,
            "BackupRetentionPeriod": 1,  # the minimum: nobody restores from a throw-away cluster
            "EnableIAMDatabaseAuthentication": False,
            "Tags": [{"Key": k, "Value": v} for k, v in spec.tags],
        }
        if spec.cluster_parameter_group:
            params["DBClusterParameterGroupName"] = spec.cluster_parameter_group  # rds.force_ssl=1 as the source
        try:
            with aws.call("rds:RestoreDBClusterFromSnapshot"):
                self.rds.restore_db_cluster_from_snapshot(**params)
        except errors.AwsRequestFailed as exc:
            if aws.error_code(exc) != "DBClusterAlreadyExistsFault":  # a retried call: the caller checks its tags
                raise

    def create_instance(self, instance_id: str, cluster_id: str, instance_class: str, tags: tuple) -> None:
        self._require_temporary(instance_id, "create")
        self._require_temporary(cluster_id, "add an instance to")
        try:
            with aws.call("rds:CreateDBInstance"):
                self.rds.create_db_instance(
                    DBInstanceIdentifier=instance_id,
                    DBClusterIdentifier=cluster_id,
                    Engine=ENGINE,
                    DBInstanceClass=instance_class,
                    PubliclyAccessible=False,
                    AutoMinorVersionUpgrade=False,
                    PromotionTier=0,
                    CACertificateIdentifier=CA_IDENTIFIER,
                    Tags=[{"Key": k, "Value": v} for k, v in tags],
                )
        except errors.AwsRequestFailed as exc:
            if aws.error_code(exc) != "DBInstanceAlreadyExists":  # a retried call
                raise

    def set_master_password(self, cluster_id: str, username: str, password: str) -> None:
        self._require_temporary(cluster_id, "reset the master password of")
        with aws.call("rds:ModifyDBCluster"):
            self.rds.modify_db_cluster(
                DBClusterIdentifier=cluster_id, MasterUserPassword=password, ApplyImmediately=True
            )

    def disable_deletion_protection(self, cluster_id: str) -> None:
        self._require_temporary(cluster_id, "modify")
        with aws.call("rds:ModifyDBCluster"):
            self.rds.modify_db_cluster(DBClusterIdentifier=cluster_id, DeletionProtection=False, ApplyImmediately=True)

    def delete_instance(self, instance_id: str) -> None:
        self._require_temporary(instance_id, "delete")
        self._busy_is_not_ready(
            "rds:DeleteDBInstance",
            lambda: self.rds.delete_db_instance(
                DBInstanceIdentifier=instance_id, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
            ),
            _GONE_INSTANCE,
        )

    def delete_cluster(self, cluster_id: str) -> None:
        self._require_temporary(cluster_id, "delete")
        self._busy_is_not_ready(
            "rds:DeleteDBCluster",
            lambda: self.rds.delete_db_cluster(
                DBClusterIdentifier=cluster_id, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
            ),
            _GONE_CLUSTER,
        )

    def endpoint(self, cluster: dict[str, Any]) -> Endpoint:
        address = cluster.get("Endpoint")
        if not address:
            raise errors.NotReady(f"restored cluster {cluster.get('DBClusterIdentifier')} has no endpoint yet")
        return Endpoint(address, int(cluster.get("Port") or 5432))

    @staticmethod
    def _busy_is_not_ready(op: str, call: Any, gone: tuple[str, ...]) -> None:
        """Already gone: done. Busy (creating, modifying, members still there): NotReady, ask again."""
        try:
            with aws.call(op):
                call()
        except errors.AwsRequestFailed as exc:
            code = aws.error_code(exc)
            if code in gone:
                return
            if code in _BUSY:
                raise errors.NotReady(f"{op}: {exc}") from exc
            raise
