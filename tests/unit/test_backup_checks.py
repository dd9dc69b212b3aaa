"""The daily backup checks: pure evaluation over frozen facts, every failing check with its reason,
and the 26 h / 10 min boundaries; turning raw RDS descriptions into facts; the settings."""

import datetime as dt

import pytest
from hapg import errors
from hapg.backups import (
    BackupFacts,
    SnapshotFacts,
    compose_check,
    evaluate,
    facts_from,
    latest_automated,
    load_settings,
    parse_tables,
    same_key,
)
from hapg.names import Env

NOW = 1_800_000_000.0
KEY = "arn:aws:kms:us-east-1:123456789012:key/1111aaaa-2222-bbbb-3333-cccc4444dddd"
OTHER_KEY = "arn:aws:kms:us-east-1:123456789012:key/9999ffff-2222-bbbb-3333-cccc4444dddd"
SNAP = "rds:hapg-dev-cluster-2027-01-15-03-10"


def facts(**changes):
    snapshot = SnapshotFacts(SNAP, "available", True, KEY, NOW - 3 * 3600)
    snap_changes = {k[5:]: changes.pop(k) for k in list(changes) if k.startswith("snap_")}
    if snap_changes:
        snapshot = SnapshotFacts(**{**snapshot.__dict__, **snap_changes})
    base = {
        "cluster_id": "hapg-dev-cluster",
        "retention_days": 35,
        "copy_tags_to_snapshot": True,
        "latest_restorable_at": NOW - 120,
        "snapshot": snapshot,
        "taken_at": NOW,
    }
    return BackupFacts(**{**base, **changes})


def run(f):
    return evaluate(f, KEY, 35)


def failed(report):
    return {c.name: c.reason for c in report.failures}


def test_healthy_backups_pass_every_check_with_figures():
    report = run(facts())
    assert report.healthy, report.reason
    assert [c.name for c in report.checks] == [
        "snapshot_exists",
        "snapshot_available",
        "snapshot_encrypted",
        "snapshot_age",
        "pitr_lag",
        "retention",
        "copy_tags",
    ]
    assert report.backup_age_hours == 3.0 and report.pitr_lag_seconds == 120.0
    assert report.reason == (
        f"backups healthy: {SNAP} is 3.0 h old, point-in-time recovery 120 s behind, retention 35 days"
    )


def test_missing_snapshot_is_one_failure_and_skips_the_snapshot_checks():
    report = run(facts(snapshot=None))
    assert failed(report) == {"snapshot_exists": "no automated snapshot of hapg-dev-cluster exists"}
    assert [c.name for c in report.checks] == ["snapshot_exists", "pitr_lag", "retention", "copy_tags"]
    assert report.backup_age_hours is None and report.snapshot_id is None


@pytest.mark.parametrize(
    ("changes", "check", "reason"),
    [
        (
            {"snap_status": "creating"},
            "snapshot_available",
            f"latest automated snapshot {SNAP} is still being created",
        ),
        ({"snap_status": "failed"}, "snapshot_available", f"latest automated snapshot {SNAP} is 'failed'"),
        ({"snap_encrypted": False}, "snapshot_encrypted", f"latest automated snapshot {SNAP} is not encrypted"),
        (
            {"snap_kms_key_id": OTHER_KEY},
            "snapshot_encrypted",
            f"latest automated snapshot {SNAP} is encrypted with {OTHER_KEY}, not with our key {KEY}",
        ),
        (
            {"snap_created_at": NOW - 27 * 3600},
            "snapshot_age",
            f"latest automated snapshot {SNAP} is 27.0 h old (limit 26 h)",
        ),
        (
            {"snap_created_at": None},
            "snapshot_age",
            f"latest automated snapshot {SNAP} has no creation time yet",
        ),
        (
            {"latest_restorable_at": NOW - 900},
            "pitr_lag",
            "the latest restorable time is 900 s behind now (over the 600 s limit)",
        ),
        (
            {"latest_restorable_at": None},
            "pitr_lag",
            "the cluster reports no latest restorable time: point-in-time recovery is unavailable",
        ),
        ({"retention_days": 7}, "retention", "backup retention is 7 days, configured 35"),
        ({"retention_days": None}, "retention", "backup retention is None days, configured 35"),
        (
            {"copy_tags_to_snapshot": False},
            "copy_tags",
            "CopyTagsToSnapshot is off: snapshots do not carry the cluster's tags",
        ),
    ],
)
def test_each_failing_check_has_its_reason(changes, check, reason):
    report = run(facts(**changes))
    assert not report.healthy
    assert failed(report) == {check: reason}
    assert report.reason == reason


