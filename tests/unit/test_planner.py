"""The failover decision: pure, one sentence of why for every outcome."""

import pytest
from hapg.models import ClusterSnapshot, Endpoint, FailoverRequest, HistoryRecord, Member
from hapg.names import Decision, Kind, Mode, Outcome
from hapg.planner import Limits, Situation, plan

NOW = 1_800_000_000.0


def member(name, writer=False, status="available", tier=1, lag=10.0):
    return Member(name, writer, status, tier, endpoint=Endpoint(f"{name}.example", 5432), lag_ms=0.0 if writer else lag)


def cluster(*members, status="available"):
    return ClusterSnapshot("c1", status, tuple(members), NOW)


HEALTHY = cluster(member("w", writer=True, tier=0), member("r1", tier=1, lag=30), member("r2", tier=2, lag=5))


def switchover(target=None, force=False, kind=Kind.SWITCHOVER):
    return FailoverRequest(kind=kind, reason="patching", target=target, force=force)


def event(code="RDS-EVENT-0073", at=NOW - 5, event_id="e1"):
    return FailoverRequest(kind=Kind.EVENT, reason=code, event_id=event_id, event_code=code, event_time=at)


def record(outcome=Outcome.SUCCEEDED, finished=NOW - 60, new="r1", mode=Mode.SWITCHOVER, event_id=None):
    return HistoryRecord(
        "arn:aws:states:us-east-1:1:execution:sm:exec-1",
        Kind.SWITCHOVER,
        mode,
        outcome,
        "x",
        finished - 10,
        finished,
        "w",
        new,
        event_id=event_id,
    )


def decide(request, snapshot=HEALTHY, history=(), maintenance=False, **limits):
    return plan(Situation(request, snapshot, tuple(history), maintenance, Limits(**limits), NOW))


def test_best_candidate_is_lowest_tier_then_lowest_lag():
    p = decide(switchover())
    assert (p.decision, p.mode, p.target, p.old_writer) == (Decision.PROMOTE, Mode.SWITCHOVER, "r1", "w")
    assert p.reason == "promoting r1: tier 1, lag 30 ms"
    assert p.old_writer_endpoint == "w.example:5432"


def test_within_a_tier_lower_lag_wins():
    snap = cluster(member("w", writer=True), member("a", tier=1, lag=50), member("b", tier=1, lag=5))
    assert decide(switchover(), snap).target == "b"


def test_explicit_eligible_target_is_used():
    assert decide(switchover("r2")).target == "r2"


@pytest.mark.parametrize(
    ("request_", "snapshot", "history", "maintenance", "fragment"),
    [
        (switchover("w"), HEALTHY, (), False, "w is already the writer"),
        (switchover("zz"), HEALTHY, (), False, "zz is not a member of c1"),
        (
            switchover("r1"),
            cluster(member("w", writer=True), member("r1", status="rebooting")),
            (),
            False,
            "target r1 is rebooting",
        ),
        (
            switchover("r1"),
            cluster(member("w", writer=True), member("r1", lag=5000)),
            (),
            False,
            "target r1 lag is 5000 ms, over the 1000 ms limit",
        ),
        (
            switchover(),
            cluster(member("w", writer=True), member("r1", lag=None)),
            (),
            False,
            "no eligible replica (r1 lag unknown)",
        ),
        (
            switchover(),
            cluster(member("w", writer=True)),
            (),
            False,
            "no eligible replica (the cluster has no readers)",
        ),
        (
            switchover(),
            cluster(member("w", writer=True), member("r1"), status="modifying"),
            (),
            False,
            "cluster c1 is modifying",
        ),
        (
            switchover(),
            cluster(member("w", writer=True, status="failed"), member("r1")),
            (),
            False,
            "writer w is failed",
        ),
        (switchover(), HEALTHY, (record(finished=NOW - 60),), False, "a failover finished 60 s ago (w -> r1)"),
        (switchover(), HEALTHY, (), True, "automation is paused (maintenance mode)"),
    ],
)
def test_refusals_say_why_and_never_promote(request_, snapshot, history, maintenance, fragment):
    p = decide(request_, snapshot, history, maintenance)
    assert p.decision == Decision.REFUSE
    assert p.target is None
    assert fragment in p.reason


