"""The restore verification queries against real PostgreSQL 15: a seeded source, and a stand-in for the
restored cluster made with pg_basebackup of it (local/restore.py). The stand-in passes; each way of
breaking it fails with its exact reason."""

from __future__ import annotations

import dataclasses
import time

import boto3
import psycopg2
import pytest
from backup_support import create_source
from hapg import dbprofile, errors, restore, runtime, verifier
from hapg.backups import load_settings
from hapg.config import DbSettings
from hapg.dbprofile import capture_source, compare, size_text
from hapg.models import Credentials
from hapg.names import DB_NAME, Env
from hapg.pg import guarded, open_connection
from hapg.restore import verify_database
from hapg.restore_run import Request
from support import make_secret

from local.handlers import invoke
from local.pgnode import ADMIN_USER
from local.restore import KEY_TABLES, MASTER_USER, LocalRestore, RestoreLab

pytestmark = pytest.mark.pg
PRISTINE = "pristine"


@pytest.fixture(scope="module")
def lab():
    lab = RestoreLab(prefix="hapg-test-restore-").start()
    node = lab.clone("restored")
    # The restored copy is kept aside; each test gets a fresh financialdb copied from it.
    node.psql(f"ALTER DATABASE {DB_NAME} RENAME TO {PRISTINE}")
    yield lab
    lab.stop()


@pytest.fixture
def restored(lab):
    node = lab.clones[0]
    node.psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    node.psql(f"CREATE DATABASE {DB_NAME} TEMPLATE {PRISTINE}")
    yield node
    node.psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def db_settings(lab) -> DbSettings:
    ep = lab.source.endpoint
    return DbSettings(
        secret_arn="unused",
        dbname=DB_NAME,
        writer=ep,
        reader=ep,
        sslmode="verify-full",
        sslrootcert=str(lab.sandbox.tls.ca_cert),
        connect_timeout_s=3,
        statement_timeout_ms=5000,
    )


def admin(lab) -> Credentials:
    return Credentials(ADMIN_USER, lab.sandbox.admin_password)


def source_profile(lab, key_tables=()):
    conn = open_connection(lab.source.endpoint, admin(lab), db_settings(lab), app="test", dbname=DB_NAME)
    with guarded(conn, "source"):
        return capture_source(conn, DB_NAME, key_tables)


def verdict(lab, node, source=None, ratio=(0.5, 2.0)):
    source = source or source_profile(lab)

    def connect(dbname):
        return open_connection(node.endpoint, admin(lab), db_settings(lab), app="test", dbname=dbname)

    return compare(source, verify_database(connect, source), *ratio)


def sizes(lab, node):
    def size(n):
        return n.sql("SELECT pg_database_size(%s)", (DB_NAME,))[0][0]

    return size(node), size(lab.source)


def test_source_profile(lab):
    p = source_profile(lab)
    assert p.dbname == DB_NAME and not p.truncated
    assert set(p.schemas) == {"public", "ledger", "audit"}
    assert p.tables == (
        ("audit", "events"),
        ("ledger", "accounts"),
        ("ledger", "entries"),
        ("ledger", "pending"),
        ("public", "settings"),
    )
    keys = {(s, t): rows for s, t, rows in p.key_tables}
    assert keys[("ledger", "entries")] is True and keys[("ledger", "pending")] is False
    assert next(iter(p.key_tables))[:2] == ("ledger", "entries"), "largest first"
    assert p.size_bytes > 20 * 1024**2


def test_restored_copy_passes(lab, restored):
    v = verdict(lab, restored)
    assert v.ok, v.reason
    restored_size, source_size = sizes(lab, restored)
    ratio = restored_size / source_size
    assert v.reason == (
        f"restore verified: {DB_NAME} has the source's 3 schemas and 5 tables, 4 of 5 key tables have rows, "
        f"{size_text(restored_size)} ({ratio:.2f} of the source)"
    )
    assert v.figures["key_tables"]["ledger.entries"] == 100000
    assert v.figures["key_tables"]["ledger.pending"] == 0


