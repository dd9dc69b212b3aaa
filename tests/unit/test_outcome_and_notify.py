"""Outcome assessment and the human-readable notification, from execution states (pure)."""

import json

from hapg.names import Outcome
from hapg.notify import SUBJECT_MAX
from hapg.outcome import assess, phases, report

EXEC = "arn:aws:states:us-east-1:1:execution:hapg-dev-failover:run-7"
NOW = 1_800_000_100.0


def state(**extra):
    base = {
        "request": {"kind": "switchover", "reason": "patching", "started_at": NOW - 3, "target": None},
        "plan": {
            "decision": "promote",
            "mode": "switchover",
            "reason": "promoting r1: tier 1, lag 4 ms",
            "old_writer": "w",
            "target": "r1",
        },
        "drain": {
            "reachable": True,
            "reason": "blocked 1 role(s)",
            "timing": {"started_at": NOW - 2.9, "finished_at": NOW - 2.8},
        },
        "promote": {"called": True, "target": "r1", "started_at": NOW - 2.8},
        "status": {"writer": "r1", "replicas": 1, "timing": {"started_at": NOW - 2.5, "finished_at": NOW - 1.0}},
        "replicas": {"writer": "r1", "replicas": 1},
        "restore": {
            "restored": ["app"],
            "verified": True,
            "timing": {"started_at": NOW - 1.0, "finished_at": NOW - 0.9},
        },
        "verify": {"healthy": True, "reason": "healthy: r1 ...", "elapsed_ms": 40.0},
    }
    base.update(extra)
    return base


def test_success_record_and_phases():
    rec = assess(state(), EXEC, None, NOW)
    assert (rec.outcome, rec.old_writer, rec.new_writer, rec.mode) == (Outcome.SUCCEEDED, "w", "r1", "switchover")
    assert phases(state(), NOW) == {
        "drain": 100.0,
        "restore": 100.0,
        "promote": 1800.0,
        "verify": 40.0,
        "total": 3000.0,
    }


def test_failure_carries_the_lambda_error_message():
    cause = json.dumps({"errorMessage": "r1 not available before the deadline", "errorType": "PromotionTimedOut"})
    rec = assess(state(error={"Error": "PromotionTimedOut", "Cause": cause}), EXEC, None, NOW)
    assert rec.outcome == Outcome.FAILED
    assert rec.reason == "PromotionTimedOut: r1 not available before the deadline"


def test_lock_busy_is_refused_for_people_and_skipped_for_events():
    busy = {"lock_error": {"Error": "DynamoDB.ConditionalCheckFailedException"}}
    manual = assess({"request": {"kind": "switchover", "started_at": NOW}, **busy}, EXEC, "arn:...:other-run", NOW)
    assert manual.outcome == Outcome.REFUSED and manual.reason == "other-run holds the failover lock; nothing done"
    event = assess({"request": {"kind": "event", "started_at": NOW}, **busy}, EXEC, None, NOW)
    assert event.outcome == Outcome.SKIPPED


def test_refusal_and_skip_come_from_the_plan():
    refused = assess(
        state(plan={"decision": "refuse", "mode": "switchover", "reason": "r1 lag 9000 ms"}), EXEC, None, NOW
    )
    assert (refused.outcome, refused.reason) == (Outcome.REFUSED, "r1 lag 9000 ms")
    skipped = assess(state(plan={"decision": "skip", "mode": "aurora", "reason": "already handled"}), EXEC, None, NOW)
    assert skipped.outcome == Outcome.SKIPPED


def test_report_subject_is_ascii_short_and_says_what_happened():
    rec = assess(state(), EXEC, None, NOW)
    out = report(rec, state(), "hapg-dev-cluster", maintenance=False)
    assert out["subject"] == "[hapg-dev-cluster] Switchover succeeded: w -> r1 (3.0 s)"
    assert out["notify"] is True
    body = out["message"]
    for line in (
        "Outcome:      SUCCEEDED",
        "Writer:       w -> r1",
        "Maintenance:  off",
        "Phases:       drain 100 ms, restore 100 ms, promote 1.8 s, verify 40 ms",
        "Total:        3.0 s",
        "Unblocked:    app (verified: yes)",
        f"Execution:    {EXEC}",
    ):
        assert line in body, line
    long = assess(state(plan={**state()["plan"], "old_writer": "w" * 80}), EXEC, None, NOW)
    subject = report(long, state(), "c" * 40, maintenance=True)["subject"]
    assert len(subject) <= SUBJECT_MAX and subject.isascii() and "\n" not in subject


def test_failure_message_points_at_the_runbook_and_skips_do_not_page():
    failed = assess(state(error={"Error": "VerificationFailed", "Cause": "x"}), EXEC, None, NOW)
    out = report(failed, state(), "c", maintenance=True)
    assert "FAILED" in out["subject"] and "docs/runbook.md" in out["message"]
    assert "Maintenance:  ON (automation paused)" in out["message"]
    skipped = assess(state(plan={"decision": "skip", "mode": "aurora", "reason": "dup"}), EXEC, None, NOW)
    assert report(skipped, state(), "c", maintenance=False)["notify"] is False
