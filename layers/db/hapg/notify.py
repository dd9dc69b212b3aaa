"""Human-readable notifications: a subject that says what happened, then the details.

Pure text composition; the state machine publishes through its SNS integration.
SNS subjects must be ASCII, single-line and under 100 characters.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hapg.models import HistoryRecord
from hapg.names import Mode, Outcome
from hapg.names import Result as R

SUBJECT_MAX = 99
RUNBOOK = "docs/runbook.md"
RESTORE_ACTIONS = f"First actions: see {RUNBOOK}, section 'Restoring from backup'."
RECORD_FAILED = "could not record its outcome"  # the ASL's record-fallback subjects say this

_WHAT = {
    Mode.SWITCHOVER: "Switchover",
    Mode.TAKEOVER: "Failover (writer down, promoted by the workflow)",
    Mode.AURORA: "Aurora failover",
    Mode.PREFLIGHT: "Preflight",
}
_VERB = {
    Outcome.SUCCEEDED: "succeeded",
    Outcome.VERIFIED: "verified",
    Outcome.REFUSED: "refused",
    Outcome.SKIPPED: "skipped",
    Outcome.FAILED: "FAILED",
}


def is_failure(subject_line: str) -> bool:
    """Does a subject made by subject() (or the record fallback) announce a failed run?"""
    return f" {_VERB[Outcome.FAILED]}" in subject_line or RECORD_FAILED in subject_line


def subject(record: HistoryRecord, cluster_id: str) -> str:
    what = _WHAT.get(record.mode, "Failover").split(" (")[0]
    text = f"[{cluster_id}] {what} {_VERB.get(record.outcome, record.outcome)}"
    if record.new_writer and record.outcome in (Outcome.SUCCEEDED, Outcome.VERIFIED):
        moved = (
            f"{record.old_writer} -> {record.new_writer}"
            if record.old_writer != record.new_writer
            else record.new_writer
        )
        text += f": {moved}"
    total = record.phases_ms.get("total")
    if total is not None and record.outcome in (Outcome.SUCCEEDED, Outcome.VERIFIED, Outcome.FAILED):
        text += f" ({total / 1000:.1f} s)"
    return ascii_subject(text)


def ascii_subject(text: str) -> str:
    """SNS subjects: ASCII, one line, under 100 characters."""
    flat = " ".join(text.split()).encode("ascii", "replace").decode()
    return flat if len(flat) <= SUBJECT_MAX else flat[: SUBJECT_MAX - 3] + "..."


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def compose(record: HistoryRecord, state: dict[str, Any], cluster_id: str, maintenance: bool) -> tuple[str, str]:
    request = state.get(R.REQUEST) or {}
    lines = [
        f"Outcome:      {record.outcome.upper()}",
        f"What:         {_WHAT.get(record.mode, record.mode)}",
        f"Cluster:      {cluster_id}",
        f"Writer:       {record.old_writer or '-'} -> {record.new_writer or '-'}",
        f"Reason:       {record.reason}",
        f"Triggered by: {_trigger(record, request)}",
        f"Maintenance:  {'ON (automation paused)' if maintenance else 'off'}",
    ]
    if record.phases_ms:
        phases = ", ".join(f"{k} {_ms(v)}" for k, v in record.phases_ms.items() if k != "total")
        lines.append(f"Phases:       {phases or '-'}")
        lines.append(f"Total:        {_ms(record.phases_ms.get('total'))}")
    plan_reason = (state.get(R.PLAN) or {}).get("reason")
    if plan_reason and plan_reason != record.reason:
        lines.append(f"Plan:         {plan_reason}")
    lines += _details(state)
    if record.outcome == Outcome.FAILED:
        lines += ["", f"First actions: see {RUNBOOK}, section 'Reading a failure notification'."]
    lines += ["", f"Execution:    {record.execution}", f"Time:         {when(record.finished_at)}"]
    return subject(record, cluster_id), "\n".join(lines) + "\n"


def _trigger(record: HistoryRecord, request: dict[str, Any]) -> str:
    if record.event_code:
        return f"RDS event {record.event_code} ({request.get('event_id', '?')})"
    target = f", target {request['target']}" if request.get("target") else ""
    force = ", force" if request.get("force") else ""
    return f"{record.kind} request{target}{force}: {request.get('reason', '')}".rstrip(": ")


def _details(state: dict[str, Any]) -> list[str]:
    out = []
    drain = state.get(R.DRAIN)
    if drain:
        out.append(f"Drain:        {drain.get('reason') or ('reachable' if drain.get('reachable') else 'unreachable')}")
    for key, label in (("restore", "Unblocked:   "), ("undo", "Undo:        ")):
        restore = state.get(key)
        if restore:
            roles = ", ".join(restore.get("restored") or []) or "nothing was blocked"
            out.append(f"{label} {roles} (verified: {'yes' if restore.get('verified') else 'no'})")
    verify = state.get(R.VERIFY)
    if verify:
        out.append(f"Verify:       {verify.get('reason')}")
    for key, label in (("restore_error", "Undo error"), ("notify_error", "Notify error")):
        if state.get(key):
            out.append(f"{label}:   {state[key].get('Error')}: {state[key].get('Cause', '')[:300]}")
    return out
