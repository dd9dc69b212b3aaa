"""backup_verifier on moto: the daily check action, the restore-test steps (restore, status with its
deadline, cleanup, sweep by tag, record), the safety guards, and bad input with no side effect."""

from __future__ import annotations

import dataclasses
import json
import time

import boto3
import pytest
from backup_support import (
    CLUSTER_ID,
    PREFIX,
    RdsTransitions,
    capture_queue,
    create_source,
    make_leftover,
    temporaries,
)
from hapg import errors, restore, restore_lease, restore_report, restore_run, runtime, verifier
from hapg.names import Backup, Env, Metric, Outcome, Table
from hapg.restore_port import AuroraRestore
from hapg.restore_run import Request
from hapg.steps import Step
from support import create_state_table

from local.handlers import invoke

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:hapg-test-backup-verification:exec-1"
TABLE = "hapg-test-state"


@pytest.fixture
def env(aws, monkeypatch):
    values = create_source()
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="hapg-test-alerts")["TopicArn"]
    create_state_table(TABLE)
    values.update({Env.ALERT_TOPIC_ARN: topic, Env.STATE_TABLE: TABLE, Env.METRICS_NAMESPACE: "HAPostgreSQL"})
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    return values


def automated_snapshot() -> dict:
    rds = boto3.client("rds")
    return rds.describe_db_cluster_snapshots(DBClusterIdentifier=CLUSTER_ID, SnapshotType="automated")[
        "DBClusterSnapshots"
    ][0]


def emf(capsys) -> dict[str, list[float]]:
    """Metric values printed as EMF by the handler, by name."""
    out: dict[str, list[float]] = {}
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' not in line:
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            assert directive["Dimensions"] == [[Metric.DIM_CLUSTER]]
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                out.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return out


# ---- the daily check ----------------------------------------------------------------------------


def test_daily_check_passes_on_a_fresh_cluster_and_emits_its_figures(env, capsys):
    notes = capture_queue(env[Env.ALERT_TOPIC_ARN])
    result = invoke("backup_verifier", {"action": "check"})
    assert result["healthy"] is True, result["reason"]
    assert result["snapshot_id"].startswith(f"rds:{CLUSTER_ID}-")
    assert result["notified"] is False and notes() == []
    metrics = emf(capsys)
    assert metrics[Metric.BACKUP_AGE][0] < 1 and 0 <= metrics[Metric.PITR_LAG][0] < 600


def test_daily_check_failure_is_notified_with_its_reasons(env, monkeypatch, capsys):
    monkeypatch.setenv(Env.BACKUP_RETENTION_DAYS, "30")
    runtime.reset()
    boto3.client("rds").modify_db_cluster(DBClusterIdentifier=CLUSTER_ID, CopyTagsToSnapshot=False)
    notes = capture_queue(env[Env.ALERT_TOPIC_ARN])
    result = invoke("backup_verifier", {"action": "check"})
    assert result["healthy"] is False and result["notified"] is True
    assert result["failures"] == [
        "backup retention is 35 days, configured 30",
        "CopyTagsToSnapshot is off: snapshots do not carry the cluster's tags",
    ]
    (note,) = notes()
    assert note["Subject"] == f"[{CLUSTER_ID}] Backup check FAILED: 2 of 7 checks failed"
    assert "[FAILED] retention: backup retention is 35 days, configured 30" in note["Message"]
    assert Metric.BACKUP_AGE in emf(capsys)


def test_daily_check_that_cannot_describe_is_a_notified_failure(env, monkeypatch):
    monkeypatch.setenv(Env.CLUSTER_ID, "hapg-test-missing")
    runtime.reset()
    notes = capture_queue(env[Env.ALERT_TOPIC_ARN])
    result = invoke("backup_verifier", {"action": "check"})
    assert result["healthy"] is False
    assert result["reason"].startswith(
        "the backup checks could not run: rds:DescribeDBClusters: DBClusterNotFoundFault"
    )
    assert len(notes()) == 1


def test_unencrypted_backups_fail_the_check(aws, monkeypatch):
    for key, value in create_source(encrypted=False).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(Env.ALERT_TOPIC_ARN, boto3.client("sns").create_topic(Name="t")["TopicArn"])
    runtime.reset()
    result = invoke("backup_verifier", {"action": "check"})
    assert [f for f in result["failures"] if "not encrypted" in f]


