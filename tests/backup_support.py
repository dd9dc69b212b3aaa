"""Backup verification test helpers: a source cluster in moto, and RDS status transitions.

moto's RDS restores, creates and deletes at once: a restored cluster reports `creating` in the
restore response only, and a deleted one is gone on the spot. `RdsTransitions` makes moto report
what Aurora does over minutes, for the temporary restore-test resources only (the `prefix`): a
restored cluster and its instance stay `creating` for a number of describe calls (or forever),
and a deleted one stays `deleting` for a number of describe calls before it disappears. Product
code is untouched; only what moto's backend reports changes.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any
from unittest import mock

import boto3
from hapg.names import Backup, Env
from moto.rds.models import RDSBackend

REGION = "us-east-1"
CLUSTER_ID = "hapg-test-cluster"
PREFIX = "hapg-test-restore"
SUBNET_GROUP = "hapg-test-db-subnets"
PARAMETER_GROUP = "hapg-test-cluster-pg15"
RETENTION_DAYS = 35
MASTER_USER = "hapg_master"


def create_source(
    master_user: str = MASTER_USER, *, retention: int = RETENTION_DAYS, copy_tags: bool = True, encrypted: bool = True
) -> dict[str, str]:
    """A protected, encrypted Aurora cluster with one instance, its network and its key, in moto.
    Returns the backup_verifier environment that points at it."""
    kms = boto3.client("kms", region_name=REGION)
    key_arn = kms.create_key(Description="aurora")["KeyMetadata"]["Arn"]
    # moto does not check network names against EC2 (and EC2 costs a second per mock): plain strings
    group = "sg-0db0000000000000a"
    rds = boto3.client("rds", region_name=REGION)
    rds.create_db_cluster_parameter_group(
        DBClusterParameterGroupName=PARAMETER_GROUP, DBParameterGroupFamily="aurora-postgresql15", Description="pg"
    )
    extra: dict[str, Any] = {"StorageEncrypted": True, "KmsKeyId": key_arn} if encrypted else {}
    rds.create_db_cluster(
        DBClusterIdentifier=CLUSTER_ID,
        Engine="aurora-postgresql",
        EngineVersion="15.10",
        MasterUsername=master_user,
        MasterUserPassword="not-used-by-the-tests",
        DatabaseName="financialdb",
        DBSubnetGroupName=SUBNET_GROUP,
        VpcSecurityGroupIds=[group],
        DBClusterParameterGroupName=PARAMETER_GROUP,
        BackupRetentionPeriod=retention,
        CopyTagsToSnapshot=copy_tags,
        DeletionProtection=True,
        Tags=[{"Key": "Project", "Value": "HA-PostgreSQL-Database"}, {"Key": "Team", "Value": "sre"}],
        **extra,
    )
    rds.create_db_instance(
        DBInstanceIdentifier="hapg-test-writer",
        DBClusterIdentifier=CLUSTER_ID,
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
    )
    return {
        Env.CLUSTER_ID: CLUSTER_ID,
        Env.BACKUP_KMS_KEY_ARN: key_arn,
        Env.BACKUP_RETENTION_DAYS: str(RETENTION_DAYS),
        Env.DB_SUBNET_GROUP: SUBNET_GROUP,
        Env.DB_SECURITY_GROUP_ID: group,
        Env.DB_CLUSTER_PARAMETER_GROUP: PARAMETER_GROUP,
        Env.RESTORE_INSTANCE_CLASS: Backup.DEFAULT_INSTANCE_CLASS,
        Env.RESTORE_PREFIX: PREFIX,
    }


def make_leftover(run_id: str = "0123456789", source: str = CLUSTER_ID, prefix: str = PREFIX) -> str:
    """A temporary cluster + instance as a crashed run leaves them (restored, tagged, running)."""
    rds = boto3.client("rds", region_name=REGION)
    snapshot = rds.describe_db_cluster_snapshots(DBClusterIdentifier=CLUSTER_ID, SnapshotType="automated")
    snapshot_id = snapshot["DBClusterSnapshots"][0]["DBClusterSnapshotIdentifier"]
    tags = [{"Key": Backup.TAG_RUN, "Value": run_id}, {"Key": Backup.TAG_SOURCE, "Value": source}]
    cluster_id = f"{prefix}-{run_id}"
    rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier=cluster_id, SnapshotIdentifier=snapshot_id, Engine="aurora-postgresql", Tags=tags
    )
    rds.create_db_instance(
        DBInstanceIdentifier=f"{cluster_id}-1",
        DBClusterIdentifier=cluster_id,
        Engine="aurora-postgresql",
        DBInstanceClass="db.t4g.medium",
        Tags=tags,
    )
    return cluster_id


def temporaries(prefix: str = PREFIX) -> dict[str, list[str]]:
    """Every cluster and instance moto still holds under the temporary prefix."""
    rds = boto3.client("rds", region_name=REGION)
    clusters = [c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]]
    instances = [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]]
    return {
        "clusters": [c for c in clusters if c.startswith(prefix)],
        "instances": [i for i in instances if i.startswith(prefix)],
    }


def capture_queue(topic_arn: str) -> Any:
    """Subscribe an SQS queue to the topic; the returned callable drains [{"Subject", "Message"}]."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="hapg-test-capture")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns", region_name=REGION).subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)

    def drain() -> list[dict[str, str]]:
        out = []
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            for m in messages:
                body = json.loads(m["Body"])
                out.append({"Subject": body.get("Subject"), "Message": body.get("Message")})
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return out

    return drain


