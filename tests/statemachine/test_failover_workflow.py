"""The committed failover ASL, executed in moto's interpreter with our real handlers against a real
PostgreSQL pair: every path ends in a defined outcome, with the lock released and a notification."""

from __future__ import annotations

import time

import boto3
import pytest
from hapg.names import Outcome, RdsEvent, State, Table

from local.faults import throttle
from local.stack import APP_USER, rds_event

SWITCHOVER = {"action": "switchover", "reason": "test"}


def outcome(r):
    return (r.output or {}).get("outcome") if isinstance(r.output, dict) else None


def promotes(st, since: float) -> int:
    return sum(
        1
        for i in st.executor.invocations()
        if i.started >= since and isinstance(i.result, dict) and i.result.get("called") is True
    )


def role_limit(node) -> int:
    return node.sql("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (APP_USER,))[0][0]


def recorded(st) -> set[str]:
    """Executions in the newest history records (a new record is the newest: `history()` is newest first)."""
    return {h["execution"] for h in st.history()}


def other(st):
    return next(n for n in st.pair.nodes if n is not st.writer())


def test_planned_switchover_end_to_end(st):
    before, target, t0 = st.writer(), other(st), time.time()
    r = st.run(SWITCHOVER)
    assert r.status == "SUCCEEDED", r.timeline()
    assert outcome(r) == Outcome.SUCCEEDED
    assert r.output["old_writer"] == before.name and r.output["new_writer"] == target.name
    assert st.writer() is target
    assert promotes(st, t0) == 1
    assert st.lock_item() is None, "lock released"
    assert role_limit(target) == -1, "the drain's block was undone on the new writer"
    order = [s.name for s in r.states]
    for a, b in [
        (State.DRAIN, State.PROMOTE),
        (State.PROMOTE, State.RESTORE),
        (State.RESTORE, State.VERIFY),
        (State.VERIFY, State.RECORD),
        (State.RECORD, State.NOTIFY),
        (State.NOTIFY, State.RELEASE_LOCK),
    ]:
        assert order.index(a) < order.index(b), (a, b)
    [note] = st.notifications()
    assert note["Subject"].startswith(f"[{st.cluster.cluster_id}] Switchover succeeded: {before.name} -> {target.name}")
    assert "Unblocked:    hapg_app (verified: yes)" in note["Message"]
    latest = st.history()[0]
    assert (latest["execution"], latest["outcome"]) == (r.execution_arn, Outcome.SUCCEEDED)


def test_preflight_plans_without_side_effects(st):
    before, t0 = st.writer(), time.time()
    r = st.run({"action": "preflight"})
    assert r.status == "SUCCEEDED"
    assert r.output["decision"] == "promote" and r.output["target"] == other(st).name
    assert st.writer() is before and promotes(st, t0) == 0
    assert State.ACQUIRE_LOCK not in [s.name for s in r.states]
    assert st.notifications() == [] and r.execution_arn not in recorded(st)


def test_refusal_is_clean_notified_and_never_promotes(st):
    t0 = time.time()
    r = st.run({**SWITCHOVER, "target_instance": st.writer().name})
    assert r.status == "SUCCEEDED" and outcome(r) == Outcome.REFUSED
    assert "is already the writer" in r.output["reason"]
    assert promotes(st, t0) == 0 and st.lock_item() is None
    assert "refused" in st.notifications()[0]["Subject"]


@pytest.mark.parametrize(
    "bad",
    [
        {"action": "failover"},
        {"action": "switchover", "target_instance": "bad name!"},
        {"action": "switchover", "force": "yes"},
        {"action": "switchover", "extra": 1},
        {"source": "aws.rds", "detail-type": "RDS DB Cluster Event", "detail": {"EventID": "RDS-EVENT-0001"}},
        {
            **rds_event(RdsEvent.COMPLETED),
            "resources": ["arn:aws:rds:us-east-1:1:cluster:someone-else"],
            "detail": {**rds_event(RdsEvent.COMPLETED)["detail"], "SourceIdentifier": "someone-else", "SourceArn": ""},
        },
    ],
)
def test_malformed_input_fails_clearly_with_no_side_effect(st, bad):
    t0 = time.time()
    r = st.run(bad)
    assert r.status == "FAILED" and r.error == "InvalidInput"
    assert [s.name for s in r.states] == [State.VALIDATE]
    assert st.lock_item() is None and r.execution_arn not in recorded(st) and st.notifications() == []
    assert promotes(st, t0) == 0


def test_unplanned_writer_crash_is_taken_over(st):
    dead, survivor = st.writer(), other(st)
    dead.crash()
    r = st.run(rds_event(RdsEvent.STARTED_CROSS_AZ, at=time.time() + 1))
    assert outcome(r) == Outcome.SUCCEEDED, r.timeline()
    assert r.output["mode"] == "takeover" and st.writer() is survivor
    drain = next(
        i.result
        for i in st.executor.invocations()[::-1]
        if i.function.endswith("connection_drainer") and i.event.get("action") == "drain"
    )
    assert drain["reachable"] is False
    assert "Failover" in st.notifications()[0]["Subject"]


def test_duplicate_and_own_events_are_skipped(st):
    t0 = time.time()
    first = st.run(SWITCHOVER)
    assert outcome(first) == Outcome.SUCCEEDED
    ours = rds_event(RdsEvent.COMPLETED, at=t0 + 0.5)  # what our own promote emitted, delivered late
    results = [st.run(ours), st.run(ours), st.run(rds_event(RdsEvent.STARTED_SAME_AZ, at=t0 + 0.2))]
    assert [outcome(r) for r in results] == [Outcome.SKIPPED] * 3
    assert all("already handled" in r.output["reason"] for r in results)
    assert promotes(st, t0) == 1
    subjects = [n["Subject"] for n in st.notifications()]
    assert len(subjects) == 1 and "Switchover succeeded" in subjects[0], "skips are recorded, not paged"
    assert [h["outcome"] for h in st.history()[:3]] == [Outcome.SKIPPED] * 3


def test_two_concurrent_switchovers_promote_exactly_once(st):
    t0 = time.time()
    arns = [st.start({**SWITCHOVER, "reason": f"concurrent {i}"}) for i in range(2)]
    results = [st.executor.wait(a) for a in arns]
    assert sorted(outcome(r) for r in results) == sorted([Outcome.SUCCEEDED, Outcome.REFUSED])
    refused = next(r for r in results if outcome(r) == Outcome.REFUSED)
    assert "holds the failover lock" in refused.output["reason"]
    assert promotes(st, t0) == 1 and st.lock_item() is None


def test_target_down_is_refused(st):
    target = other(st)
    target.crash()
    r = st.run({**SWITCHOVER, "target_instance": target.name})
    assert outcome(r) == Outcome.REFUSED and f"target {target.name} is failed" in r.output["reason"]


def test_a_burst_of_rds_throttling_is_retried(st):
    with throttle("rds", calls=3) as counter:
        r = st.run(SWITCHOVER)
    assert outcome(r) == Outcome.SUCCEEDED and counter["throttled"] == 3
    assert any(i.error == "AwsThrottled" for i in st.executor.invocations())


def test_sustained_rds_throttling_fails_notified_and_unlocked(st):
    before = st.writer()
    with throttle("rds", calls=1000):
        r = st.run(SWITCHOVER)
    assert r.status == "FAILED" and st.lock_item() is None and st.writer() is before
    assert "AwsThrottled" in st.notifications()[0]["Message"]


def test_unreachable_drain_target_is_reported_and_the_workflow_goes_on(st):
    st.cluster.partitioned.add(st.writer().name)
    r = st.run(SWITCHOVER)
    assert outcome(r) == Outcome.SUCCEEDED
    assert "Drain:        writer unreachable" in st.notifications()[0]["Message"]


def test_promotion_that_never_completes_fails_notifies_and_unlocks(st, monkeypatch):
    st.configure(PROMOTE_DEADLINE_S="1.5")
    before = st.writer()
    # Aurora accepts the failover call but the target never becomes the writer
    monkeypatch.setattr(st.cluster, "failover", lambda target: None)
    r = st.run(SWITCHOVER)
    assert r.status == "FAILED" and r.error == "FailoverFailed"
    assert st.lock_item() is None
    assert role_limit(before) == -1, "the failure path undid the drain's block"
    note = st.notifications()[0]
    assert "FAILED" in note["Subject"] and "PromotionTimedOut" in note["Message"]
    assert st.history()[0]["outcome"] == Outcome.FAILED


def test_a_failing_task_is_caught_undone_and_notified(st):
    """The drainer dies after (maybe) blocking: the failure path still unblocks and reports."""
    from hapg.errors import DatabaseError

    st.executor.fail_next("connection_drainer", DatabaseError("permission denied for role"), times=1)
    r = st.run(SWITCHOVER)
    assert r.status == "FAILED"
    assert st.lock_item() is None
    assert "DatabaseError: permission denied" in st.notifications()[0]["Message"]


def test_record_failure_still_notifies_and_unlocks(st):
    from hapg.errors import FatalError

    before = st.writer()
    st.executor.inject(
        "failover_coordinator",
        lambda event: (_ for _ in ()).throw(FatalError("table gone")) if event.get("action") == "record" else None,
    )
    try:
        r = st.run({**SWITCHOVER, "target_instance": before.name})
    finally:
        st.executor._faults.clear()
    assert r.status == "FAILED" and st.lock_item() is None
    assert st.notifications()[0]["Subject"] == "Failover workflow could not record its outcome"


def test_expired_lock_is_taken_over_live_lock_is_respected(st):
    table, cluster = st.table, st.cluster.cluster_id
    ddb = boto3.client("dynamodb")

    def hold(expires_at: float):
        ddb.put_item(
            TableName=table,
            Item={
                Table.PK: {"S": f"{Table.LOCK_PREFIX}{cluster}"},
                Table.SK: {"S": Table.LOCK_SK},
                Table.OWNER: {"S": "arn:aws:states:us-east-1:1:execution:sm:crashed-holder"},
                Table.TTL: {"N": str(int(expires_at))},
            },
        )

    hold(time.time() + 600)
    r = st.run({**SWITCHOVER, "reason": "while locked"})
    assert outcome(r) == Outcome.REFUSED and "crashed-holder holds the failover lock" in r.output["reason"]
    assert st.lock_item()[Table.OWNER]["S"].endswith("crashed-holder"), "someone else's lock is never released"
    hold(time.time() - 1)  # the holder crashed long ago: its TTL passed
    r = st.run({**SWITCHOVER, "reason": "after expiry"})
    assert outcome(r) == Outcome.SUCCEEDED and st.lock_item() is None


# -- maintenance mode (automation paused) ---------------------------------------------------------
def test_maintenance_refuses_manual_switchover_unless_forced(st):
    st.set_maintenance(True)
    before, t0 = st.writer(), time.time()
    r = st.run(SWITCHOVER)
    assert outcome(r) == Outcome.REFUSED and "maintenance mode" in r.output["reason"]
    assert st.writer() is before and promotes(st, t0) == 0
    assert "Maintenance:  ON (automation paused)" in st.notifications()[0]["Message"]
    forced = st.run({**SWITCHOVER, "force": True, "reason": "forced during maintenance"})
    assert outcome(forced) == Outcome.SUCCEEDED and st.writer() is not before
    assert forced.output["maintenance"] is True
    assert "Maintenance:  ON" in st.notifications()[0]["Message"]


def test_maintenance_events_only_verify_and_notify(st):
    st.set_maintenance(True)
    t0 = time.time()
    r = st.run(rds_event(RdsEvent.COMPLETED, at=time.time() + 1))  # after the last recorded failover
    assert outcome(r) == Outcome.VERIFIED and "automation paused" in r.output["reason"]
    assert promotes(st, t0) == 0
    assert State.DRAIN not in [s.name for s in r.states]


def test_maintenance_never_promotes_even_with_the_writer_down(st):
    st.set_maintenance(True)
    st.configure(PROMOTE_DEADLINE_S="1.5")
    dead, t0 = st.writer(), time.time()
    dead.crash()
    r = st.run(rds_event(RdsEvent.STARTED_CROSS_AZ, at=time.time() + 1))
    assert r.status == "FAILED" and promotes(st, t0) == 0
    assert st.writer() is dead, "no promote while paused: the operator decides"
    message = st.notifications()[0]["Message"]
    assert "automation paused" in message and "PromotionTimedOut" in message
    dead.start()
