"""The committed restore-test ASL, executed in moto's interpreter with the real backup_verifier handler:
RDS is moto (with RdsTransitions making restores and deletions take several polls), the source and
the "restored cluster" are real PostgreSQL 15 servers (local/restore.py). Every path ends with no
temporary cluster or instance left, a recorded result, and a notification when it failed."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from backup_support import CLUSTER_ID, PREFIX, RdsTransitions, create_source, temporaries
from hapg import runtime
from hapg.names import DB_NAME, Backup, BackupState, Env, Outcome, Sub, Table
from moto.rds.models import rds_backends
from support import create_state_table, make_secret

from local.executor import LocalExecutor
from local.restore import MASTER_USER, LocalRestore, RestoreLab

pytestmark = pytest.mark.pg
ASL = Path(__file__).resolve().parents[2] / "statemachines" / "backup_verification.asl.json"
TABLE = "hapg-test-state"
S = BackupState


@dataclass
class Bench:
    ex: LocalExecutor
    machine: str
    port: LocalRestore
    lab: RestoreLab
    published: Any  # every notification so far (LocalExecutor.capture_topic)
    base_env: dict[str, str]
    seen: int = 0

    def notifications(self) -> list[dict]:
        """Notifications published since the last call."""
        everything = self.published()
        new, self.seen = everything[self.seen :], len(everything)
        return new

    def configure(self, **env: str) -> None:
        """Function settings for the next executions (the handlers read them per cold start)."""
        os.environ.update({**self.base_env, **env})
        runtime.reset()
        runtime.override(restore=self.port)

    def run(self, payload: dict, timeout_s: float = 120):
        return self.ex.run(self.machine, payload, timeout_s=timeout_s)

    def history(self) -> dict[str, dict]:
        items = boto3.client("dynamodb").query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"{Table.RESTORE_PREFIX}{CLUSTER_ID}"}},
        )["Items"]
        return {i["execution"]["S"]: i for i in items if i[Table.SK]["S"] != Backup.LEASE_SK}

    def lease(self) -> dict | None:
        key = {Table.PK: {"S": f"{Table.RESTORE_PREFIX}{CLUSTER_ID}"}, Table.SK: {"S": Backup.LEASE_SK}}
        return boto3.client("dynamodb").get_item(TableName=TABLE, Key=key).get("Item")

    def invoked(self, since: float) -> list[str]:
        return [i.event.get("action") for i in self.ex.invocations() if i.started >= since]


@pytest.fixture(scope="module")
def bench():
    lab = RestoreLab(prefix="hapg-sm-restore-").start()
    saved = dict(os.environ)
    try:
        stand_in = lab.clone("restored")
        with LocalExecutor(fast=True) as ex:
            env = create_source(MASTER_USER)
            topic = boto3.client("sns").create_topic(Name="hapg-test-alerts")["TopicArn"]
            create_state_table(TABLE)
            source = str(lab.source.endpoint)
            env.update(
                {
                    Env.DB_SECRET_ARN: make_secret(lab.sandbox, name="hapg-test/db/source"),
                    Env.DB_NAME: DB_NAME,
                    Env.DB_WRITER_ENDPOINT: source,
                    Env.DB_READER_ENDPOINT: source,
                    Env.DB_SSL_ROOT_CERT: str(lab.sandbox.tls.ca_cert),
                    Env.DB_CONNECT_TIMEOUT: "3",
                    Env.STATE_TABLE: TABLE,
                    Env.ALERT_TOPIC_ARN: topic,
                    Env.METRICS_NAMESPACE: "HAPostgreSQL",
                    Env.CREDENTIALS_WAIT_S: "5",
                }
            )
            port = LocalRestore(CLUSTER_ID, PREFIX, stand_in)
            arn = ex.add_function("BackupVerifierFunction", "backup_verifier", timeout_s=900)
            machine = ex.create_state_machine("hapg-test-backup-verification", ASL, {Sub.BACKUP: arn, Sub.TOPIC: topic})
            b = Bench(ex, machine, port, lab, ex.capture_topic(topic), env)
            b.configure()
            yield b
    finally:
        runtime.reset()
        os.environ.clear()
        os.environ.update(saved)
        lab.stop()


@pytest.fixture
def wf(bench):
    """The bench, idle: default settings, stand-in restored, nothing temporary, no old notifications."""
    bench.configure()
    bench.port.stand_in = bench.lab.clones[0]
    bench.port.calls.clear()
    bench.port.passwords.clear()
    bench.notifications()
    assert temporaries() == {"clusters": [], "instances": []}
    assert bench.lease() is None
    yield bench
    assert temporaries() == {"clusters": [], "instances": []}, "a temporary cluster or instance outlived the test"
    assert bench.lease() is None, "every run gives the lease back"


def visits(result, state: str) -> int:
    return [s.name for s in result.states].count(state)


def no_secret_anywhere(wf, result) -> None:
    """No password set on a restored cluster appears in the execution history or any step's data."""
    assert wf.port.passwords, "verify set a password"
    history = json.dumps(result.history, default=str)
    steps = json.dumps([(i.event, i.result, i.error_message) for i in wf.ex.invocations()], default=str)
    for password in wf.port.passwords:
        assert password not in history and password not in steps


