"""Decide what a failover execution does. Pure: snapshot + request + history in, Plan out.

Every Plan carries a sentence saying why, which ends up in the notification and the history.
Events are hints (late, duplicated, out of order, or caused by our own promote); the snapshot
and the history decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hapg.models import ClusterSnapshot, FailoverRequest, HistoryRecord, Member, Plan
from hapg.names import AVAILABLE, Decision, Kind, Mode, Outcome

HANDLED = (Outcome.SUCCEEDED, Outcome.VERIFIED)
IN_TRANSITION = ("failing-over", "modifying", "rebooting", "upgrading", "maintenance")


@dataclass(frozen=True)
class Limits:
    max_lag_ms: float = 1000
    cooldown_s: float = 300
    stale_event_s: float = 900


@dataclass(frozen=True)
class Situation:
    """Everything a decision may depend on, frozen at one instant (`now`, epoch seconds)."""

    request: FailoverRequest
    snapshot: ClusterSnapshot
    history: tuple[HistoryRecord, ...] = ()  # newest first
    maintenance: bool = False
    limits: Limits = Limits()
    now: float = 0.0


def plan(s: Situation) -> Plan:
    return _plan_event(s) if s.request.kind == Kind.EVENT else _plan_switchover(s)


# -- manual / scheduled switchover ------------------------------------------------------------
def _plan_switchover(s: Situation) -> Plan:
    request, snapshot, limits = s.request, s.snapshot, s.limits
    mode = Mode.PREFLIGHT if request.kind == Kind.PREFLIGHT else Mode.SWITCHOVER
    writer = snapshot.writer

    def refuse(reason: str) -> Plan:
        return _plan(Decision.REFUSE, mode, reason, snapshot)

    if s.maintenance and not request.force:
        return refuse("automation is paused (maintenance mode); set force=true to switch over anyway")
    if snapshot.status != AVAILABLE:
        return refuse(f"cluster {snapshot.cluster_id} is {snapshot.status}, not available")
    if writer is None or not writer.available:
        state = "has no writer" if writer is None else f"writer {writer.instance_id} is {writer.status}"
        return refuse(f"cluster {state}; a planned switchover needs a healthy writer")
    recent = _last_handled(s.history)
    if recent and not request.force and s.now - recent.finished_at < limits.cooldown_s:
        ago = s.now - recent.finished_at
        return refuse(
            f"a failover finished {ago:.0f} s ago ({recent.old_writer} -> {recent.new_writer}); "
            f"cooldown is {limits.cooldown_s:g} s, set force=true to override"
        )
    if request.target:
        target, why_not = _check_target(snapshot, request.target, limits)
    else:
        target, why_not = best_candidate(snapshot, limits)
    if target is None:
        return refuse(why_not)
    return _plan(Decision.PROMOTE, mode, f"promoting {_describe(target)}", snapshot, target)


def _check_target(snapshot: ClusterSnapshot, target_id: str, limits: Limits) -> tuple[Member | None, str]:
    target = snapshot.member(target_id)
    if target is None:
        names = ", ".join(m.instance_id for m in snapshot.members)
        return None, f"{target_id} is not a member of {snapshot.cluster_id} (members: {names})"
    if target.is_writer:
        return None, f"{target_id} is already the writer"
    if not target.available:
        return None, f"target {target_id} is {target.status}, not available"
    if target.lag_ms is None or target.lag_ms > limits.max_lag_ms:
        lag = "unknown" if target.lag_ms is None else f"{target.lag_ms:.0f} ms"
        return None, f"target {target_id} lag is {lag}, over the {limits.max_lag_ms:g} ms limit"
    return target, ""


def best_candidate(snapshot: ClusterSnapshot, limits: Limits, *, require_lag: bool = True):
    """Available reader with the lowest promotion tier, then the lowest lag, then the name."""
    eligible, rejected = [], []
    for m in snapshot.readers:
        if not m.available:
            rejected.append(f"{m.instance_id} is {m.status}")
        elif require_lag and (m.lag_ms is None or m.lag_ms > limits.max_lag_ms):
            lag = "unknown" if m.lag_ms is None else f"{m.lag_ms:.0f} ms"
            rejected.append(f"{m.instance_id} lag {lag}")
        else:
            eligible.append(m)
    if not eligible:
        detail = "; ".join(rejected) or "the cluster has no readers"
        return None, f"no eligible replica ({detail})"
    lag_key = float("inf")
    best = min(eligible, key=lambda m: (m.promotion_tier, lag_key if m.lag_ms is None else m.lag_ms, m.instance_id))
    return best, ""


# -- RDS failover events --------------------------------------------------------------------
def _plan_event(s: Situation) -> Plan:
    request, snapshot, limits, now = s.request, s.snapshot, s.limits, s.now
    writer = snapshot.writer
    handled = _handled_by(s.history, request, writer)
    if handled:
        return _plan(
            Decision.SKIP,
            Mode.AURORA,
            f"{request.event_code} at {_iso(request.event_time)} was already handled by "
            f"{_short(handled.execution)} ({handled.mode}, writer now {handled.new_writer})",
            snapshot,
        )
    if request.event_time and now - request.event_time > limits.stale_event_s:
        return _plan(
            Decision.SKIP,
            Mode.AURORA,
            f"{request.event_code} is {now - request.event_time:.0f} s old; stale",
            snapshot,
        )
    paused = " (automation paused: verify and notify only)" if s.maintenance else ""
    # Aurora may already have moved the writer: the last writer we recorded is the better "old"
    last = _last_handled(s.history)
    known = last.new_writer if last else None
    if snapshot.status in IN_TRANSITION or writer is None:
        state = f"cluster is {snapshot.status}" if writer else "cluster has no writer yet"
        reason = f"Aurora is failing over ({state}); waiting{paused}"
        return _plan(Decision.VERIFY_ONLY, Mode.AURORA, reason, snapshot, old_writer=known)
    if writer.available or s.maintenance:
        moved = f" (was {known})" if known and known != writer.instance_id else ""
        reason = f"Aurora reports writer {writer.instance_id}{moved}; verifying{paused}"
        return _plan(Decision.VERIFY_ONLY, Mode.AURORA, reason, snapshot, old_writer=known or writer.instance_id)
    target, why_not = best_candidate(snapshot, limits, require_lag=False)
    if target is None:
        return _plan(
            Decision.REFUSE,
            Mode.TAKEOVER,
            f"writer {writer.instance_id} is {writer.status} and {why_not}",
            snapshot,
        )
    reason = (
        f"writer {writer.instance_id} is {writer.status} and Aurora is not failing over; promoting {_describe(target)}"
    )
    return _plan(Decision.PROMOTE, Mode.TAKEOVER, reason, snapshot, target)


def _handled_by(history, request, writer) -> HistoryRecord | None:
    """A finished execution that already covers this event: it ended after the event happened
    (so our own promote's 0072/0073/0071 and re-deliveries match) and left today's writer."""
    if request.event_time is None or writer is None:
        return None
    for rec in history:
        if rec.outcome in HANDLED and rec.finished_at >= request.event_time and rec.new_writer == writer.instance_id:
            return rec
        if request.event_id and rec.event_id == request.event_id and rec.outcome in HANDLED:
            return rec
    return None


# -- helpers --------------------------------------------------------------------------------
def _plan(
    decision: str,
    mode: str,
    reason: str,
    snapshot: ClusterSnapshot,
    target: Member | None = None,
    *,
    old_writer: str | None = None,
) -> Plan:
    writer = snapshot.writer
    return Plan(
        decision=decision,
        mode=mode,
        reason=reason,
        old_writer=old_writer or (writer.instance_id if writer else None),
        target=target.instance_id if target else None,
        old_writer_endpoint=str(writer.endpoint) if writer and writer.endpoint else None,
    )


def _last_handled(history: Sequence[HistoryRecord]) -> HistoryRecord | None:
    return next((r for r in history if r.outcome in HANDLED), None)


def _describe(m: Member) -> str:
    lag = "unknown" if m.lag_ms is None else f"{m.lag_ms:.0f} ms"
    return f"{m.instance_id}: tier {m.promotion_tier}, lag {lag}"


def _short(execution_arn: str) -> str:
    return execution_arn.rsplit(":", 1)[-1]


def _iso(epoch: float | None) -> str:
    import datetime as dt

    return "unknown time" if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%H:%M:%S")
