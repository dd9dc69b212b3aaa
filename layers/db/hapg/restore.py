"""The restore test: the steps of the backup-verification workflow (statemachines/backup.py).

    validate -> sweep (poll) -> prepare -> restore_snapshot -> status (poll) -> verify
             -> cleanup (poll, also after ANY failure) -> record -> notify on failure

Every step is idempotent and every poll has a deadline; from `sweep` on, any failure goes
through `cleanup` (the ASL's Catch), so the temporary cluster never outlives the run. A run that
died anyway stops renewing its lease (hapg.restore_lease), and the next run deletes its cluster
first. What a run reports is hapg.restore_report.

Credentials never enter the workflow state. A restored cluster keeps the master password the
source had when the snapshot was taken (rotated since, perhaps); `verify` sets a fresh random
password on the temporary cluster (ModifyDBCluster), logs in with it and forgets it: it lives
only in that invocation's memory, and the cluster it opens is deleted minutes later.
"""

from __future__ import annotations

import re
import secrets as _random
import time
from collections.abc import Callable
from typing import Any

from hapg import errors
from hapg.backups import epoch, latest_automated, same_key
from hapg.dbprofile import RestoredProfile, SourceProfile, capture_restored, capture_source, compare, database_exists
from hapg.models import Credentials, require_mapping
from hapg.names import AVAILABLE, Backup, Function, Metric, Outcome
from hapg.names import Result as R
from hapg.pg import guarded, open_connection
from hapg.restore_lease import hold_lease, release_lease
from hapg.restore_port import RestorePort, RestoreSpec, tags_of
from hapg.restore_report import assess, compose, put_history
from hapg.restore_run import Deps, Request, parse_input
from hapg.telemetry import MetricUnit, child_logger, emit

log = child_logger()

DELETING = "deleting"
LOGIN_RETRY_S = 5.0
MAX_COPIED_TAGS = 40  # RDS allows 50 tags; ours take 2
FAILED_CLUSTER = frozenset(
    {
        "failed",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "incompatible-parameters",
        "incompatible-restore",
        "migration-failed",
    }
)
FAILED_INSTANCE = frozenset(
    {
        "failed",
        "inaccessible-encryption-credentials",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-parameters",
        "incompatible-restore",
        "restore-error",
        "storage-full",
    }
)
_EXECUTION = re.compile(r"^arn:[\w-]+:states:[\w-]+:\d{12}:execution:[^:]+:[^:]+$")


# ---- validate ---------------------------------------------------------------------------------
def validate(raw: Any, execution: Any, deps: Deps) -> dict[str, Any]:
    """Check the execution input before anything is created; returns the initial workflow state."""
    if not isinstance(execution, str) or not _EXECUTION.match(execution):
        raise errors.InvalidInput(f"validate: execution must be a Step Functions execution ARN, got {execution!r:.80}")
    reason, snapshot_id = parse_input(raw)
    if snapshot_id is not None:
        _check_named_snapshot(snapshot_id, deps)
    request = Request(execution, deps.settings.prefix, reason, deps.clock(), snapshot_id)
    hold_lease(request, deps, take=True)
    log.info("restore test requested", extra={"run": request.run_id, "snapshot": snapshot_id, "reason": reason})
    return {"request": request.to_dict(), "sweep": {"found": [], "remaining": [], "gone": False}}


def _check_named_snapshot(snapshot_id: Any, deps: Deps) -> None:
    cluster_id = deps.settings.cluster_id
    snap = deps.port.snapshot(snapshot_id)
    if snap is None:
        raise errors.InvalidInput(f"snapshot {snapshot_id} not found")
    if snap.get("DBClusterIdentifier") != cluster_id:
        raise errors.InvalidInput(
            f"snapshot {snapshot_id} belongs to {snap.get('DBClusterIdentifier')}, not {cluster_id}"
        )
    if snap.get("SnapshotType") != "automated":
        raise errors.InvalidInput(
            f"snapshot {snapshot_id} is a {snap.get('SnapshotType')} snapshot; "
            f"the restore test restores automated snapshots of {cluster_id} only"
        )
    if snap.get("Status") != AVAILABLE:
        raise errors.InvalidInput(f"snapshot {snapshot_id} is {snap.get('Status')}, not available")


