"""What a restore test tells: its outcome from the accumulated workflow state, the notification,
and the history item (one per execution, kept as long as the failover history)."""

from __future__ import annotations

from typing import Any

from hapg import errors
from hapg.history import HISTORY_RETENTION_S, StateTable
from hapg.names import Outcome, Table
from hapg.names import Result as R
from hapg.notify import RESTORE_ACTIONS, ascii_subject, when
from hapg.outcome import error_text
from hapg.restore_run import Deps
from hapg.telemetry import child_logger

log = child_logger()


def assess(state: dict[str, Any], now: float) -> dict[str, Any]:
    """Pure: the outcome of a restore test from its accumulated workflow state."""
    request = state.get(R.REQUEST) or {}
    prepare_out = state.get(R.PREPARE) or {}
    restore_out = state.get(R.RESTORE) or {}
    status_out = state.get(R.STATUS) or {}
    verify_out = state.get(R.VERIFY) or {}
    snapshot = prepare_out.get("snapshot") or {}
    verified = bool(verify_out.get("ok"))
    failure, cleanup_failure = error_text(state.get(R.ERROR)), error_text(state.get(R.CLEANUP_ERROR))
    if failure:
        outcome, reason = Outcome.FAILED, failure
    elif cleanup_failure:
        outcome = Outcome.FAILED
        reason = f"{'the restore was verified, but ' if verified else ''}cleanup failed: {cleanup_failure}"
    elif verified:
        outcome, reason = Outcome.SUCCEEDED, str(verify_out.get("reason"))
    else:
        outcome, reason = Outcome.FAILED, "the restore test ended without a verdict"
    restore_s = None
    if restore_out.get("started_at") and status_out.get("available_at"):
        restore_s = round(float(status_out["available_at"]) - float(restore_out["started_at"]), 1)
    started_at = float(request.get("started_at") or now)
    snapshot_at = snapshot.get("created_at")
    return {
        "outcome": outcome,
        "reason": reason,
        "verified": verified,
        "cluster": request.get("cluster_id"),
        "snapshot_id": snapshot.get("id") or restore_out.get("snapshot_id"),
        "snapshot_created_at": snapshot_at,
        "snapshot_age_hours": round((started_at - float(snapshot_at)) / 3600, 2) if snapshot_at else None,
        "restore_seconds": restore_s,
        "total_seconds": round(now - started_at, 1),
        "leftovers_removed": list((state.get(R.SWEEP) or {}).get("found") or []),
        "cleaned_up": bool((state.get(R.CLEANUP) or {}).get("gone")) and not cleanup_failure,
        "figures": verify_out.get("figures") or {},
        "started_at": started_at,
        "finished_at": now,
    }


def compose(summary: dict[str, Any], request: dict[str, Any], source_cluster: str) -> tuple[str, str]:
    """The notification: an ASCII subject and a plain-text message an operator can act on."""
    failed = summary["outcome"] != Outcome.SUCCEEDED
    minutes = f"{summary['restore_seconds'] / 60:.1f} min" if summary.get("restore_seconds") is not None else None
    if failed:
        # our own verdicts read better without their class name; anything else keeps it
        headline = summary["reason"].removeprefix(f"{errors.BackupCheckFailed.__name__}: ")
        subject = f"[{source_cluster}] Restore test FAILED: {headline}"
    else:
        subject = f"[{source_cluster}] Restore test succeeded: {summary['snapshot_id']}" + (
            f" restored in {minutes}" if minutes else ""
        )
    age = summary.get("snapshot_age_hours")
    lines = [
        f"Outcome:      {summary['outcome'].upper()}",
        f"What:         Restore test ({request.get('reason') or 'restore test'})",
        f"Cluster:      {source_cluster}",
        f"Snapshot:     {summary.get('snapshot_id') or '-'}"
        + (f" ({age:.1f} h old at the start)" if age is not None else ""),
        f"Restored as:  {summary.get('cluster') or '-'} (temporary)",
        f"Reason:       {summary['reason']}",
        f"Restore:      {minutes or '-'} until the cluster and its instance were available",
        f"Total:        {summary['total_seconds'] / 60:.1f} min",
        f"Leftovers:    {', '.join(summary['leftovers_removed']) or 'none'} (removed before the restore)",
        f"Cleaned up:   {'yes' if summary['cleaned_up'] else 'NO - delete the temporary cluster by hand (runbook)'}",
    ]
    if failed:
        lines += ["", RESTORE_ACTIONS]
    lines += ["", f"Execution:    {request.get('execution', '-')}", f"Time:         {when(summary['finished_at'])}"]
    return ascii_subject(subject), "\n".join(lines) + "\n"


def put_history(summary: dict[str, Any], execution: str, deps: Deps) -> bool:
    """One item per execution (conditional put): False when a retried record finds it there."""
    table = deps.settings.state_table
    if not table:
        log.warning("no state table configured: the restore test result is not recorded")
        return True
    item = {Table.TTL: int(summary["finished_at"] + HISTORY_RETENTION_S), "execution": execution, **summary}
    state = StateTable(table, deps.settings.cluster_id, deps.dynamodb())
    return state.put_once(Table.RESTORE_PREFIX, summary["started_at"], execution, item)