# ---- bad input: a clear error, nothing created --------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"action": "destroy"}, "backup_verifier: unknown action 'destroy'; expected one of check, validate"),
        ([], "backup_verifier event must be a JSON object"),
        ({"action": "validate", "input": {"snapshot": "x"}, "execution": EXECUTION}, r"unknown field\(s\) snapshot"),
        ({"action": "validate", "input": {"reason": ""}, "execution": EXECUTION}, "reason must be a non-empty"),
        ({"action": "validate", "input": {}, "execution": "exec-1"}, "execution must be a Step Functions"),
        (
            {"action": "validate", "input": {"snapshot_id": "rds:nope"}, "execution": EXECUTION},
            "snapshot rds:nope not found",
        ),
        ({"action": "sweep", "request": {"run_id": "x"}}, "request is malformed"),
        ({"action": "cleanup", "request": "everything"}, "field 'request' must be dict"),
    ],
)
def test_bad_input_is_rejected_before_any_side_effect(env, event, message):
    with pytest.raises(errors.InvalidInput, match=message):
        invoke("backup_verifier", event)
    assert temporaries() == {"clusters": [], "instances": []}


def test_named_snapshots_must_be_automated_snapshots_of_this_cluster(env):
    rds = boto3.client("rds")
    rds.create_db_cluster_snapshot(DBClusterIdentifier=CLUSTER_ID, DBClusterSnapshotIdentifier="manual-1")
    event = {"action": "validate", "input": {"snapshot_id": "manual-1"}, "execution": EXECUTION}
    with pytest.raises(errors.InvalidInput, match="manual-1 is a manual snapshot; the restore test restores automated"):
        invoke("backup_verifier", event)
    named = automated_snapshot()["DBClusterSnapshotIdentifier"]
    state = invoke("backup_verifier", {**event, "input": {"snapshot_id": named, "reason": "audit"}})
    assert state["request"]["snapshot_id"] == named and state["request"]["reason"] == "audit"


def test_forged_identifiers_are_refused(env):
    state = invoke("backup_verifier", {"action": "validate", "input": {}, "execution": EXECUTION})
    request = state["request"]
    assert request["cluster_id"] == f"{PREFIX}-{request['run_id']}" and request["instance_id"].endswith("-1")
    for forged in ({"cluster_id": CLUSTER_ID}, {"run_id": "0000000000", "cluster_id": f"{PREFIX}-0000000000"}):
        with pytest.raises(errors.InvalidInput, match="do not belong to its execution"):
            invoke("backup_verifier", {"action": "cleanup", "request": {**request, **forged}, "started_at": 1})
    assert boto3.client("rds").describe_db_clusters(DBClusterIdentifier=CLUSTER_ID)["DBClusters"]


def test_the_port_never_writes_outside_the_temporary_prefix(env):
    port = AuroraRestore(CLUSTER_ID, PREFIX)
    for call in (
        lambda: port.delete_cluster(CLUSTER_ID),
        lambda: port.delete_instance("hapg-test-writer"),
        lambda: port.set_master_password(CLUSTER_ID, "hapg_master", "x" * 32),
        lambda: port.disable_deletion_protection(CLUSTER_ID),
        lambda: port.delete_cluster(f"{PREFIX}-manual"),
    ):
        with pytest.raises(errors.FatalError, match="not a restore-test identifier"):
            call()
    assert boto3.client("rds").describe_db_clusters(DBClusterIdentifier=CLUSTER_ID)["DBClusters"][0]["Status"]


# ---- restore, status, cleanup -------------------------------------------------------------------


def deps(**changes) -> restore_run.Deps:
    return dataclasses.replace(verifier.deps(), **changes)


def new_request(execution: str = EXECUTION, lease: bool = True) -> Request:
    """A request as validate makes it, holding the restore-test lease (unless told not to)."""
    request = Request(execution, PREFIX, "test", time.time(), None)
    if lease:
        restore_lease.hold_lease(request, deps(), take=True)
    return request


def snapshot_arg() -> dict:
    return {"id": automated_snapshot()["DBClusterSnapshotIdentifier"], "tags": [["Team", "sre"]]}