# ---- teardown (sweep and cleanup) -------------------------------------------------------------
def teardown(port: RestorePort, cluster_id: str, instance_ids: tuple[str, ...] = ()) -> list[str]:
    """Ask RDS to delete a temporary cluster and its instances (skip final snapshot); what is still
    there, as "cluster x (status)" lines. Safe to repeat: gone is done, deleting is left alone, busy
    (still creating) is asked again on the next poll. Refuses anything not tagged as ours."""
    cluster = port.cluster(cluster_id)
    if cluster is not None and not port.is_ours(cluster):
        raise errors.FatalError(
            f"refusing to delete {cluster_id}: it is not tagged as a restore test of {port.cluster_id}"
        )
    members = set(instance_ids) | {m["DBInstanceIdentifier"] for m in (cluster or {}).get("DBClusterMembers", [])}
    remaining = []
    for instance_id in sorted(members):
        inst = port.instance(instance_id)
        if inst is None:
            continue
        if not port.is_ours(inst):
            raise errors.FatalError(f"refusing to delete {instance_id}: it is not tagged as a restore test")
        status = inst.get("DBInstanceStatus", "unknown")
        if status != DELETING:
            try:
                port.delete_instance(instance_id)
                status = DELETING
            except errors.NotReady as exc:
                log.info("instance not deletable yet", extra={"instance": instance_id, "cause": str(exc)})
        remaining.append(f"instance {instance_id} ({status})")
    if cluster is not None:
        status = cluster.get("Status", "unknown")
        if status != DELETING:
            try:
                if cluster.get("DeletionProtection"):
                    port.disable_deletion_protection(cluster_id)
                port.delete_cluster(cluster_id)
                status = DELETING
            except errors.NotReady as exc:
                log.info("cluster not deletable yet", extra={"cluster": cluster_id, "cause": str(exc)})
        remaining.append(f"cluster {cluster_id} ({status})")
    return remaining


def sweep(request: Request, found: list[str], deps: Deps) -> dict[str, Any]:
    """Delete the temporary clusters of dead earlier runs (found by their tags) before restoring."""
    hold_lease(request, deps)  # while we hold it, no other run is alive
    now = deps.clock()
    leftovers = [c for c in deps.port.temporaries() if c["DBClusterIdentifier"] != request.cluster_id]
    remaining: list[str] = []
    for cluster in leftovers:
        ident = cluster["DBClusterIdentifier"]
        log.warning("deleting a leftover restore-test cluster", extra={"cluster": ident, "tags": tags_of(cluster)})
        remaining += teardown(deps.port, ident)
    found = sorted(set(found) | {c["DBClusterIdentifier"] for c in leftovers})
    if remaining and now >= request.started_at + deps.settings.cleanup_deadline_s:
        raise errors.BackupCheckFailed(
            f"leftovers of an earlier restore test are still present after {deps.settings.cleanup_deadline_s:.0f} s: "
            f"{', '.join(remaining)}"
        )
    return {"found": found, "remaining": remaining, "gone": not remaining}


def cleanup(request: Request, started_at: Any, deps: Deps) -> dict[str, Any]:
    """Delete this run's instance and cluster; `gone` once RDS no longer lists them."""
    since = epoch(started_at)
    if since is None:
        raise errors.InvalidInput("cleanup: started_at is required")
    try:
        hold_lease(request, deps)
    except errors.BackupCheckFailed as exc:  # deleting our own cluster is right either way
        log.warning("cleaning up without the lease", extra={"cause": str(exc)})
    remaining = teardown(deps.port, request.cluster_id, (request.instance_id,))
    if remaining and deps.clock() >= since + deps.settings.cleanup_deadline_s:
        raise errors.BackupCheckFailed(
            f"cleanup did not finish within {deps.settings.cleanup_deadline_s:.0f} s; "
            f"still present: {', '.join(remaining)}"
        )
    return {"gone": not remaining, "remaining": remaining, "started_at": started_at}


