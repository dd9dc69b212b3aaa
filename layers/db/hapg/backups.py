"""Backup verification: the function's settings and the daily checks.

`facts_from` turns raw RDS descriptions into frozen `BackupFacts`; `evaluate` (pure) turns the
facts into a `BackupReport` with one sentence per check; `run_check` gathers, evaluates, emits
the metrics and notifies the alert topic when a check fails. The restore test is `hapg.restore`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from hapg import aws, errors
from hapg.config import env_number, env_value
from hapg.names import AVAILABLE, Backup, Env, Metric
from hapg.notify import RESTORE_ACTIONS, ascii_subject, when
from hapg.telemetry import MetricUnit, child_logger, emit

log = child_logger()

_PREFIX = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_TABLE = re.compile(r"^([^.\s]+)\.([^\s]+)$")
PREFIX_MAX = 50  # + "-" + 10-hex run id + "-1" stays under RDS's 63-character identifiers


# ---- settings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupSettings:
    cluster_id: str
    kms_key_arn: str
    retention_days: int
    subnet_group: str
    security_group_id: str
    instance_class: str
    cluster_parameter_group: str | None
    prefix: str  # temporary restore-test resources are <prefix>-<run id>
    restore_deadline_s: float
    cleanup_deadline_s: float
    credentials_wait_s: float
    key_tables: tuple[tuple[str, str], ...]  # empty: the source's largest tables
    size_ratio_min: float
    size_ratio_max: float
    state_table: str | None
    topic_arn: str | None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    return env_number(env, name, str(default), float, positive=True)


def parse_tables(raw: str) -> tuple[tuple[str, str], ...]:
    """`ledger.accounts, ledger.entries` -> (("ledger", "accounts"), ("ledger", "entries"))."""
    out = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        match = _TABLE.match(item)
        if not match:
            raise errors.ConfigError(f"{Env.RESTORE_KEY_TABLES}: {item!r} is not schema.table")
        out.append((match[1], match[2]))
    return tuple(out)


def load_settings(env: Mapping[str, str] | None = None) -> BackupSettings:
    env = os.environ if env is None else env
    prefix = env_value(env, Env.RESTORE_PREFIX)
    if not _PREFIX.match(prefix) or len(prefix) > PREFIX_MAX:
        raise errors.ConfigError(
            f"{Env.RESTORE_PREFIX}={prefix!r}: lowercase letters, digits and single hyphens, at most {PREFIX_MAX}"
        )
    cluster_id = env_value(env, Env.CLUSTER_ID)
    if cluster_id.startswith(prefix + "-"):
        raise errors.ConfigError(f"the cluster {cluster_id} must not carry the temporary prefix {prefix}-")
    ratio_min = _positive(env, Env.RESTORE_SIZE_RATIO_MIN, 0.5)
    ratio_max = _positive(env, Env.RESTORE_SIZE_RATIO_MAX, 2.0)
    if ratio_min >= ratio_max:
        raise errors.ConfigError(f"{Env.RESTORE_SIZE_RATIO_MIN} must be below {Env.RESTORE_SIZE_RATIO_MAX}")
    return BackupSettings(
        cluster_id=cluster_id,
        kms_key_arn=env_value(env, Env.BACKUP_KMS_KEY_ARN),
        retention_days=env_number(env, Env.BACKUP_RETENTION_DAYS, None, int, positive=True),
        subnet_group=env_value(env, Env.DB_SUBNET_GROUP),
        security_group_id=env_value(env, Env.DB_SECURITY_GROUP_ID),
        instance_class=env_value(env, Env.RESTORE_INSTANCE_CLASS, Backup.DEFAULT_INSTANCE_CLASS),
        cluster_parameter_group=env.get(Env.DB_CLUSTER_PARAMETER_GROUP) or None,
        prefix=prefix,
        restore_deadline_s=_positive(env, Env.RESTORE_DEADLINE_S, Backup.RESTORE_DEADLINE_S),
        cleanup_deadline_s=_positive(env, Env.CLEANUP_DEADLINE_S, Backup.CLEANUP_DEADLINE_S),
        credentials_wait_s=_positive(env, Env.CREDENTIALS_WAIT_S, Backup.CREDENTIALS_WAIT_S),
        key_tables=parse_tables(env.get(Env.RESTORE_KEY_TABLES) or ""),
        size_ratio_min=ratio_min,
        size_ratio_max=ratio_max,
        state_table=env.get(Env.STATE_TABLE) or None,
        topic_arn=env.get(Env.ALERT_TOPIC_ARN) or None,
    )


# ---- facts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotFacts:
    snapshot_id: str
    status: str
    encrypted: bool
    kms_key_id: str | None
    created_at: float | None  # epoch seconds; None while RDS has not stamped it


@dataclass(frozen=True)
class BackupFacts:
    """What RDS said about the cluster's backups at `taken_at` (epoch seconds)."""

    cluster_id: str
    retention_days: int | None
    copy_tags_to_snapshot: bool
    latest_restorable_at: float | None
    snapshot: SnapshotFacts | None  # the latest automated snapshot, see latest_automated()
    taken_at: float
    in_progress: str | None = None  # a newer automated snapshot still being created