def test_restore_polls_to_available_then_cleans_up(env):
    d, request = deps(), new_request()
    with RdsTransitions(creating_reads=2, deleting_reads=2):
        started = restore.restore_snapshot(request, snapshot_arg(), d)
        assert started["created"] and started["deadline_at"] == started["started_at"] + 7200
        again = restore.restore_snapshot(request, snapshot_arg(), d)
        assert not again["created"], "a retried restore does not restore twice"
        polls = []
        while not (s := restore.status(request, started, snapshot_arg(), d))["available"]:
            polls.append((s["cluster_status"], s["instance_status"]))
            assert len(polls) < 10
        assert polls[0][0] == "creating" and ("available", "creating") in polls
        cluster = boto3.client("rds").describe_db_clusters(DBClusterIdentifier=request.cluster_id)["DBClusters"][0]
        assert cluster["DBSubnetGroup"] == env[Env.DB_SUBNET_GROUP]
        assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == [env[Env.DB_SECURITY_GROUP_ID]]
        assert cluster["KmsKeyId"] == env[Env.BACKUP_KMS_KEY_ARN]
        assert cluster["DBClusterParameterGroup"] == env[Env.DB_CLUSTER_PARAMETER_GROUP]
        tags = {t["Key"]: t["Value"] for t in cluster["TagList"]}
        assert tags == {Backup.TAG_RUN: request.run_id, Backup.TAG_SOURCE: CLUSTER_ID, "Team": "sre"}
        instance = boto3.client("rds").describe_db_instances(DBInstanceIdentifier=request.instance_id)["DBInstances"][0]
        assert instance["DBInstanceClass"] == "db.t4g.medium" and instance["PubliclyAccessible"] is False
        assert temporaries()["clusters"] == [request.cluster_id]
        rounds = []
        while not (c := restore.cleanup(request, now_iso(), d))["gone"]:
            rounds.append(c["remaining"])
            assert len(rounds) < 10
    assert rounds[0] == [f"instance {request.instance_id} (deleting)", f"cluster {request.cluster_id} (deleting)"]
    assert temporaries() == {"clusters": [], "instances": []}
    assert boto3.client("rds").describe_db_clusters(DBClusterIdentifier=CLUSTER_ID)["DBClusters"], "source untouched"
    assert restore.cleanup(request, now_iso(), d)["gone"], "idempotent once gone"


def test_status_gives_up_at_the_deadline(env):
    d = deps()
    request = new_request()
    with RdsTransitions(creating_reads=None):
        started = restore.restore_snapshot(request, snapshot_arg(), d)
        assert restore.status(request, started, snapshot_arg(), d)["available"] is False
        late = {**started, "deadline_at": time.time() - 1}
        with pytest.raises(errors.BackupCheckFailed) as exc:
            restore.status(request, late, snapshot_arg(), d)
    assert str(exc.value) == (
        f"the restored cluster {request.cluster_id} was not available within 7200 s "
        "(cluster creating, instance not created)"
    )


def test_cleanup_gives_up_at_its_deadline_and_says_what_is_left(env):
    d = deps(settings=dataclasses.replace(verifier.settings(), cleanup_deadline_s=60))
    request = new_request()
    restore.restore_snapshot(request, snapshot_arg(), d)
    with RdsTransitions(creating_reads=0, deleting_reads=100), pytest.raises(errors.BackupCheckFailed) as exc:
        restore.cleanup(request, time.time() - 61, d)
    assert (
        str(exc.value) == f"cleanup did not finish within 60 s; still present: cluster {request.cluster_id} (deleting)"
    )


def test_a_failed_restore_fails_at_once(env):
    d, request = deps(), new_request()
    started = restore.restore_snapshot(request, snapshot_arg(), d)
    from moto.rds.models import rds_backends

    rds_backends["123456789012"]["us-east-1"].clusters[request.cluster_id].status = "incompatible-restore"
    with pytest.raises(errors.BackupCheckFailed, match=f"the restore failed: cluster {request.cluster_id} is incompat"):
        restore.status(request, started, snapshot_arg(), d)


# ---- sweep: leftovers found by tag --------------------------------------------------------------


