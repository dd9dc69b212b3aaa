"""Drain and its undo against a real PostgreSQL primary + standby (role blocks replicate)."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
from hapg import drain, errors, health, runtime
from hapg.drain import drain_connections, restore_connections
from hapg.models import Endpoint
from support import connect_as

APP = "drain_app"
PASSWORD = "drain-app-pw"
GATE = 4242  # advisory lock key: an in-flight transaction waits on it until the drain awaits it


@pytest.fixture
def app_role(function_env, pg_pair):
    primary = pg_pair.primary
    primary.sql(f"DROP ROLE IF EXISTS {APP}")
    primary.sql(f"CREATE ROLE {APP} LOGIN PASSWORD '{PASSWORD}' CONNECTION LIMIT 7")
    yield APP
    restore_connections(runtime.database("test"))
    primary.sql(f"DROP ROLE IF EXISTS {APP}")


def blocked_on_writer(db) -> list[str]:
    with db.session(db.settings.writer) as conn:
        return health.blocked_roles(conn)


def app_connect(node):
    return connect_as(node, APP, PASSWORD)


def limit(node) -> int:
    return node.sql("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (APP,))[0][0]


def wait_in_transaction(node, pid: int, waiting_on_lock: bool = False, timeout: float = 30) -> None:
    """Until the server shows session `pid` running a statement inside a transaction (what the drain
    counts as in flight), optionally blocked on a lock."""
    deadline = time.monotonic() + timeout
    while True:
        rows = node.sql(
            "SELECT state = 'active' AND xact_start IS NOT NULL AND (NOT %s OR wait_event_type = 'Lock')"
            " FROM pg_stat_activity WHERE pid = %s",
            (waiting_on_lock, pid),
        )
        if rows and rows[0][0]:
            return
        assert time.monotonic() < deadline, f"session {pid} not in a transaction after {timeout}s"
        time.sleep(0.01)


class Gate:
    """Keeps a transaction in flight until the drain awaits it, so it can neither end before the drain
    sees it nor outlast the grace period: the transaction waits on an advisory lock this admin session
    holds, released as the drain starts waiting for in-flight transactions."""

    def __init__(self, node, monkeypatch):
        self.conn = node.connect("financialdb")
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        await_in_flight = drain._await_in_flight

        def open_then_await(conn, in_flight, deadline):
            self.release()
            return await_in_flight(conn, in_flight, deadline)

        monkeypatch.setattr(drain, "_await_in_flight", open_then_await)

    def release(self) -> None:
        if not self.conn.closed:
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
            self.conn.close()


def start_in_flight(node, conn, done: threading.Event | None = None) -> threading.Thread:
    """`conn` runs a transaction that waits for the gate; returns once the server shows it in flight."""

    def run():
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN; SELECT pg_advisory_xact_lock(%s); COMMIT", (GATE,))
        except psycopg2.Error:
            return
        if done is not None:
            done.set()  # committed

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_in_transaction(node, conn.get_backend_pid(), waiting_on_lock=True)
    return t


def test_drain_blocks_new_logins_finishes_in_flight_terminates_the_rest(app_role, pg_pair, monkeypatch):
    db = runtime.database("test")
    idle = app_connect(pg_pair.primary)
    busy = app_connect(pg_pair.primary)
    done = threading.Event()
    gate = Gate(pg_pair.primary, monkeypatch)
    try:
        t = start_in_flight(pg_pair.primary, busy, done)
        result = drain_connections(db, pg_pair.primary.endpoint, grace_s=5, blocked_by="test-exec")
    finally:
        gate.release()
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
    wait_in_transaction(pg_pair.primary, slow.get_backend_pid())
    result = drain_connections(db, pg_pair.primary.endpoint, grace_s=0.3, blocked_by="test-exec")
    t.join(5)
    assert result.in_flight == 1 and result.finished == 0 and result.terminated == 1
    assert result.waited_ms >= 300, "the grace period was given"
    assert not t.is_alive() and _dead(slow), "the straggler was terminated, not awaited"


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
    assert blocked_on_writer(db) == [APP]
    restored = restore_connections(db)
    assert restored.restored == (APP,) and restored.verified and restored.writer == "writer"
    assert limit(pg_pair.primary) == 7, "back to its own limit, not to -1 and not to 0"
    assert blocked_on_writer(db) == []
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


def test_through_rds_proxy_nothing_is_blocked_or_terminated(app_role, pg_pair, monkeypatch):
    """The proxy logs in as the app user and keeps client connections across the failover."""
    db = runtime.database("test")
    client = app_connect(pg_pair.primary)
    gate = Gate(pg_pair.primary, monkeypatch)
    try:
        t = start_in_flight(pg_pair.primary, client)
        result = drain_connections(db, pg_pair.primary.endpoint, grace_s=3, blocked_by="x", via_proxy=True)
    finally:
        gate.release()
    t.join(5)
    assert result.via_proxy and result.blocked_roles == () and result.terminated == 0
    assert result.in_flight == 1 and result.finished == 1
    assert limit(pg_pair.primary) == 7 and blocked_on_writer(db) == []
    assert not _dead(client), "the client's session survived the drain"
    assert "through RDS Proxy" in result.reason