class RdsTransitions:
    """Make moto's RDS take its time for resources named `<prefix>-...` (see the module docstring).

    creating_reads: describe calls a new temporary cluster/instance reports `creating` (None: forever).
    deleting_reads: describe calls a deleted temporary cluster/instance keeps reporting `deleting`.
    """

    def __init__(self, prefix: str = PREFIX, creating_reads: int | None = 2, deleting_reads: int = 2):
        self.prefix = prefix
        self.creating_reads = creating_reads
        self.deleting_reads = deleting_reads
        self._reads: dict[str, int] = {}
        self._pending: dict[tuple[str, str], int] = {}  # (kind, id) -> describe calls left while deleting
        self._stack = ExitStack()
        self._original: dict[str, Any] = {}

    def __enter__(self) -> RdsTransitions:
        for name in ("describe_db_clusters", "describe_db_instances", "delete_db_cluster", "delete_db_instance"):
            self._original[name] = getattr(RDSBackend, name)
            self._stack.enter_context(mock.patch.object(RDSBackend, name, _as_method(getattr(self, f"_{name}"))))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _ours(self, ident: str) -> bool:
        return ident.startswith(self.prefix + "-")

    def _tick(self, backend: RDSBackend) -> None:
        for key in list(self._pending):
            self._pending[key] -= 1
            if self._pending[key] > 0:
                continue
            del self._pending[key]
            kind, ident = key
            if kind == "instance" and ident in backend.databases:
                self._original["delete_db_instance"](backend, ident, skip_final_snapshot=True)
            elif kind == "cluster" and ident in backend.clusters:
                for member in [m for m, d in backend.databases.items() if d.db_cluster_identifier == ident]:
                    self._original["delete_db_instance"](backend, member, skip_final_snapshot=True)
                self._original["delete_db_cluster"](backend, ident)

    def _creating(self, ident: str) -> bool:
        reads = self._reads[ident] = self._reads.get(ident, 0) + 1
        return self.creating_reads is None or reads <= self.creating_reads

    def _describe_db_clusters(self, backend: RDSBackend, *args: Any, **kwargs: Any) -> list:
        self._tick(backend)
        clusters = self._original["describe_db_clusters"](backend, *args, **kwargs)
        for c in clusters:
            if not self._ours(c.db_cluster_identifier):
                continue
            if ("cluster", c.db_cluster_identifier) in self._pending:
                c.status = "deleting"
            elif self._creating(c.db_cluster_identifier):
                c.status = "creating"  # moto flips this to available when it is read
        return clusters

    def _describe_db_instances(self, backend: RDSBackend, *args: Any, **kwargs: Any) -> list:
        self._tick(backend)
        instances = self._original["describe_db_instances"](backend, *args, **kwargs)
        for i in instances:
            if not self._ours(i.db_instance_identifier):
                continue
            if ("instance", i.db_instance_identifier) in self._pending:
                i.status = "deleting"
            else:
                i.status = "creating" if self._creating(i.db_instance_identifier) else "available"
        return instances

    def _delete_db_instance(self, backend: RDSBackend, db_instance_identifier: str, *args: Any, **kwargs: Any):
        ident = db_instance_identifier
        if not self._ours(ident) or self.deleting_reads <= 0 or ident not in backend.databases:
            return self._original["delete_db_instance"](backend, ident, *args, **kwargs)
        self._pending.setdefault(("instance", ident), self.deleting_reads)
        instance = backend.databases[ident]
        instance.status = "deleting"
        return instance

    def _delete_db_cluster(self, backend: RDSBackend, cluster_identifier: str, *args: Any, **kwargs: Any):
        ident = cluster_identifier
        cluster = backend.clusters.get(ident)
        members = [m for m, d in backend.databases.items() if d.db_cluster_identifier == ident]
        if (
            not self._ours(ident)
            or self.deleting_reads <= 0
            or cluster is None
            or cluster.deletion_protection
            or any(("instance", m) not in self._pending for m in members)  # RDS: members must be deleting
        ):
            return self._original["delete_db_cluster"](backend, ident, *args, **kwargs)
        self._pending.setdefault(("cluster", ident), self.deleting_reads + 1)
        cluster.status = "deleting"
        return cluster


def _as_method(handler: Any) -> Any:
    """A plain function, so that the backend instance is passed in when it is looked up on the class."""

    def method(backend: RDSBackend, *args: Any, **kwargs: Any) -> Any:
        return handler(backend, *args, **kwargs)

    return method