def test_sweep_deletes_tagged_leftovers_only(env):
    rds = boto3.client("rds")
    leftover = make_leftover("aaaaaaaaaa")
    other_source = make_leftover("bbbbbbbbbb", source="hapg-other-cluster")
    snap = automated_snapshot()["DBClusterSnapshotIdentifier"]
    untagged = f"{PREFIX}-cccccccccc"
    rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier=untagged, SnapshotIdentifier=snap, Engine="aurora-postgresql"
    )
    d, request = deps(), new_request()
    with RdsTransitions(creating_reads=0, deleting_reads=1):
        first = restore.sweep(request, [], d)
        assert first == {
            "found": [leftover],
            "remaining": [f"instance {leftover}-1 (deleting)", f"cluster {leftover} (deleting)"],
            "gone": False,
        }
        second = restore.sweep(request, first["found"], d)
    assert second == {"found": [leftover], "remaining": [], "gone": True}
    assert sorted(temporaries()["clusters"]) == [other_source, untagged], "not ours: left alone"


def test_teardown_refuses_a_prefix_named_cluster_without_our_tags(env):
    snap = automated_snapshot()["DBClusterSnapshotIdentifier"]
    rds = boto3.client("rds")
    run = new_request()
    rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier=run.cluster_id, SnapshotIdentifier=snap, Engine="aurora-postgresql"
    )
    with pytest.raises(errors.FatalError, match="not tagged as a restore test of hapg-test-cluster"):
        restore.cleanup(run, time.time(), deps())
    assert temporaries()["clusters"] == [run.cluster_id]


# ---- record -------------------------------------------------------------------------------------


def state_after(verified: bool = True, **extra) -> dict:
    request = new_request(lease=False).to_dict()
    base = {
        "request": {**request, "started_at": 1000.0},
        "sweep": {"found": ["hapg-test-restore-aaaaaaaaaa"], "gone": True},
        "prepare": {"snapshot": {"id": "rds:hapg-test-cluster-2026", "created_at": 1000.0 - 7200}},
        "restore": {"started_at": 1010.0, "deadline_at": 8210.0},
        "status": {"available": True, "available_at": 1610.0},
        "cleanup": {"gone": True},
    }
    if verified:
        base["verify"] = {"ok": True, "reason": "restore verified: fine", "figures": {"size_ratio": 1.0}}
    return {**base, **extra}


# ---- the lease: one restore test at a time -------------------------------------------------------

OTHER = EXECUTION.replace("exec-1", "exec-2")


def lease_item() -> dict | None:
    key = {Table.PK: {"S": f"{Table.RESTORE_PREFIX}{CLUSTER_ID}"}, Table.SK: {"S": Backup.LEASE_SK}}
    return boto3.client("dynamodb").get_item(TableName=TABLE, Key=key).get("Item")


def test_a_second_restore_test_is_refused_while_the_first_is_alive(env):
    first = invoke("backup_verifier", {"action": "validate", "input": {}, "execution": EXECUTION})
    item = lease_item()
    assert item[Table.OWNER]["S"] == EXECUTION and item["run_id"]["S"] == first["request"]["run_id"]
    assert int(item[Table.TTL]["N"]) == pytest.approx(time.time() + Backup.LEASE_S, abs=5)
    with pytest.raises(errors.LockHeld, match=f"another restore test is running \\({EXECUTION}\\); its lease lasts"):
        invoke("backup_verifier", {"action": "validate", "input": {}, "execution": OTHER})
    assert lease_item()[Table.OWNER]["S"] == EXECUTION
    again = invoke("backup_verifier", {"action": "validate", "input": {}, "execution": EXECUTION})
    assert again["request"]["run_id"] == first["request"]["run_id"], "a retried validate keeps its own lease"


def test_an_expired_lease_is_taken_over_and_its_owner_stops(env):
    mine = new_request()
    late = time.time() + Backup.LEASE_S + 1  # the first run has not renewed for a whole lease
    d_late = deps(clock=lambda: late)
    other = Request(OTHER, PREFIX, "test", late, None)
    restore_lease.hold_lease(other, d_late, take=True)
    assert lease_item()[Table.OWNER]["S"] == OTHER
    with pytest.raises(errors.BackupCheckFailed, match=f"this restore test lost its lease to {OTHER}"):
        restore.restore_snapshot(mine, snapshot_arg(), d_late)
    assert temporaries()["clusters"] == [], "a run without the lease creates nothing"
    assert restore.cleanup(mine, now_iso(), d_late)["gone"], "but it may still clean up its own"


def test_record_gives_the_lease_back_and_only_its_own(env):
    state = {**state_after(), "request": {**new_request().to_dict(), "started_at": 1000.0}}
    invoke("backup_verifier", {"action": "record", "state": state, "execution": OTHER})
    assert lease_item() is not None, "another execution's record leaves the lease alone"
    invoke("backup_verifier", {"action": "record", "state": state, "execution": EXECUTION})
    assert lease_item() is None


