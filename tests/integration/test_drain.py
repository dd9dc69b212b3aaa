"""Drain and its undo against a real PostgreSQL primary + standby (role blocks replicate)."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
from hapg import errors, runtime
from hapg.drain import blocked_roles, drain_connections, restore_connections
from hapg.models import Endpoint
from support import connect_as

APP = "drain_app"
PASSWORD = "drain-app-pw"


@pytest.fixture
def app_role(function_env, pg_pair):
    primary = pg_pair.primary
    primary.sql(f"DROP ROLE IF EXISTS {APP}")
    primary.sql(f"CREATE ROLE {APP} LOGIN PASSWORD '{PASSWORD}' CONNECTION LIMIT 7")
    yield APP
    restore_connections(runtime.database("test"))
    primary.sql(f"DROP ROLE IF EXISTS {APP}")


def app_connect(node):
    return connect_as(node, APP, PASSWORD)


def limit(node) -> int:
    return node.sql("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (APP,))[0][0]


def test_drain_blocks_new_logins_finishes_in_flight_terminates_the_rest(app_role, pg_pair):
    db = runtime.database("test")
    idle = app_connect(pg_pair.primary)
    busy = app_connect(pg_pair.primary)
    done = threading.Event()

    def in_flight():
        with busy.cursor() as cur:
            cur.execute("BEGIN; SELECT pg_sleep(0.3); COMMIT")
        done.set()

    t = threading.Thread(target=in_flight)
    t.start()
    time.sleep(0.1)
    result = drain_connections(db, pg_pair.primary.endpoint, grace_s=5, blocked_by="test-exec")
    t.join(5)
    assert result.reachable and APP in result.blocked_roles
    assert "hapg_admin" not in result.blocked_roles, "never blocks ourselves"
    assert result.in_flight == 1 and result.finished == 1, "the in-flight transaction was allowed to finish"
    assert done.is_set()
    assert result.terminated == 2, "idle + the finished session"
    assert idle.closed or _dead(idle)
    with pytest.raises(psycopg2.OperationalError, match="too many connections for role"):
        app_connect(pg_pair.primary)
    # the block replicated: the standby (the next writer) has it too
    assert limit(pg_pair.standby) == 0


def _dead(conn) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except psycopg2.Error:
        return True
    return False


def test_grace_period_is_bounded_then_stragglers_are_terminated(app_role, pg_pair):
    db = runtime.database("test")
    slow = app_connect(pg_pair.primary)
    t = threading.Thread(target=lambda: _swallow(slow, "SELECT pg_sleep(30)"))
    t.start()
    time.sleep(0.1)
    result = drain_connections(db, pg_pair.primary.endpoint, grace_s=0.3, blocked_by="test-exec")
    t.join(5)
    assert result.in_flight == 1 and result.finished == 0 and result.terminated == 1
    assert 300 <= result.waited_ms < 5000


def _swallow(conn, sql):
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except psycopg2.Error:
        pass


def test_drain_twice_keeps_the_original_limit_and_restore_undoes_and_verifies(app_role, pg_pair):
    db = runtime.database("test")
    drain_connections(db, pg_pair.primary.endpoint, grace_s=0.1, blocked_by="a")
    drain_connections(db, pg_pair.primary.endpoint, grace_s=0.1, blocked_by="b")  # re-delivered step
    assert blocked_roles(db) == [APP]
    restored = restore_connections(db)
    assert restored.restored == (APP,) and restored.verified and restored.writer == "writer"
    assert limit(pg_pair.primary) == 7, "back to its own limit, not to -1 and not to 0"
    assert blocked_roles(db) == []
    assert restore_connections(db).restored == (), "restore is idempotent"
    app_connect(pg_pair.primary).close()


def test_unreachable_writer_is_reported_not_raised(function_env):
    result = drain_connections(runtime.database("test"), Endpoint("127.0.0.1", 1), grace_s=1, blocked_by="x")
    assert result.reachable is False and "writer unreachable" in result.reason


def test_restore_without_a_reachable_writer_raises_retryable(function_env, monkeypatch):
    monkeypatch.setenv("DB_WRITER_ENDPOINT", "127.0.0.1:1")
    runtime.reset()
    with pytest.raises(errors.DatabaseUnavailable):
        restore_connections(runtime.database("test"))


def test_through_rds_proxy_nothing_is_blocked_or_terminated(app_role, pg_pair):
    """The proxy logs in as the app user and keeps client connections across the failover."""
    db = runtime.database("test")
    client = app_connect(pg_pair.primary)
    t = threading.Thread(target=lambda: _swallow(client, "BEGIN; SELECT pg_sleep(0.2); COMMIT"))
    t.start()
    time.sleep(0.05)
    result = drain_connections(db, pg_pair.primary.endpoint, grace_s=3, blocked_by="x", via_proxy=True)
    t.join(5)
    assert result.via_proxy and result.blocked_roles == () and result.terminated == 0
    assert result.in_flight == 1 and result.finished == 1
    assert limit(pg_pair.primary) == 7 and blocked_roles(db) == []
    assert not _dead(client), "the client's session survived the drain"
    assert "through RDS Proxy" in result.reason
