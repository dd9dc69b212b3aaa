"""The RDS port and the state table, on moto (in-process: no network)."""

import dataclasses

import boto3
import pytest
from hapg import errors
from hapg.aurora import AuroraCluster
from hapg.failover import promotion_status
from hapg.history import StateTable
from hapg.models import HistoryRecord
from hapg.names import Table
from support import create_state_table


@pytest.fixture
def cluster(aws):
    rds = boto3.client("rds")
    rds.create_db_cluster(
        DBClusterIdentifier="c1",
        Engine="aurora-postgresql",
        EngineVersion="15.10",
        MasterUsername="admin",
        MasterUserPassword="not-a-real-one",
        DatabaseName="financialdb",
    )
    for name, tier in (("w", 0), ("r1", 1), ("r2", 2)):
        rds.create_db_instance(
            DBInstanceIdentifier=name,
            DBClusterIdentifier="c1",
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
            PromotionTier=tier,
        )
    return AuroraCluster("c1", lag_source=lambda: {"r1": 12.0, "r2": None})


def test_snapshot_maps_members_tiers_endpoints_and_lag(cluster):
    snap = cluster.snapshot()
    assert snap.status == "available" and snap.writer.instance_id == "w"
    r1 = snap.member("r1")
    assert (r1.promotion_tier, r1.lag_ms, r1.is_writer, r1.status) == (1, 12.0, False, "available")
    assert snap.member("r2").lag_ms is None and snap.writer.lag_ms == 0.0
    assert r1.endpoint.host.startswith("r1.") and r1.endpoint.port == 5432


def test_failover_moves_the_writer_and_status_sees_it(cluster):
    assert promotion_status(cluster.snapshot(), "r1")["complete"] is False
    cluster.failover("r1")
    status = promotion_status(cluster.snapshot(), "r1", require_all=True)
    assert status["complete"] and status["writer"] == "r1" and status["replicas"] == 2


def test_unknown_cluster_is_a_fatal_aws_error(aws):
    with pytest.raises(errors.AwsRequestFailed, match="DBClusterNotFoundFault"):
        AuroraCluster("nope").snapshot()


def test_lag_source_failure_degrades_to_unknown_lag(cluster):
    def broken():
        raise errors.DatabaseUnavailable("writer down")

    snap = AuroraCluster("c1", lag_source=broken).snapshot()
    assert snap.member("r1").lag_ms is None


@pytest.fixture
def table(aws):
    create_state_table("t")
    return StateTable("t", "c1")


def record(n, outcome="succeeded"):
    return HistoryRecord(
        f"arn:aws:states:us-east-1:1:execution:sm:run-{n}",
        "switchover",
        "switchover",
        outcome,
        "why",
        1000.0 + n,
        1000.5 + n,
        "w",
        "r1",
        phases_ms={"total": 500.5},
    )


def test_history_round_trips_newest_first_and_is_written_once(table):
    assert table.put(record(1)) and table.put(record(2))
    assert table.put(record(2)) is False, "a retried record step does not write twice"
    recent = table.recent()
    assert [r.execution[-5:] for r in recent] == ["run-2", "run-1"]
    assert recent[0] == record(2)


def test_a_retry_that_finishes_later_still_finds_its_record(table):
    """A retried record step assesses again, so its finished_at differs: the key must not."""
    first = record(3)
    assert table.put(first)
    assert table.put(dataclasses.replace(first, finished_at=first.finished_at + 30, outcome="failed")) is False
    assert table.recent() == (first,)


def test_lock_owner_respects_expiry_and_maintenance_flag(table):
    ddb = boto3.client("dynamodb")
    key = {Table.PK: {"S": "LOCK#c1"}, Table.SK: {"S": Table.LOCK_SK}}
    assert table.lock_owner(now=100) is None
    ddb.put_item(TableName="t", Item={**key, Table.OWNER: {"S": "exec-a"}, Table.TTL: {"N": "200"}})
    assert table.lock_owner(now=100) == "exec-a"
    assert table.lock_owner(now=300) is None, "expired locks are free even before DynamoDB deletes them"
    assert table.maintenance() is False
    ddb.put_item(
        TableName="t",
        Item={Table.PK: {"S": "CONTROL#c1"}, Table.SK: {"S": Table.MAINTENANCE_SK}, "enabled": {"BOOL": True}},
    )
    assert table.maintenance() is True


def test_iam_token_for_rds_proxy_uses_the_app_user(aws):
    import json
    from urllib.parse import parse_qs, urlparse

    from hapg.models import Endpoint
    from hapg.secrets import iam_token_provider

    arn = boto3.client("secretsmanager").create_secret(
        Name="app", SecretString=json.dumps({"username": "hapg_app", "password": "unused-here"})
    )["ARN"]
    creds = iam_token_provider(arn, Endpoint("hapg-dev-proxy.proxy-abc.us-east-1.rds.amazonaws.com", 5432))()
    assert creds.username == "hapg_app"
    query = parse_qs(urlparse("https://" + creds.password).query)
    assert query["Action"] == ["connect"] and query["DBUser"] == ["hapg_app"]
    assert "unused-here" not in creds.password