def test_success_restores_verifies_deletes_and_records(wf):
    t0 = time.time()
    with RdsTransitions(creating_reads=2, deleting_reads=2):
        r = wf.run({"reason": "weekly restore test"})
    assert r.status == "SUCCEEDED", r.timeline()
    assert r.output["outcome"] == Outcome.SUCCEEDED
    assert r.output["reason"].startswith(f"restore verified: {DB_NAME} has the source's 3 schemas and 5 tables")
    assert r.output["snapshot_id"].startswith(f"rds:{CLUSTER_ID}-")
    # two scaled 60 s waits (0.6 s each) lie between the restore call and the status that saw it available
    assert r.output["restore_seconds"] > 0 and r.output["cleaned_up"] is True
    names = [s.name for s in r.states]
    assert names[:5] == [S.VALIDATE, S.SWEEP, S.SWEPT, S.PREPARE, S.RESTORE]
    assert visits(r, S.STATUS) >= 3 and visits(r, S.WAIT_RESTORE) >= 2, "polled while the restore was creating"
    assert visits(r, S.CLEANUP) >= 2 and visits(r, S.WAIT_CLEANUP) >= 1, "waited for the deletion"
    assert names.index(S.VERIFY) < names.index(S.BEGIN_CLEANUP) < names.index(S.RECORD)
    assert names[-1] == S.DONE and S.NOTIFY not in names
    run_cluster = r.output["cluster"]
    assert wf.port.calls == [
        ("restore", run_cluster),
        ("create_instance", f"{run_cluster}-1"),
        ("set_master_password", run_cluster),
        ("delete_instance", f"{run_cluster}-1"),
        ("delete_cluster", run_cluster),
    ]
    assert wf.notifications() == []
    record = wf.history()[r.execution_arn]
    assert record["outcome"]["S"] == Outcome.SUCCEEDED and record["verified"]["BOOL"] is True
    assert set(wf.invoked(t0)) == {
        "validate",
        "sweep",
        "prepare",
        "restore_snapshot",
        "status",
        "verify",
        "cleanup",
        "record",
    }
    no_secret_anywhere(wf, r)


def test_a_restore_that_never_becomes_available_times_out_then_cleans_up(wf):
    wf.configure(**{Env.RESTORE_DEADLINE_S: "2"})
    with RdsTransitions(creating_reads=None, deleting_reads=1):
        r = wf.run({})
    assert r.status == "FAILED" and r.error == "RestoreTestFailed", r.timeline()
    assert visits(r, S.STATUS) >= 2 and S.VERIFY not in [s.name for s in r.states]
    run_cluster = wf.port.calls[0][1]
    (note,) = wf.notifications()
    reason = (
        f"BackupCheckFailed: the restored cluster {run_cluster} was not available within 2 s "
        "(cluster creating, instance not created)"
    )
    headline = reason.removeprefix("BackupCheckFailed: ")
    assert note["Subject"] == f"[{CLUSTER_ID}] Restore test FAILED: {headline}"[:96] + "..."
    assert f"Reason:       {reason}" in note["Message"] and "Cleaned up:   yes" in note["Message"]
    assert ("delete_cluster", run_cluster) in wf.port.calls
    record = wf.history()[r.execution_arn]
    assert record["outcome"]["S"] == Outcome.FAILED and record["reason"]["S"] == reason