def test_assess_outcomes():
    ok = restore_report.assess(state_after(), 2000.0)
    assert (ok["outcome"], ok["reason"], ok["restore_seconds"], ok["total_seconds"]) == (
        Outcome.SUCCEEDED,
        "restore verified: fine",
        600.0,
        1000.0,
    )
    assert ok["snapshot_age_hours"] == 2.0 and ok["leftovers_removed"] == ["hapg-test-restore-aaaaaaaaaa"]
    cause = json.dumps({"errorMessage": "table x is missing", "errorType": "BackupCheckFailed"})
    failed = restore_report.assess(state_after(False, error={"Error": "BackupCheckFailed", "Cause": cause}), 2000.0)
    assert (failed["outcome"], failed["reason"], failed["verified"]) == (
        Outcome.FAILED,
        "BackupCheckFailed: table x is missing",
        False,
    )
    cleanup = restore_report.assess(state_after(cleanup_error={"Error": "BackupCheckFailed", "Cause": "slow"}), 2000.0)
    assert cleanup["outcome"] == Outcome.FAILED and cleanup["verified"] is True
    assert cleanup["reason"] == "the restore was verified, but cleanup failed: BackupCheckFailed: slow"
    assert cleanup["cleaned_up"] is False
    silent = restore_report.assess(state_after(False), 2000.0)
    assert silent["reason"] == "the restore test ended without a verdict"


def test_record_is_written_once_and_emits_once(env, capsys):
    event = {"action": "record", "state": state_after(), "execution": EXECUTION}
    first = invoke("backup_verifier", event)
    assert first["outcome"] == Outcome.SUCCEEDED and first["notify"] is False and first["recorded"] is True
    assert first["subject"] == f"[{CLUSTER_ID}] Restore test succeeded: rds:hapg-test-cluster-2026 restored in 10.0 min"
    assert emf(capsys) == {Metric.RESTORE_SUCCEEDED: [1.0], Metric.RESTORE_DURATION: [600.0]}
    again = invoke("backup_verifier", event)
    assert again["recorded"] is False and again["subject"] == first["subject"]
    assert emf(capsys) == {}, "a retried record does not count the test twice"
    items = boto3.client("dynamodb").query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"{Table.RESTORE_PREFIX}{CLUSTER_ID}"}},
    )["Items"]
    assert len(items) == 1
    item = items[0]
    assert item["outcome"]["S"] == Outcome.SUCCEEDED and item["execution"]["S"] == EXECUTION
    assert item["restore_seconds"]["N"] == "600.0" and int(item[Table.TTL]["N"]) > time.time() + 399 * 86400


def test_failed_record_notifies_with_the_reason(env, capsys):
    cause = json.dumps({"errorMessage": "key table ledger.entries is empty in the restore but has rows in the source"})
    state = state_after(False, error={"Error": "BackupCheckFailed", "Cause": cause})
    report = invoke("backup_verifier", {"action": "record", "state": state, "execution": EXECUTION})
    assert report["notify"] is True and report["outcome"] == Outcome.FAILED
    assert (
        report["subject"]
        == f"[{CLUSTER_ID}] Restore test FAILED: key table ledger.entries is empty in the restore but ha..."
    )
    assert report["subject"].isascii() and len(report["subject"]) <= 99
    assert "Reason:       BackupCheckFailed: key table ledger.entries is empty" in report["message"]
    assert "First actions: see docs/runbook.md" in report["message"]
    assert emf(capsys) == {Metric.RESTORE_SUCCEEDED: [0.0], Metric.RESTORE_DURATION: [600.0]}


def test_step_parsing_routes_every_action():
    for action in verifier.ACTIONS:
        assert Step.parse({"action": action}, verifier.ACTIONS, "backup_verifier").action == action
    assert set(verifier.ACTIONS) == {"check", *restore_actions()}


def restore_actions() -> set[str]:
    asl = json.loads(
        (__import__("pathlib").Path(__file__).parents[2] / "statemachines/backup_verification.asl.json").read_text()
    )
    return {s["Parameters"]["action"] for s in asl["States"].values() if "action" in (s.get("Parameters") or {})}


def now_iso() -> str:
    """What the ASL's BeginCleanup passes: $$.State.EnteredTime."""
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat()
