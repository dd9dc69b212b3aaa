"""failover_coordinator actions: validate, plan, promote, status, record.

Each action is idempotent: re-delivered events and retried tasks find the work done and
return the same answer without repeating side effects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hapg import errors
from hapg.aurora import ClusterPort
from hapg.history import StateTable
from hapg.models import ClusterSnapshot, FailoverRequest, to_dict
from hapg.names import AVAILABLE, Timing
from hapg.planner import Limits, Situation, plan
from hapg.telemetry import child_logger
from hapg.triggers import parse_trigger

log = child_logger()


@dataclass(frozen=True)
class Deps:
    """The ports the coordinator acts through (the local harness swaps `cluster`)."""

    cluster: ClusterPort
    table: StateTable
    limits: Limits
    clock: Callable[[], float] = time.time
    poll_interval_s: float = 1.0


def validate(raw: Any, execution: str, cluster_id: str, now: float, lock_ttl_s: float) -> dict[str, Any]:
    """Normalize the execution input; raise InvalidInput before anything else happens."""
    request = parse_trigger(raw, cluster_id)
    return {
        **to_dict(request),
        "execution": execution,
        "started_at": now,
        # DynamoDB numbers travel as strings through the ASL's PutItem
        "lock": {"now": str(int(now)), "expires_at": str(int(now + lock_ttl_s))},
    }


def plan_failover(request: FailoverRequest, deps: Deps) -> dict[str, Any]:
    snapshot = deps.cluster.snapshot()
    situation = Situation(
        request=request,
        snapshot=snapshot,
        history=deps.table.recent(),
        maintenance=deps.table.maintenance(),
        limits=deps.limits,
        now=deps.clock(),
    )
    decided = plan(situation)
    log.info("plan", extra={"decision": decided.decision, "mode": decided.mode, "reason": decided.reason})
    return {**to_dict(decided), "maintenance": situation.maintenance, "cluster": summarize(snapshot)}


def promote(target: str, deps: Deps, deadline_s: float = Timing.PROMOTE_DEADLINE_S) -> dict[str, Any]:
    """Ask for `target` to become the writer, unless it already is (re-run, or Aurora did it)."""
    now = deps.clock()
    snapshot = deps.cluster.snapshot(with_lag=False)
    member = snapshot.member(target)
    if member is None:
        raise errors.FatalError(f"{target} is no longer a member of {snapshot.cluster_id}")
    called = not member.is_writer
    if called:
        log.info("promoting", extra={"target": target})
        deps.cluster.failover(target)
    return {"target": target, "called": called, "started_at": now, "deadline_at": now + deadline_s}


def promote_and_check(target: str, deps: Deps, deadline_s: float, window_s: float) -> dict[str, Any]:
    """promote(), then the first status long-poll in the same invocation: when the new writer is up
    within `window_s`, the workflow goes straight on (one Lambda call and one state transition less
    inside the write outage), else CheckPromotion carries on. A failed poll is not a failed promote:
    it is left to CheckPromotion, so no Retry re-runs a promote whose failover was already asked for."""
    result = promote(target, deps, deadline_s)
    try:
        status = await_promotion(target, result["deadline_at"], deps, window_s)
    except errors.HapgError as exc:
        log.warning("first promotion check failed; CheckPromotion carries on", extra={"cause": str(exc)})
        status = {"complete": False, "error": str(exc)}
    return {**result, "complete": status["complete"], "status": status}


def await_promotion(
    target: str | None, deadline_at: float, deps: Deps, window_s: float, require_all: bool = False
) -> dict[str, Any]:
    """Long-poll until `target` (or, for Aurora's own failover, any writer) is the available writer,
    and with `require_all` until every member is available too. Returns not-complete after
    `window_s` (the ASL waits and asks again); raises PromotionTimedOut once past the deadline."""
    until = min(deps.clock() + window_s, deadline_at)
    while True:
        status = promotion_status(deps.cluster.snapshot(with_lag=False), target, require_all)
        if status["complete"]:
            return status
        if deps.clock() >= deadline_at:
            raise errors.PromotionTimedOut(
                f"{target or 'a writer'} not available before the deadline: writer {status['writer']}, "
                f"pending {', '.join(status['pending']) or 'none'} (cluster {status['cluster_status']})"
            )
        if deps.clock() >= until:
            return status
        time.sleep(deps.poll_interval_s)


def promotion_status(snapshot: ClusterSnapshot, target: str | None, require_all: bool = False) -> dict[str, Any]:
    """Pure: is the promotion done, as far as this snapshot shows?"""
    writer = snapshot.writer
    on_target = writer is not None and (target is None or writer.instance_id == target)
    ready = bool(on_target and writer.available and snapshot.status == AVAILABLE)
    pending = [m.instance_id for m in snapshot.members if not m.available]
    return {
        "complete": ready and (snapshot.all_available or not require_all),
        "writer_ready": ready,
        "all_available": snapshot.all_available,
        "writer": writer.instance_id if writer else None,
        "cluster_status": snapshot.status,
        "pending": pending,
        "replicas": sum(1 for m in snapshot.readers if m.available),
    }


def summarize(snapshot: ClusterSnapshot) -> dict[str, Any]:
    return {
        "status": snapshot.status,
        "members": [
            {
                "id": m.instance_id,
                "writer": m.is_writer,
                "status": m.status,
                "tier": m.promotion_tier,
                "lag_ms": m.lag_ms,
            }
            for m in snapshot.members
        ],
    }
