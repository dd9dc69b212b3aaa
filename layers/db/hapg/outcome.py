"""The `record` action: turn an execution's accumulated state into an outcome, history and report."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hapg.models import HistoryRecord
from hapg.names import Decision, Kind, Metric, Mode, Outcome
from hapg.names import Result as R
from hapg.notify import compose
from hapg.telemetry import MetricUnit, emit


def error_text(err: Any) -> str | None:
    """A Catch's {"Error", "Cause"} as one line; a Lambda cause is JSON with errorMessage."""
    if not isinstance(err, dict) or not err:
        return None
    cause = err.get("Cause") or ""
    with contextlib.suppress(ValueError, AttributeError):
        cause = json.loads(cause).get("errorMessage", cause)
    return f"{err.get('Error', 'Error')}: {cause}".rstrip(": ")


def assess(state: dict[str, Any], execution: str, lock_owner: str | None, now: float) -> HistoryRecord:
    """Pure: what happened in this execution, as one history record."""
    request = state.get(R.REQUEST) or {}
    plan = state.get(R.PLAN) or {}
    kind = request.get("kind", Kind.EVENT)
    mode = plan.get("mode") or (Mode.AURORA if kind == Kind.EVENT else Mode.SWITCHOVER)
    error = error_text(state.get(R.ERROR))
    if state.get(R.LOCK_ERROR):
        holder = lock_owner.rsplit(":", 1)[-1] if lock_owner else "another execution"
        outcome = Outcome.SKIPPED if kind == Kind.EVENT else Outcome.REFUSED
        reason = f"{holder} holds the failover lock; nothing done"
    elif error:
        outcome, reason = Outcome.FAILED, error
    elif plan.get("decision") == Decision.REFUSE:
        outcome, reason = Outcome.REFUSED, plan.get("reason", "")
    elif plan.get("decision") == Decision.SKIP:
        outcome, reason = Outcome.SKIPPED, plan.get("reason", "")
    else:
        outcome = Outcome.VERIFIED if plan.get("decision") == Decision.VERIFY_ONLY else Outcome.SUCCEEDED
        reason = plan.get("reason", "")
    status = state.get(R.REPLICAS) or state.get(R.STATUS) or {}
    return HistoryRecord(
        execution=execution,
        kind=kind,
        mode=mode,
        outcome=outcome,
        reason=reason,
        started_at=float(request.get("started_at") or now),
        finished_at=now,
        old_writer=plan.get("old_writer"),
        new_writer=status.get("writer") or (state.get(R.VERIFY) or {}).get("writer_instance"),
        event_id=request.get("event_id"),
        event_code=request.get("event_code"),
        event_time=request.get("event_time"),
        phases_ms=phases(state, now),
    )


def phases(state: dict[str, Any], now: float) -> dict[str, float]:
    """Milliseconds per phase, from the timings our tasks return."""
    out: dict[str, float] = {}

    def span(start: float | None, end: float | None) -> float | None:
        return round((end - start) * 1000, 1) if start and end and end >= start else None

    for name in (R.DRAIN, R.RESTORE, R.UNDO):  # phase names in the history are the result keys
        timing = (state.get(name) or {}).get("timing") or {}
        out[name] = span(timing.get("started_at"), timing.get("finished_at"))
    promote = state.get(R.PROMOTE) or {}
    # the promote step's own first check may already have seen the new writer (no CheckPromotion then)
    status = state.get(R.STATUS) or (promote if promote.get("complete") else {})
    status_end = (status.get("timing") or {}).get("finished_at")
    # our promote (call -> writer up), or the wait for Aurora's own failover
    out["promote" if promote.get("called", True) else "aurora"] = span(promote.get("started_at"), status_end)
    verify = state.get(R.VERIFY) or {}
    out["verify"] = verify.get("elapsed_ms")
    out["total"] = span((state.get(R.REQUEST) or {}).get("started_at"), now)
    return {k: v for k, v in out.items() if v is not None}


def report(record: HistoryRecord, state: dict[str, Any], cluster_id: str, maintenance: bool) -> dict[str, Any]:
    subject, message = compose(record, state, cluster_id, maintenance)
    return {
        "outcome": record.outcome,
        "notify": record.outcome != Outcome.SKIPPED,  # skips are recorded, not paged
        "subject": subject,
        "message": message,
        "summary": {
            "outcome": record.outcome,
            "mode": record.mode,
            "reason": record.reason,
            "old_writer": record.old_writer,
            "new_writer": record.new_writer,
            "phases_ms": record.phases_ms,
            "maintenance": maintenance,
        },
    }


def emit_outcome(record: HistoryRecord, cluster_id: str) -> None:
    if record.outcome not in (Outcome.SUCCEEDED, Outcome.VERIFIED):
        return
    name = Metric.SWITCHOVERS if record.mode == Mode.SWITCHOVER else Metric.FAILOVERS
    seconds = (record.phases_ms.get("total") or 0) / 1000
    emit(cluster_id, {name: (1.0, MetricUnit.Count), Metric.FAILOVER_DURATION: (seconds, MetricUnit.Seconds)})