def test_configured_key_tables_are_counted(lab, restored):
    source = source_profile(lab, KEY_TABLES)
    assert [k[:2] for k in source.key_tables] == list(KEY_TABLES)
    v = verdict(lab, restored, source)
    assert v.ok and v.figures["key_tables"] == {"ledger.accounts": 1000, "ledger.entries": 100000, "audit.events": 5000}


def test_counts_are_bounded(lab, restored, monkeypatch):
    monkeypatch.setattr(dbprofile, "COUNT_CAP", 50_000)
    v = verdict(lab, restored)
    assert v.ok and v.figures["key_tables"]["ledger.entries"] == 50_000


def test_a_configured_key_table_missing_in_the_source_is_a_config_error(lab):
    with pytest.raises(errors.ConfigError, match=r"key table\(s\) ledger.ghosts \(RESTORE_KEY_TABLES\) do not exist"):
        source_profile(lab, (("ledger", "entries"), ("ledger", "ghosts")))


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("DROP TABLE audit.events", f"table audit.events is missing from the restored {DB_NAME}"),
        ("DROP SCHEMA audit CASCADE", f"schema audit is missing from the restored {DB_NAME}"),
        (
            "DROP TABLE public.settings; DROP TABLE ledger.pending",
            f"2 tables are missing from the restored {DB_NAME}: ledger.pending, public.settings",
        ),
        ("TRUNCATE audit.events", "key table audit.events is empty in the restore but has rows in the source"),
        (
            "TRUNCATE audit.events, public.settings",
            "2 key tables are empty in the restore but have rows in the source: audit.events, public.settings",
        ),
    ],
)
def test_each_breakage_fails_with_its_reason(lab, restored, breakage, reason):
    restored.sql(breakage, dbname=DB_NAME)
    v = verdict(lab, restored)
    assert not v.ok
    assert v.reason == reason
    assert v.failures == (reason,)


def test_a_tiny_database_fails_the_size_check(lab, restored):
    # Same schemas and tables, a row left in each, most of the data gone: only the size is wrong.
    restored.sql("DELETE FROM ledger.entries WHERE id > 1; DELETE FROM audit.events WHERE id > 1", dbname=DB_NAME)
    restored.sql("VACUUM FULL", dbname=DB_NAME)
    v = verdict(lab, restored)
    restored_size, source_size = sizes(lab, restored)
    ratio = restored_size / source_size
    assert ratio < 0.5
    assert v.reason == (
        f"the restored {DB_NAME} is {size_text(restored_size)} against {size_text(source_size)} in the source "
        f"(ratio {ratio:.2f}, expected 0.50 to 2.00)"
    )
    assert v.failures == (v.reason,)
    # the band is configurable: a looser one accepts it
    assert verdict(lab, restored, ratio=(0.1, 2.0)).ok


def test_a_missing_database_fails(lab, restored):
    restored.psql(f"DROP DATABASE {DB_NAME} WITH (FORCE)")
    v = verdict(lab, restored)
    assert (v.ok, v.reason) == (False, f"database {DB_NAME} does not exist in the restored cluster")


# ---- the verify action end to end: moto for RDS, the stand-in for the restored cluster ------------


