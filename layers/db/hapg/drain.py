"""Graceful drain of the writer before a switchover, and its undo on the new writer.

We block *application roles* (CONNECTION LIMIT 0), not the database: on RDS the master user is
not a superuser, so a database-level limit would also lock out this orchestrator and the undo.
The block replicates to the new writer, so every blocked role and its previous limit is kept in
`hapg.blocked_roles` on the writer: the undo reads it there after promotion (idempotent, and it
survives a lost execution state), and verifies that nothing is left blocked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg2.errors
from psycopg2 import sql

from hapg import errors, runtime, telemetry
from hapg.health import BLOCKED_ROLES as BLOCKED
from hapg.health import blocked_table_exists, identify
from hapg.models import Endpoint, to_dict
from hapg.names import DB_SCHEMA, Action, Function, Metric
from hapg.pg import Database, guarded, query, query_one
from hapg.steps import Step, timed
from hapg.telemetry import child_logger

log = child_logger()

POLL_S = 0.02

# Application roles: can log in, are not superusers, replication or RDS/internal roles, are not us.
_APP_ROLES = """
SELECT rolname, rolconnlimit FROM pg_roles
 WHERE rolcanlogin AND NOT rolsuper AND NOT rolreplication
   AND rolname <> current_user AND rolname <> 'rdsadmin'
   AND rolname NOT LIKE 'rds\\_%%' AND rolname NOT LIKE 'pg\\_%%'
 ORDER BY rolname