def test_several_failures_are_all_reported_in_order():
    report = run(facts(retention_days=1, copy_tags_to_snapshot=False, snap_encrypted=False))
    assert list(failed(report)) == ["snapshot_encrypted", "retention", "copy_tags"]
    assert report.reason.count("; ") == 2


@pytest.mark.parametrize(
    ("age_s", "ok"),
    [(26 * 3600 - 1, True), (26 * 3600, False), (26 * 3600 + 1, False), (0, True), (-300, True)],
)
def test_snapshot_age_boundary_is_under_26_hours(age_s, ok):
    report = run(facts(snap_created_at=NOW - age_s))
    assert ("snapshot_age" not in failed(report)) is ok


@pytest.mark.parametrize(("lag_s", "ok"), [(599, True), (600, True), (600.1, False), (601, False), (-5, True)])
def test_pitr_boundary_is_within_10_minutes(lag_s, ok):
    report = run(facts(latest_restorable_at=NOW - lag_s))
    assert ("pitr_lag" not in failed(report)) is ok
    assert report.pitr_lag_seconds == round(max(0.0, lag_s), 1)


def test_key_identity_accepts_a_bare_key_id_but_not_another_arn():
    key_id = KEY.rsplit("/", 1)[-1]
    assert same_key(KEY, KEY) and same_key(key_id, KEY) and same_key(KEY, key_id)
    assert not same_key(OTHER_KEY, KEY) and not same_key(None, KEY) and not same_key("", KEY)
    assert not same_key(KEY.replace("us-east-1", "eu-west-1"), KEY), "same id in another region is another key"


# ---- raw descriptions -> facts -----------------------------------------------------------------


def snapshot(ident, hours_ago, status="available", kind="automated", cluster="hapg-dev-cluster"):
    return {
        "DBClusterSnapshotIdentifier": ident,
        "DBClusterIdentifier": cluster,
        "SnapshotCreateTime": dt.datetime.fromtimestamp(NOW - hours_ago * 3600, dt.UTC),
        "SnapshotType": kind,
        "Status": status,
        "StorageEncrypted": True,
        "KmsKeyId": KEY,
    }


def test_latest_automated_ignores_manual_and_in_progress_snapshots():
    snaps = [
        snapshot("rds:old", 49),
        snapshot("manual-newest", 0.1, kind="manual"),
        snapshot("rds:newest", 0.2, status="creating"),
        snapshot("rds:yesterday", 25),
        snapshot("rds:other-cluster", 0.3, cluster="someone-else"),
    ]
    chosen, in_progress = latest_automated(snaps, "hapg-dev-cluster")
    assert chosen["DBClusterSnapshotIdentifier"] == "rds:yesterday"
    assert in_progress["DBClusterSnapshotIdentifier"] == "rds:newest"
    only_creating, none = latest_automated([snapshot("rds:first", 0.1, status="creating")], "hapg-dev-cluster")
    assert only_creating["DBClusterSnapshotIdentifier"] == "rds:first" and none is None
    assert latest_automated([snapshot("m", 1, kind="manual")], "hapg-dev-cluster") == (None, None)


