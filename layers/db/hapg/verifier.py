"""backup_verifier: route one event (the daily `check`, or a restore-test workflow step) to the core."""

from __future__ import annotations

import time
from typing import Any

from hapg import backups, restore, runtime
from hapg.backups import BackupSettings
from hapg.names import Action, Function
from hapg.restore_port import AuroraRestore
from hapg.restore_run import Deps, Request
from hapg.steps import Step

ACTIONS = (
    Action.CHECK,
    Action.VALIDATE,
    Action.SWEEP,
    Action.PREPARE,
    Action.RESTORE_SNAPSHOT,
    Action.STATUS,
    Action.VERIFY,
    Action.CLEANUP,
    Action.RECORD,
)


def settings() -> BackupSettings:
    return runtime.port("backup_settings", backups.load_settings)


def _aurora() -> AuroraRestore:
    s = settings()
    return AuroraRestore(s.cluster_id, s.prefix)


def deps() -> Deps:
    return Deps(
        port=runtime.port("restore", _aurora),
        settings=settings(),
        source_db=lambda: runtime.database(Function.BACKUP_VERIFIER),
        db_settings=lambda: runtime.settings().db,
    )


def run(step: Step) -> dict[str, Any]:
    d = deps()
    if step.action == Action.CHECK:
        return backups.run_check(d.port, d.settings, time.time, backups.sns_publisher(d.settings.topic_arn))
    if step.action == Action.VALIDATE:
        return restore.validate(step.payload.get("input"), step.payload.get("execution"), d)
    if step.action == Action.RECORD:
        return restore.record(step.get("state", dict), step.get("execution", str), d)
    request = Request.from_dict(step.get("request", dict), d.settings.prefix)
    return _RUN_STEPS[step.action](step, request, d)


_RUN_STEPS = {
    Action.SWEEP: lambda step, request, d: restore.sweep(
        request, [str(f) for f in step.get("found", list, required=False) or []], d
    ),
    Action.PREPARE: lambda step, request, d: restore.prepare(request, d),
    Action.RESTORE_SNAPSHOT: lambda step, request, d: restore.restore_snapshot(request, step.get("snapshot", dict), d),
    Action.STATUS: lambda step, request, d: restore.status(
        request, step.get("restore", dict), step.get("snapshot", dict), d
    ),
    Action.VERIFY: lambda step, request, d: restore.verify(request, step.get("profile", dict), d),
    Action.CLEANUP: lambda step, request, d: restore.cleanup(request, step.get("started_at", (str, int, float)), d),
}
