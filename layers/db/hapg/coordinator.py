"""failover_coordinator: route one state machine step to the failover core."""

from __future__ import annotations

import time
from typing import Any

from hapg import failover, health, outcome, runtime
from hapg.aurora import AuroraCluster
from hapg.errors import InvalidInput
from hapg.models import FailoverRequest, HistoryRecord
from hapg.names import Action, Await, Function, OutcomeLog
from hapg.names import Result as R
from hapg.planner import Limits
from hapg.steps import Step, timed
from hapg.telemetry import child_logger

log = child_logger()

ACTIONS = (Action.VALIDATE, Action.PLAN, Action.PROMOTE, Action.STATUS, Action.RECORD)


def _aurora() -> AuroraCluster:
    s = runtime.settings()
    db = runtime.database(Function.FAILOVER_COORDINATOR)
    return AuroraCluster(s.cluster_id, lag_source=lambda: health.replica_lags(db))


def deps() -> failover.Deps:
    s = runtime.settings()
    return failover.Deps(
        cluster=runtime.port("cluster", _aurora),
        table=runtime.state_table("the failover coordinator"),
        limits=Limits(max_lag_ms=s.max_lag_ms, cooldown_s=s.cooldown_s, stale_event_s=s.stale_event_s),
        poll_interval_s=s.poll_interval_s,
    )


def run(step: Step) -> dict[str, Any]:
    started = time.time()
    s = runtime.settings()
    if step.action == Action.VALIDATE:
        return failover.validate(
            step.payload.get("input"), step.get("execution", str), s.cluster_id, started, s.lock_ttl_s
        )
    d = deps()
    if step.action == Action.PLAN:
        return failover.plan_failover(FailoverRequest.from_dict(step.get("request", dict)), d)
    if step.action == Action.PROMOTE:
        result = failover.promote_and_check(step.get("target", str), d, s.promote_deadline_s, s.poll_window_s)
        return timed(result, started)
    if step.action == Action.STATUS:
        since = float(step.get("started_at", (int, float)))
        target = step.get("target", str, required=False)
        wait_for = step.get("await", str, required=False) or Await.WRITER
        if wait_for not in Await.ALL:
            raise InvalidInput(f"status: await must be one of {', '.join(Await.ALL)}")
        deadline = since + s.promote_deadline_s
        status = failover.await_promotion(target, deadline, d, s.poll_window_s, wait_for == Await.REPLICAS)
        return timed(status, started)
    return record(step.get("state", dict), step.get("execution", str), d, s.cluster_id)


def record(state: dict[str, Any], execution: str, d: failover.Deps, cluster_id: str) -> dict[str, Any]:
    owner = d.table.lock_owner() if state.get(R.LOCK_ERROR) else None
    rec = outcome.assess(state, execution, owner, d.clock())
    maintenance = d.table.maintenance()
    if d.table.put(rec):
        outcome.emit_outcome(rec, cluster_id)
        log.info(OutcomeLog.MESSAGE, extra=outcome_log_fields(rec))
    return outcome.report(rec, state, cluster_id, maintenance)


def outcome_log_fields(rec: HistoryRecord) -> dict[str, Any]:
    """The keys of the "failover outcome" line (the dashboard's Recent failovers table)."""
    total_ms = rec.phases_ms.get("total")
    return {
        OutcomeLog.OUTCOME: rec.outcome,
        OutcomeLog.MODE: rec.mode,
        OutcomeLog.KIND: rec.kind,
        OutcomeLog.OLD_WRITER: rec.old_writer or "-",
        OutcomeLog.NEW_WRITER: rec.new_writer or "-",
        OutcomeLog.DURATION_S: round(total_ms / 1000, 2) if total_ms is not None else None,
        OutcomeLog.REASON: rec.reason,
        OutcomeLog.EXECUTION: rec.execution,
    }