"""
_CREATE = sql.SQL(
    """CREATE SCHEMA IF NOT EXISTS {schema};
       CREATE TABLE IF NOT EXISTS {table} (
         role name PRIMARY KEY, previous_limit int NOT NULL,
         blocked_at timestamptz NOT NULL DEFAULT now(), blocked_by text NOT NULL)"""
).format(schema=sql.Identifier(DB_SCHEMA), table=BLOCKED)
# keeps the *first* previous limit: a re-run must not record 0 as "previous"
_REMEMBER = sql.SQL(
    "INSERT INTO {table} (role, previous_limit, blocked_by) VALUES (%s, %s, %s) ON CONFLICT (role) DO NOTHING"
).format(table=BLOCKED)
_BLOCK = "ALTER ROLE {} CONNECTION LIMIT 0"
_SESSIONS = """
SELECT pid, state, xact_start FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND usename = ANY(%s)
"""
_TERMINATE = "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest(%s::int[]) AS pid"


@dataclass(frozen=True)
class DrainResult:
    reachable: bool
    endpoint: str
    blocked_roles: tuple[str, ...] = ()
    in_flight: int = 0  # transactions running when the block went up
    finished: int = 0  # of those, finished within the grace period
    terminated: int = 0
    waited_ms: float = 0.0
    reason: str = ""
    via_proxy: bool = False


@dataclass(frozen=True)
class RestoreResult:
    restored: tuple[str, ...]
    verified: bool
    writer: str | None


def drain_connections(
    db: Database, endpoint: Endpoint, grace_s: float, blocked_by: str, via_proxy: bool = False
) -> DrainResult:
    """Block app roles, let in-flight transactions finish within `grace_s`, terminate the rest.

    `via_proxy`: applications connect through RDS Proxy, which keeps client connections open across
    the failover and re-targets the new writer itself. Blocking the app roles would also stop the
    proxy from opening its backend connections (it logs in as the app user), and terminating them
    only forces reconnects the proxy exists to avoid: so only in-flight transactions are awaited."""
    try:
        conn = db.open(endpoint, timeout_s=min(db.settings.connect_timeout_s, 3.0))
    except (errors.DatabaseUnavailable, errors.DatabaseTimeout) as exc:
        log.warning("writer unreachable; nothing to drain", extra={"endpoint": str(endpoint), "cause": str(exc)})
        return DrainResult(False, str(endpoint), reason=f"writer unreachable: {exc}")
    with guarded(conn, f"drain {endpoint}"):
        _checkpoint(conn)
        if via_proxy:
            return _await_only(conn, endpoint, grace_s)
        roles = _block(conn, blocked_by)
        started = time.monotonic()
        sessions = query(conn, _SESSIONS, (list(roles),))
        idle = [pid for pid, state, xact in sessions if xact is None]
        in_flight = {pid: xact for pid, _, xact in sessions if xact is not None}
        terminated = _terminate(conn, idle)  # idle sessions would only start new transactions
        finished = _await_in_flight(conn, in_flight, started + grace_s)
        rest = [pid for pid, _, _ in query(conn, _SESSIONS, (list(roles),))]
        terminated += _terminate(conn, rest)
        waited = round((time.monotonic() - started) * 1000, 1)
    reason = f"blocked {len(roles)} role(s); {finished}/{len(in_flight)} in-flight finished; {terminated} terminated"
    return DrainResult(True, str(endpoint), tuple(roles), len(in_flight), finished, terminated, waited, reason)


def _await_only(conn, endpoint: Endpoint, grace_s: float) -> DrainResult:
    started = time.monotonic()
    roles = [name for name, _ in query(conn, _APP_ROLES)]
    sessions = query(conn, _SESSIONS, (roles,))
    in_flight = {pid: xact for pid, _, xact in sessions if xact is not None}
    finished = _await_in_flight(conn, in_flight, started + grace_s)
    waited = round((time.monotonic() - started) * 1000, 1)
    reason = (
        f"clients connect through RDS Proxy: nothing blocked or terminated; "
        f"{finished}/{len(in_flight)} in-flight finished"
    )
    return DrainResult(True, str(endpoint), (), len(in_flight), finished, 0, waited, reason, via_proxy=True)


def _checkpoint(conn) -> None:
    """On plain PostgreSQL, flush dirty pages now so the old writer's shutdown checkpoint, which
    sits inside the write outage, is short (Patroni does the same). Aurora has no checkpoints."""
    aurora, _, _ = identify(conn)
    if aurora:
        return
    try:
        query(conn, "CHECKPOINT")
    except psycopg2.errors.InsufficientPrivilege:  # needs superuser or pg_checkpoint: skip, not fatal
        log.info("CHECKPOINT not permitted; skipped")


def _block(conn, blocked_by: str) -> list[str]:
    with conn:  # one transaction: remember, then block
        conn.autocommit = False
        query(conn, _CREATE)
        roles = query(conn, _APP_ROLES)
        for name, limit in roles:
            query(conn, _REMEMBER, (name, limit, blocked_by))
            query(conn, sql.SQL(_BLOCK).format(sql.Identifier(name)))
    conn.autocommit = True
    return [name for name, _ in roles]


def _await_in_flight(conn, in_flight: dict[int, object], deadline: float) -> int:
    """Wait until each transaction that was running has ended (or the deadline passes)."""
    pending = dict(in_flight)
    while pending and time.monotonic() < deadline:
        rows = query(conn, "SELECT pid, xact_start FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pending),))
        still = {pid: xact for pid, xact in rows if xact is not None and xact == pending.get(pid)}
        pending = still
        if pending:
            time.sleep(POLL_S)
    return len(in_flight) - len(pending)


def _terminate(conn, pids: list[int]) -> int:
    return int(query_one(conn, _TERMINATE, (pids,))[0]) if pids else 0


def restore_connections(db: Database) -> RestoreResult:
    """On the current writer: put every blocked role back to its previous limit, then verify."""
    with db.session(db.settings.writer, target_session_attrs="read-write") as conn:
        _, writer, _ = identify(conn)
        if not blocked_table_exists(conn):
            return RestoreResult((), True, writer)
        conn.autocommit = False
        with conn:
            rows = query(conn, sql.SQL("SELECT role, previous_limit FROM {t} FOR UPDATE").format(t=BLOCKED))
            for role, limit in rows:
                query(
                    conn,
                    sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(sql.Identifier(role), sql.Literal(limit)),
                )
            query(conn, sql.SQL("DELETE FROM {t}").format(t=BLOCKED))
        conn.autocommit = True
        _verify_restored(conn, dict(rows))
    return RestoreResult(tuple(r for r, _ in rows), True, writer)


def _verify_restored(conn, expected: dict[str, int]) -> None:
    left = query_one(conn, sql.SQL("SELECT count(*) FROM {t}").format(t=BLOCKED))[0]
    limits = dict(query(conn, "SELECT rolname, rolconnlimit FROM pg_roles WHERE rolname = ANY(%s)", (list(expected),)))
    wrong = [r for r, lim in expected.items() if limits.get(r) != lim]
    if left or wrong:
        raise errors.VerificationFailed(
            f"connection block not undone: {left} row(s) left, roles still limited: {wrong}"
        )


ACTIONS = (Action.DRAIN, Action.RESTORE)


def run(step: Step) -> dict:
    """connection_drainer's one entry point."""
    started = time.time()
    s = runtime.settings()
    db = runtime.database(Function.CONNECTION_DRAINER)
    if step.action == Action.RESTORE:
        return timed(to_dict(restore_connections(db)), started)
    raw = step.get("endpoint", str, required=False)
    if raw is None:  # the plan found no writer endpoint: nothing reachable to drain
        return timed(to_dict(DrainResult(False, "-", reason="no writer endpoint known")), started)
    execution = step.get("execution", str, required=False) or "manual"
    endpoint = Endpoint.parse(raw, s.db.writer.port)
    result = drain_connections(db, endpoint, s.drain_grace_s, execution, via_proxy=s.db.proxy is not None)
    telemetry.emit(
        s.cluster_id,
        {
            Metric.CONNECTIONS_TERMINATED: (float(result.terminated), telemetry.MetricUnit.Count),
            Metric.DRAIN_DURATION: (result.waited_ms, telemetry.MetricUnit.Milliseconds),
        },
    )
    return timed(to_dict(result), started)