def test_facts_from_describe_output():
    cluster = {
        "DBClusterIdentifier": "hapg-dev-cluster",
        "BackupRetentionPeriod": 35,
        "CopyTagsToSnapshot": True,
        "LatestRestorableTime": dt.datetime.fromtimestamp(NOW - 90, dt.UTC),
    }
    f = facts_from(cluster, [snapshot("rds:a", 2), snapshot("rds:b", 26.5)], NOW)
    assert f.snapshot == SnapshotFacts("rds:a", "available", True, KEY, NOW - 2 * 3600)
    assert (f.retention_days, f.copy_tags_to_snapshot, f.latest_restorable_at) == (35, True, NOW - 90)
    assert run(f).healthy
    bare = facts_from({"DBClusterIdentifier": "hapg-dev-cluster"}, [], NOW)
    assert (bare.snapshot, bare.retention_days, bare.latest_restorable_at, bare.copy_tags_to_snapshot) == (
        None,
        None,
        None,
        False,
    )


def test_failure_notification_is_readable_and_ascii():
    report = run(facts(retention_days=7, latest_restorable_at=NOW - 4000))
    subject, message = compose_check(report)
    assert subject == "[hapg-dev-cluster] Backup check FAILED: 2 of 7 checks failed"
    assert subject.isascii() and len(subject) < 100
    assert "[FAILED] retention: backup retention is 7 days, configured 35" in message
    assert "[ok] snapshot_exists" in message
    assert "Reason:       the latest restorable time is 4000 s behind now" in message


# ---- settings ------------------------------------------------------------------------------------

ENV = {
    Env.CLUSTER_ID: "hapg-dev-cluster",
    Env.BACKUP_KMS_KEY_ARN: KEY,
    Env.BACKUP_RETENTION_DAYS: "35",
    Env.DB_SUBNET_GROUP: "hapg-dev-db-subnets",
    Env.DB_SECURITY_GROUP_ID: "sg-0123",
    Env.RESTORE_PREFIX: "hapg-dev-restore",
}


def test_settings_defaults():
    s = load_settings(ENV)
    assert (s.retention_days, s.prefix, s.instance_class) == (35, "hapg-dev-restore", "db.t4g.medium")
    assert (s.restore_deadline_s, s.cleanup_deadline_s, s.credentials_wait_s) == (7200, 2700, 300)
    assert (s.size_ratio_min, s.size_ratio_max, s.key_tables) == (0.5, 2.0, ())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({Env.BACKUP_RETENTION_DAYS: ""}, "BACKUP_RETENTION_DAYS is required"),
        ({Env.BACKUP_RETENTION_DAYS: "a week"}, "is not a number"),
        ({Env.BACKUP_RETENTION_DAYS: "0"}, "must be positive"),
        ({Env.RESTORE_PREFIX: "Hapg_Restore"}, "RESTORE_PREFIX"),
        ({Env.RESTORE_PREFIX: "hapg--restore"}, "RESTORE_PREFIX"),
        ({Env.RESTORE_PREFIX: "x" * 51}, "at most 50"),
        ({Env.CLUSTER_ID: "hapg-dev-restore-0123456789"}, "must not carry the temporary prefix"),
        ({Env.RESTORE_SIZE_RATIO_MIN: "2", Env.RESTORE_SIZE_RATIO_MAX: "1"}, "must be below"),
        ({Env.RESTORE_KEY_TABLES: "ledger.entries, accounts"}, "'accounts' is not schema.table"),
    ],
)
def test_bad_settings_are_config_errors(changes, message):
    with pytest.raises(errors.ConfigError, match=message):
        load_settings({**ENV, **changes})


def test_key_tables_parse():
    assert parse_tables(" ledger.entries,audit.events , ") == (("ledger", "entries"), ("audit", "events"))
    assert load_settings({**ENV, Env.RESTORE_KEY_TABLES: "ledger.entries"}).key_tables == (("ledger", "entries"),)