# ---- prepare, restore, status -----------------------------------------------------------------
def prepare(request: Request, deps: Deps) -> dict[str, Any]:
    """Choose the snapshot (the latest automated one unless named) and profile the source database."""
    hold_lease(request, deps)
    s = deps.settings
    if request.snapshot_id:
        snap = deps.port.snapshot(request.snapshot_id)
        if snap is None:
            raise errors.BackupCheckFailed(f"snapshot {request.snapshot_id} no longer exists")
    else:
        snap, _ = latest_automated(deps.port.automated_snapshots(), s.cluster_id)
        if snap is None:
            raise errors.BackupCheckFailed(f"no automated snapshot of {s.cluster_id} to restore")
    snapshot_id = snap["DBClusterSnapshotIdentifier"]
    if snap.get("Status") != AVAILABLE:
        raise errors.BackupCheckFailed(f"snapshot {snapshot_id} is {snap.get('Status')}, not available")
    if not snap.get("StorageEncrypted") or not same_key(snap.get("KmsKeyId"), s.kms_key_arn):
        raise errors.BackupCheckFailed(f"snapshot {snapshot_id} is not encrypted with our key {s.kms_key_arn}")
    db = deps.source_db()
    with db.session(db.settings.reader, target_session_attrs="prefer-standby") as conn:
        profile = capture_source(conn, db.settings.dbname, s.key_tables)
    copied = [
        [k, v]
        for k, v in tags_of(snap).items()
        if not k.startswith("aws:") and k not in (Backup.TAG_RUN, Backup.TAG_SOURCE)
    ][:MAX_COPIED_TAGS]
    log.info("restore prepared", extra={"snapshot": snapshot_id, "tables": len(profile.tables)})
    return {
        "snapshot": {
            "id": snapshot_id,
            "created_at": epoch(snap.get("SnapshotCreateTime")),
            "engine_version": snap.get("EngineVersion"),
            "tags": copied,
        },
        "profile": profile.to_dict(),
    }