def test_a_verification_failure_is_cleaned_up_recorded_and_notified(wf):
    broken = wf.lab.clone("broken")
    broken.sql("DROP TABLE ledger.accounts", dbname=DB_NAME)
    wf.port.stand_in = broken
    with RdsTransitions(creating_reads=1, deleting_reads=1):
        r = wf.run({})
    assert r.status == "FAILED", r.timeline()
    names = [s.name for s in r.states]
    assert names.index(S.VERIFY) < names.index(S.BEGIN_CLEANUP) < names.index(S.CLEANUP) < names.index(S.RECORD)
    (note,) = wf.notifications()
    missing = f"table ledger.accounts is missing from the restored {DB_NAME}"
    assert note["Subject"] == f"[{CLUSTER_ID}] Restore test FAILED: {missing}"[:96] + "..."
    assert f"Reason:       BackupCheckFailed: {missing}\n" in note["Message"]
    run_cluster = wf.port.calls[0][1]
    assert wf.port.calls[-2:] == [("delete_instance", f"{run_cluster}-1"), ("delete_cluster", run_cluster)]
    record = wf.history()[r.execution_arn]
    assert (record["outcome"]["S"], record["verified"]["BOOL"], record["cleaned_up"]["BOOL"]) == (
        Outcome.FAILED,
        False,
        True,
    )
    no_secret_anywhere(wf, r)


def test_a_leftover_from_a_crashed_run_is_found_by_tag_and_deleted_first(wf):
    # A run that crashed: stopped while its restore was still creating, so its Catch never ran.
    with RdsTransitions(creating_reads=None, deleting_reads=1):
        crashed = wf.ex.start(wf.machine, {"reason": "will crash"})
        deadline = time.time() + 60
        while not temporaries()["clusters"] or not any(i.event.get("action") == "status" for i in wf.ex.invocations()):
            assert time.time() < deadline, "the crashing run never restored"
            time.sleep(0.05)
        boto3.client("stepfunctions").stop_execution(executionArn=crashed, error="Crash", cause="simulated crash")
        stopped = wf.ex.wait(crashed)
    assert stopped.status == "ABORTED"
    (leftover,) = temporaries()["clusters"]
    # At once, the crashed run's lease is still valid (it might be alive): a new run is refused and
    # deletes nothing.
    wf.port.calls.clear()
    refused = wf.run({})
    assert (refused.status, refused.error) == ("FAILED", "LockHeld")
    assert f"another restore test is running ({crashed})" in refused.cause
    assert temporaries()["clusters"] == [leftover] and wf.port.calls == []
    # A lease later, the crashed run cannot be alive (every live step renews it): its cluster is a
    # leftover, deleted before the next restore.
    key = {Table.PK: {"S": f"{Table.RESTORE_PREFIX}{CLUSTER_ID}"}, Table.SK: {"S": Backup.LEASE_SK}}
    boto3.client("dynamodb").update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET #exp = :past",
        ExpressionAttributeNames={"#exp": Table.TTL},
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    with RdsTransitions(creating_reads=1, deleting_reads=1):
        r = wf.run({})
    assert r.status == "SUCCEEDED", r.timeline()
    assert r.output["leftovers_removed"] == [leftover]
    assert visits(r, S.SWEEP) >= 2, "waited until the leftover was gone before restoring"
    first_restore = wf.port.calls.index(("restore", r.output["cluster"]))
    assert wf.port.calls[:first_restore] == [("delete_cluster", leftover)]  # its instance was never created
    assert wf.history()[r.execution_arn]["leftovers_removed"]["L"] == [{"S": leftover}]
    assert wf.notifications() == []


def test_bad_input_fails_at_once_and_creates_nothing(wf):
    t0 = time.time()
    r = wf.run({"reason": "x", "target": "prod"})
    assert (r.status, r.error) == ("FAILED", "InvalidInput")
    assert "unknown field(s) target in the restore test input" in r.cause
    missing = wf.run({"snapshot_id": "rds:hapg-test-cluster-1999-01-01-00-00"})
    assert (missing.status, missing.error) == ("FAILED", "InvalidInput")
    assert "snapshot rds:hapg-test-cluster-1999-01-01-00-00 not found" in missing.cause
    assert wf.invoked(t0) == ["validate", "validate"] and wf.port.calls == []
    assert wf.notifications() == []
    assert r.execution_arn not in wf.history()


def test_no_automated_snapshot_is_a_notified_failure_with_nothing_to_clean(wf):
    backend = rds_backends["123456789012"]["us-east-1"]
    saved = {k: v for k, v in backend.cluster_snapshots.items() if k.startswith(f"rds:{CLUSTER_ID}-")}
    for key in saved:
        del backend.cluster_snapshots[key]
    try:
        r = wf.run({})
    finally:
        backend.cluster_snapshots.update(saved)
    assert r.status == "FAILED"
    assert S.RESTORE not in [s.name for s in r.states] and wf.port.calls == []
    (note,) = wf.notifications()
    assert note["Subject"] == f"[{CLUSTER_ID}] Restore test FAILED: no automated snapshot of {CLUSTER_ID} to restore"
    assert wf.history()[r.execution_arn]["outcome"]["S"] == Outcome.FAILED