def epoch(value: Any) -> float | None:
    """A boto3 datetime (or an ISO string, or epoch seconds) -> epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def latest_automated(snapshots: list[dict[str, Any]], cluster_id: str) -> tuple[dict | None, dict | None]:
    """(the latest automated snapshot to judge, a newer one still being created or None).

    A snapshot being created is not judged while an older one exists: the backup window is
    running and the check must not page for it. If nothing else exists, it is judged (and is
    not available).
    """
    own = [
        s
        for s in snapshots
        if s.get("SnapshotType") == "automated" and s.get("DBClusterIdentifier", cluster_id) == cluster_id
    ]
    own.sort(key=lambda s: epoch(s.get("SnapshotCreateTime")) or float("inf"), reverse=True)
    if not own:
        return None, None
    done = [s for s in own if s.get("Status") != "creating"]
    if not done:
        return own[0], None
    newer = own[0] if own[0] is not done[0] else None
    return done[0], newer


def facts_from(cluster: dict[str, Any], snapshots: list[dict[str, Any]], now: float) -> BackupFacts:
    """Pure: DescribeDBClusters item + DescribeDBClusterSnapshots items -> BackupFacts."""
    cluster_id = cluster["DBClusterIdentifier"]
    chosen, newer = latest_automated(snapshots, cluster_id)
    snapshot = None
    if chosen is not None:
        snapshot = SnapshotFacts(
            snapshot_id=chosen["DBClusterSnapshotIdentifier"],
            status=chosen.get("Status", "unknown"),
            encrypted=bool(chosen.get("StorageEncrypted")),
            kms_key_id=chosen.get("KmsKeyId"),
            created_at=epoch(chosen.get("SnapshotCreateTime")),
        )
    retention = cluster.get("BackupRetentionPeriod")
    return BackupFacts(
        cluster_id=cluster_id,
        retention_days=int(retention) if retention is not None else None,
        copy_tags_to_snapshot=bool(cluster.get("CopyTagsToSnapshot")),
        latest_restorable_at=epoch(cluster.get("LatestRestorableTime")),
        snapshot=snapshot,
        taken_at=now,
        in_progress=newer["DBClusterSnapshotIdentifier"] if newer else None,
    )


# ---- the checks (pure) ------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    reason: str


@dataclass(frozen=True)
class BackupReport:
    cluster_id: str
    healthy: bool
    reason: str
    checks: tuple[Check, ...]
    snapshot_id: str | None
    backup_age_hours: float | None
    pitr_lag_seconds: float | None
    checked_at: float

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = [c.reason for c in self.failures]
        return out


def same_key(actual: str | None, expected: str) -> bool:
    """KMS key identity: equal ARNs, or the same key id when one side is a bare id."""
    if not actual:
        return False
    if actual == expected:
        return True
    if actual.startswith("arn:") and expected.startswith("arn:"):
        return False
    return actual.rsplit("/", 1)[-1] == expected.rsplit("/", 1)[-1]


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def evaluate(facts: BackupFacts, kms_key_arn: str, retention_days: int) -> BackupReport:
    """Every daily check, in order, each with one sentence. A check that needs a snapshot is not
    run without one (the missing snapshot is the one failure then)."""
    checks: list[Check] = []
    snap = facts.snapshot
    age_h = None
    name = f"latest automated snapshot {snap.snapshot_id}" if snap else ""
    if snap is None:
        checks.append(Check("snapshot_exists", False, f"no automated snapshot of {facts.cluster_id} exists"))
    else:
        checks.append(Check("snapshot_exists", True, f"{name} exists"))
        available = snap.status == AVAILABLE
        state = "still being created" if snap.status == "creating" else f"'{snap.status}'"
        checks.append(
            Check("snapshot_available", available, f"{name} is available" if available else f"{name} is {state}")
        )
        if not snap.encrypted:
            checks.append(Check("snapshot_encrypted", False, f"{name} is not encrypted"))
        else:
            ours = same_key(snap.kms_key_id, kms_key_arn)
            why = (
                f"{name} is encrypted with our key"
                if ours
                else f"{name} is encrypted with {snap.kms_key_id or 'an unknown key'}, not with our key {kms_key_arn}"
            )
            checks.append(Check("snapshot_encrypted", ours, why))
        if snap.created_at is None:
            checks.append(Check("snapshot_age", False, f"{name} has no creation time yet"))
        else:
            age_s = max(0.0, facts.taken_at - snap.created_at)
            age_h = round(age_s / 3600, 3)
            fresh = age_s < Backup.MAX_SNAPSHOT_AGE_H * 3600
            limit = f"limit {Backup.MAX_SNAPSHOT_AGE_H} h"
            checks.append(
                Check("snapshot_age", fresh, f"{name} is {_hours(age_s)} old ({'under the ' if fresh else ''}{limit})")
            )
    lag = None
    if facts.latest_restorable_at is None:
        checks.append(
            Check(
                "pitr_lag",
                False,
                "the cluster reports no latest restorable time: point-in-time recovery is unavailable",
            )
        )
    else:
        lag = round(max(0.0, facts.taken_at - facts.latest_restorable_at), 1)
        ok = lag <= Backup.MAX_PITR_LAG_S
        checks.append(
            Check(
                "pitr_lag",
                ok,
                f"the latest restorable time is {lag:.0f} s behind now "
                f"({'within' if ok else 'over'} the {Backup.MAX_PITR_LAG_S} s limit)",
            )
        )
    retention_ok = facts.retention_days == retention_days
    checks.append(
        Check(
            "retention",
            retention_ok,
            f"backup retention is {facts.retention_days} days"
            + ("" if retention_ok else f", configured {retention_days}"),
        )
    )
    checks.append(
        Check(
            "copy_tags",
            facts.copy_tags_to_snapshot,
            "tags are copied to snapshots"
            if facts.copy_tags_to_snapshot
            else "CopyTagsToSnapshot is off: snapshots do not carry the cluster's tags",
        )
    )
    failed = [c.reason for c in checks if not c.ok]
    if failed:
        reason = "; ".join(failed)
    else:
        reason = (
            f"backups healthy: {snap.snapshot_id} is {_hours(age_h * 3600)} old, "
            f"point-in-time recovery {lag:.0f} s behind, retention {facts.retention_days} days"
        )
    return BackupReport(
        cluster_id=facts.cluster_id,
        healthy=not failed,
        reason=reason,
        checks=tuple(checks),
        snapshot_id=snap.snapshot_id if snap else None,
        backup_age_hours=age_h,
        pitr_lag_seconds=lag,
        checked_at=facts.taken_at,
    )


# ---- notification text (pure) -----------------------------------------------------------------
def compose_check(report: BackupReport) -> tuple[str, str]:
    failures = report.failures
    subject = ascii_subject(
        f"[{report.cluster_id}] Backup check FAILED: {len(failures)} of {len(report.checks)} checks failed"
    )
    lines = [
        "Outcome:      FAILED",
        "What:         Daily backup checks",
        f"Cluster:      {report.cluster_id}",
        f"Reason:       {failures[0].reason if failures else report.reason}",
        "",
        "Checks:",
        *(f"  [{'ok' if c.ok else 'FAILED'}] {c.name}: {c.reason}" for c in report.checks),
        "",
        RESTORE_ACTIONS,
        f"Time:         {when(report.checked_at)}",
    ]
    return subject, "\n".join(lines) + "\n"


# ---- the `check` action -----------------------------------------------------------------------
def run_check(
    port: Any, settings: BackupSettings, clock: Callable[[], float], publish: Callable[[str, str], None]
) -> dict[str, Any]:
    """The daily checks: never raises on a bad backup or a broken describe (that is a failed report,
    published); raises only when the failure could not be published (the async retry publishes)."""
    now = clock()
    try:
        facts = facts_from(port.source(), port.automated_snapshots(), now)
        report = evaluate(facts, settings.kms_key_arn, settings.retention_days)
    except errors.HapgError as exc:
        log.exception("backup checks could not run")
        failed = Check("describe", False, f"the backup checks could not run: {exc}")
        report = BackupReport(settings.cluster_id, False, failed.reason, (failed,), None, None, None, now)
    emit(
        settings.cluster_id,
        {
            Metric.BACKUP_AGE: (report.backup_age_hours, MetricUnit.NoUnit),  # hours: CloudWatch has no unit for them
            Metric.PITR_LAG: (report.pitr_lag_seconds, MetricUnit.Seconds),
        },
    )
    log.info("backup checks", extra={"healthy": report.healthy, "reason": report.reason})
    out = report.to_dict()
    out["notified"] = False
    if not report.healthy:
        publish(*compose_check(report))
        out["notified"] = True
    return out


def sns_publisher(topic_arn: str | None) -> Callable[[str, str], None]:
    def publish(subject: str, message: str) -> None:
        if not topic_arn:
            raise errors.ConfigError(f"{Env.ALERT_TOPIC_ARN} is required to notify a failed backup check")
        with aws.call("sns:Publish"):
            aws.client("sns").publish(TopicArn=topic_arn, Subject=subject, Message=message)

    return publish