@pytest.fixture
def verifier_env(aws, lab, monkeypatch):
    env = create_source(MASTER_USER)
    secret = make_secret(lab.sandbox, name="hapg-test/db/source")
    ep = str(lab.source.endpoint)
    env.update(
        {
            Env.DB_SECRET_ARN: secret,
            Env.DB_NAME: DB_NAME,
            Env.DB_WRITER_ENDPOINT: ep,
            Env.DB_READER_ENDPOINT: ep,
            Env.DB_SSL_ROOT_CERT: str(lab.sandbox.tls.ca_cert),
            Env.DB_CONNECT_TIMEOUT: "3",
            Env.CREDENTIALS_WAIT_S: "3",
            Env.METRICS_NAMESPACE: "HAPostgreSQL",
        }
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    return env


def restored_in_moto(port: LocalRestore, request: Request) -> None:
    rds = boto3.client("rds")
    snap = rds.describe_db_cluster_snapshots(DBClusterIdentifier=port.cluster_id, SnapshotType="automated")
    from hapg.restore_port import RestoreSpec

    s = load_settings()
    port.restore_cluster(
        RestoreSpec(
            request.cluster_id,
            snap["DBClusterSnapshots"][0]["DBClusterSnapshotIdentifier"],
            s.subnet_group,
            s.security_group_id,
            s.kms_key_arn,
            s.cluster_parameter_group,
            (("hapg:restore-test", request.run_id), ("hapg:restore-source", port.cluster_id)),
        )
    )


def test_verify_logs_in_with_a_fresh_password_not_the_snapshot_time_one(verifier_env, lab, restored):
    # The master password was rotated on the source after the "snapshot": the restore still has the
    # old one. verify must neither need it nor the current secret: it sets its own.
    lab.source.sql(f"ALTER ROLE {MASTER_USER} PASSWORD 'rotated-since-the-snapshot'")
    old = lab.master_password
    psycopg2.connect(restored.conninfo(MASTER_USER, old, dbname=DB_NAME)).close()  # the restore has the old one

    port = LocalRestore(verifier_env[Env.CLUSTER_ID], verifier_env[Env.RESTORE_PREFIX], restored)
    runtime.override(restore=port)
    execution = "arn:aws:states:us-east-1:123456789012:execution:hapg-test-backup-verification:run-1"
    request = Request(execution, verifier_env[Env.RESTORE_PREFIX], "test", time.time(), None)
    restored_in_moto(port, request)
    result = invoke(
        "backup_verifier",
        {"action": "verify", "request": request.to_dict(), "profile": source_profile(lab).to_dict()},
    )
    assert result["ok"] is True and result["reason"].startswith("restore verified")
    (password,) = port.passwords
    assert password != old and len(password) >= 32
    assert port.calls == [("restore", request.cluster_id), ("set_master_password", request.cluster_id)]
    assert password not in repr(result)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(restored.conninfo(MASTER_USER, old, dbname=DB_NAME))
    psycopg2.connect(restored.conninfo(MASTER_USER, password, dbname=DB_NAME)).close()


def test_verify_fails_with_the_reason_when_the_restore_is_broken(verifier_env, lab, restored):
    restored.sql("DROP TABLE ledger.accounts", dbname=DB_NAME)
    port = LocalRestore(verifier_env[Env.CLUSTER_ID], verifier_env[Env.RESTORE_PREFIX], restored)
    runtime.override(restore=port)
    execution = "arn:aws:states:us-east-1:123456789012:execution:hapg-test-backup-verification:run-2"
    request = Request(execution, verifier_env[Env.RESTORE_PREFIX], "test", time.time(), None)
    restored_in_moto(port, request)
    event = {"action": "verify", "request": request.to_dict(), "profile": source_profile(lab).to_dict()}
    with pytest.raises(
        errors.BackupCheckFailed, match=f"^table ledger.accounts is missing from the restored {DB_NAME}$"
    ):
        invoke("backup_verifier", event)


def test_verify_gives_up_logging_in_after_the_wait(verifier_env, lab, restored):
    class NeverApplies(LocalRestore):
        def set_master_password(self, cluster_id, username, password):  # RDS never applies it
            self.passwords.append(password)

    port = NeverApplies(verifier_env[Env.CLUSTER_ID], verifier_env[Env.RESTORE_PREFIX], restored)
    runtime.override(restore=port)
    execution = "arn:aws:states:us-east-1:123456789012:execution:hapg-test-backup-verification:run-3"
    request = Request(execution, verifier_env[Env.RESTORE_PREFIX], "test", time.time(), None)
    restored_in_moto(port, request)
    now = [time.time()]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    d = dataclasses.replace(verifier.deps(), clock=lambda: now[0], sleep=sleep)
    with pytest.raises(errors.BackupCheckFailed, match="could not log in to the restored cluster .* within 3 s") as exc:
        restore.verify(request, source_profile(lab).to_dict(), d)
    assert sleeps == [restore.LOGIN_RETRY_S], "tried, waited, tried again, gave up at the deadline"
    assert str(exc.value).endswith(": authentication failed")
    assert port.passwords[0] not in str(exc.value)