def _resource_tags(request: Request, deps: Deps, snapshot: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    copied = tuple((str(k), str(v)) for k, v in snapshot.get("tags") or [])
    return ((Backup.TAG_RUN, request.run_id), (Backup.TAG_SOURCE, deps.settings.cluster_id), *copied)


def restore_snapshot(request: Request, snapshot: dict[str, Any], deps: Deps) -> dict[str, Any]:
    """Start restoring the snapshot into this run's temporary cluster (once)."""
    hold_lease(request, deps)
    s, now = deps.settings, deps.clock()
    snapshot_id = snapshot.get("id")
    if not isinstance(snapshot_id, str) or not snapshot_id:
        raise errors.InvalidInput("restore_snapshot: snapshot.id is required")
    existing = deps.port.cluster(request.cluster_id)
    if existing is not None:
        if not deps.port.is_ours(existing):
            raise errors.FatalError(f"{request.cluster_id} exists and is not tagged as this restore test")
        started = epoch(existing.get("ClusterCreateTime")) or now
        created = False
    else:
        spec = RestoreSpec(
            cluster_id=request.cluster_id,
            snapshot_id=snapshot_id,
            subnet_group=s.subnet_group,
            security_group_id=s.security_group_id,
            kms_key_arn=s.kms_key_arn,
            cluster_parameter_group=s.cluster_parameter_group,
            tags=_resource_tags(request, deps, snapshot),
        )
        deps.port.restore_cluster(spec)
        started, created = now, True
        log.info("restore started", extra={"cluster": request.cluster_id, "snapshot": snapshot_id})
    return {
        "cluster_id": request.cluster_id,
        "instance_id": request.instance_id,
        "snapshot_id": snapshot_id,
        "started_at": started,
        "deadline_at": started + s.restore_deadline_s,
        "created": created,
    }


def status(request: Request, restore: dict[str, Any], snapshot: dict[str, Any], deps: Deps) -> dict[str, Any]:
    """Is the restored cluster and its instance available? Creates the instance once the cluster is
    available (RDS accepts instances only then); raises BackupCheckFailed past the deadline."""
    hold_lease(request, deps)
    now = deps.clock()
    deadline = float(restore.get("deadline_at") or 0)
    cluster = deps.port.cluster(request.cluster_id)
    if cluster is None:
        raise errors.BackupCheckFailed(f"the restored cluster {request.cluster_id} has disappeared")
    if not deps.port.is_ours(cluster):
        raise errors.FatalError(f"{request.cluster_id} is not tagged as this restore test")
    cluster_status = cluster.get("Status", "unknown")
    if cluster_status in FAILED_CLUSTER:
        raise errors.BackupCheckFailed(f"the restore failed: cluster {request.cluster_id} is {cluster_status}")
    inst = deps.port.instance(request.instance_id)
    if inst is None:
        instance_status = "not created"
        if cluster_status == AVAILABLE:
            deps.port.create_instance(
                request.instance_id,
                request.cluster_id,
                deps.settings.instance_class,
                _resource_tags(request, deps, snapshot),
            )
            instance_status = "creating"
    else:
        instance_status = inst.get("DBInstanceStatus", "unknown")
        if instance_status in FAILED_INSTANCE:
            raise errors.BackupCheckFailed(f"the restore failed: instance {request.instance_id} is {instance_status}")
    available = cluster_status == AVAILABLE and instance_status == AVAILABLE
    if not available and now >= deadline:
        raise errors.BackupCheckFailed(
            f"the restored cluster {request.cluster_id} was not available "
            f"within {deps.settings.restore_deadline_s:.0f} s "
            f"(cluster {cluster_status}, instance {instance_status})"
        )
    return {
        "available": available,
        "cluster_status": cluster_status,
        "instance_status": instance_status,
        "available_at": now if available else None,
    }


# ---- verify -----------------------------------------------------------------------------------
def verify(request: Request, profile: Any, deps: Deps) -> dict[str, Any]:
    """Log in to the restored cluster with a fresh master password and compare it with the source."""
    hold_lease(request, deps)
    started = time.perf_counter()
    source = SourceProfile.from_dict(profile)
    cluster = deps.port.cluster(request.cluster_id)
    if cluster is None or not deps.port.is_ours(cluster):
        raise errors.BackupCheckFailed(f"the restored cluster {request.cluster_id} is not there to verify")
    username = cluster.get("MasterUsername")
    if not username:
        raise errors.BackupCheckFailed(f"the restored cluster {request.cluster_id} reports no master user")
    password = _random.token_urlsafe(32)  # never leaves this invocation
    deps.port.set_master_password(request.cluster_id, username, password)
    endpoint = deps.port.endpoint(cluster)
    restored = verify_database(
        lambda dbname: _login(endpoint, Credentials(username, password), dbname, request, deps), source
    )
    verdict = compare(source, restored, deps.settings.size_ratio_min, deps.settings.size_ratio_max)
    log.info("restore verdict", extra={"ok": verdict.ok, "reason": verdict.reason})
    if not verdict.ok:
        raise errors.BackupCheckFailed(verdict.reason)
    return {
        "ok": True,
        "reason": verdict.reason,
        "figures": verdict.figures,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def verify_database(connect: Callable[[str], Any], source: SourceProfile) -> RestoredProfile:
    """Read the restored side: `connect(dbname)` opens a session to the restored server."""
    conn = connect("postgres")
    with guarded(conn, "restored cluster"):
        exists = database_exists(conn, source.dbname)
    if not exists:
        return RestoredProfile(source.dbname, False)
    conn = connect(source.dbname)
    with guarded(conn, f"restored {source.dbname}"):
        return capture_restored(conn, source)


def _login(endpoint: Any, creds: Credentials, dbname: str, request: Request, deps: Deps) -> Any:
    """A session as the master user; the new password may take a little while to apply."""
    deadline = deps.clock() + deps.settings.credentials_wait_s
    app = f"{Function.BACKUP_VERIFIER}-restore"
    while True:
        try:
            return open_connection(endpoint, creds, deps.db_settings(), app=app, dbname=dbname)
        except (errors.AuthenticationFailed, errors.DatabaseUnavailable, errors.DatabaseTimeout) as exc:
            if deps.clock() >= deadline:
                raise errors.BackupCheckFailed(
                    f"could not log in to the restored cluster {request.cluster_id} within "
                    f"{deps.settings.credentials_wait_s:.0f} s: {exc}"
                ) from exc
            log.info("restored cluster not accepting the new password yet", extra={"cause": str(exc)})
            deps.sleep(LOGIN_RETRY_S)


# ---- record -----------------------------------------------------------------------------------
def record(state: Any, execution: Any, deps: Deps) -> dict[str, Any]:
    """Write the result once (history item, metrics) and compose the notification."""
    state = require_mapping(state, "record: state")
    if not isinstance(execution, str) or not execution:
        raise errors.InvalidInput("record: execution is required")
    now = deps.clock()
    summary = assess(state, now)
    request = state.get(R.REQUEST) or {}
    cluster_id = deps.settings.cluster_id
    first = put_history(summary, execution, deps)
    if request.get("execution") == execution:
        release_lease(Request.from_dict(request, deps.settings.prefix), deps)
    if first:
        emit(
            cluster_id,
            {
                Metric.RESTORE_SUCCEEDED: (1.0 if summary["verified"] else 0.0, MetricUnit.Count),
                Metric.RESTORE_DURATION: (summary["restore_seconds"], MetricUnit.Seconds),
            },
        )
    log.info(
        "restore test outcome", extra={k: summary[k] for k in ("outcome", "reason", "snapshot_id", "restore_seconds")}
    )
    subject, message = compose(summary, {**request, "execution": execution}, cluster_id)
    public = {k: v for k, v in summary.items() if k != "figures"}
    return {
        "outcome": summary["outcome"],
        "notify": summary["outcome"] != Outcome.SUCCEEDED,
        "subject": subject,
        "message": message,
        "recorded": first,
        "summary": public,
    }