def test_force_overrides_cooldown_and_maintenance_but_not_safety():
    forced = switchover(force=True)
    assert decide(forced, history=(record(),), maintenance=True).decision == Decision.PROMOTE
    lagging = cluster(member("w", writer=True), member("r1", lag=9999))
    assert decide(switchover("r1", force=True), lagging).decision == Decision.REFUSE


def test_cooldown_ignores_failed_and_skipped_runs_and_expires():
    assert decide(switchover(), history=(record(Outcome.FAILED),)).decision == Decision.PROMOTE
    assert decide(switchover(), history=(record(finished=NOW - 301),)).decision == Decision.PROMOTE


def test_preflight_plans_like_a_switchover():
    p = decide(switchover(kind=Kind.PREFLIGHT))
    assert (p.decision, p.mode, p.target) == (Decision.PROMOTE, Mode.PREFLIGHT, "r1")


# -- events ------------------------------------------------------------------------------
def test_aurora_failover_in_progress_is_waited_for_not_promoted():
    snap = cluster(member("w", writer=True, status="rebooting"), member("r1"), status="failing-over")
    p = decide(event(), snap)
    assert (p.decision, p.mode, p.target) == (Decision.VERIFY_ONLY, Mode.AURORA, None)
    assert "cluster is failing-over" in p.reason


def test_completed_aurora_failover_is_verified():
    snap = cluster(member("w"), member("r1", writer=True))
    p = decide(event("RDS-EVENT-0071"), snap)
    assert p.decision == Decision.VERIFY_ONLY and "writer r1" in p.reason


def test_writer_down_without_aurora_failing_over_is_taken_over_regardless_of_lag():
    snap = cluster(member("w", writer=True, status="failed"), member("r1", lag=None, tier=1), member("r2", tier=2))
    p = decide(event("RDS-EVENT-0069"), snap)
    assert (p.decision, p.mode, p.target) == (Decision.PROMOTE, Mode.TAKEOVER, "r1")
    assert p.reason.startswith("writer w is failed and Aurora is not failing over; promoting r1")


def test_writer_down_and_no_replica_is_refused():
    snap = cluster(member("w", writer=True, status="failed"), member("r1", status="failed"))
    p = decide(event(), snap)
    assert p.decision == Decision.REFUSE and "no eligible replica (r1 is failed)" in p.reason


def test_our_own_switchover_events_are_skipped_after_the_fact():
    # our promote at NOW-70 emitted 0073/0071; the record finished at NOW-60; the event arrives late
    snap = cluster(member("w"), member("r1", writer=True))
    p = decide(event("RDS-EVENT-0071", at=NOW - 65), snap, history=(record(finished=NOW - 60, new="r1"),))
    assert p.decision == Decision.SKIP
    assert "was already handled by exec-1 (switchover, writer now r1)" in p.reason


def test_redelivered_event_is_skipped_by_its_id():
    snap = cluster(member("w"), member("r1", writer=True))
    rec = record(finished=NOW - 100, new="r1", mode=Mode.AURORA, event_id="e1")
    assert decide(event(at=NOW - 50, event_id="e1"), snap, history=(rec,)).decision == Decision.SKIP


def test_a_new_failover_after_the_last_record_is_not_skipped():
    snap = cluster(member("w", writer=True), member("r1"))  # writer moved back since the record
    p = decide(event(at=NOW - 5), snap, history=(record(finished=NOW - 60, new="r1"),))
    assert p.decision == Decision.VERIFY_ONLY


def test_stale_events_are_skipped():
    p = decide(event(at=NOW - 3600), stale_event_s=900)
    assert p.decision == Decision.SKIP and "stale" in p.reason


def test_maintenance_mode_never_promotes_on_events():
    snap = cluster(member("w", writer=True, status="failed"), member("r1"))
    p = decide(event(), snap, maintenance=True)
    assert p.decision == Decision.VERIFY_ONLY and "automation paused" in p.reason


def test_aurora_failover_reports_the_last_known_writer_as_old():
    snap = cluster(member("w"), member("r1", writer=True))  # Aurora already moved the writer to r1
    history = (record(finished=NOW - 3600, new="w"),)
    p = decide(event("RDS-EVENT-0071", at=NOW - 5), snap, history=history)
    assert p.decision == Decision.VERIFY_ONLY and p.old_writer == "w"
    assert "Aurora reports writer r1 (was w)" in p.reason
