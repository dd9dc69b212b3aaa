"""Health checks: writer, write probe, reader, per-instance lag, connections, TPS.

`check_health` gathers probes (I/O); `judge` turns them into a verdict (pure).
Scheduled runs never raise on a sick database: they return "unhealthy" with the cause.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field

import psycopg2.errors
from psycopg2 import sql

from hapg import errors
from hapg.models import ConnectionStats, HealthReport, HealthRequest, ReplicaLag, max_known_lag
from hapg.names import DB_SCHEMA, HealthMode, Metric
from hapg.pg import Database, guarded, open_connection, query, query_one
from hapg.telemetry import MetricUnit, child_logger, emit, emit_per_instance, metrics

log = child_logger()

HEARTBEAT = sql.Identifier(DB_SCHEMA, "heartbeat")
BLOCKED_ROLES = sql.Identifier(DB_SCHEMA, "blocked_roles")  # written by hapg.drain; it replicates

_IS_AURORA = "SELECT to_regproc('aurora_replica_status') IS NOT NULL"
_AURORA_IDENTITY = "SELECT aurora_db_instance_identifier()::text, pg_is_in_recovery()"
# plain PostgreSQL (the local pair): instances are named by cluster_name
_PG_IDENTITY = """
SELECT COALESCE(NULLIF(current_setting('cluster_name'), ''),
                inet_server_addr()::text || ':' || current_setting('port')),
       pg_is_in_recovery()
"""
_AURORA_LAG = """
SELECT server_id, replica_lag_in_msec::float8
  FROM aurora_replica_status() WHERE session_id <> 'MASTER_SESSION_ID'
"""
# replay_lag is NULL until PostgreSQL has a timing sample (and again when idle). A streaming
# synchronous standby under remote_apply has applied every acknowledged commit, so 0 is true there.
_PG_LAG = """
SELECT application_name, state,
       CASE WHEN replay_lsn = pg_current_wal_lsn() THEN 0
            WHEN replay_lag IS NOT NULL THEN EXTRACT(epoch FROM replay_lag) * 1000
            WHEN state = 'streaming' AND sync_state IN ('sync', 'quorum')
                 AND current_setting('synchronous_commit') = 'remote_apply' THEN 0
       END::float8
  FROM pg_stat_replication
"""
_CONNECTIONS = """
SELECT count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE state = 'idle'),
       count(*) FILTER (WHERE state LIKE 'idle in transaction%%'),
       count(*) FILTER (WHERE state IS NULL OR state NOT LIKE 'idle%%' AND state <> 'active'),
       current_setting('max_connections')::int
  FROM pg_stat_activity WHERE backend_type = 'client backend'
"""
_XACTS = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
_CREATE = sql.SQL(
    """CREATE SCHEMA IF NOT EXISTS {schema};
       CREATE TABLE IF NOT EXISTS {table} (
         id int PRIMARY KEY CHECK (id = 1), beat_at timestamptz NOT NULL, token text NOT NULL,
         writer text NOT NULL, xact_total bigint NOT NULL, sampled_at timestamptz NOT NULL)"""
).format(schema=sql.Identifier(DB_SCHEMA), table=HEARTBEAT)
# One round trip: upsert the heartbeat and return the previous TPS sample (CTE sees the old row).
_BEAT = sql.SQL(
    """WITH prev AS (SELECT writer, xact_total, sampled_at FROM {table} WHERE id = 1)
       INSERT INTO {table} AS h (id, beat_at, token, writer, xact_total, sampled_at)
       VALUES (1, now(), %(token)s, %(writer)s, %(xacts)s, clock_timestamp())
       ON CONFLICT (id) DO UPDATE SET beat_at = EXCLUDED.beat_at, token = EXCLUDED.token,
         writer = EXCLUDED.writer, xact_total = EXCLUDED.xact_total, sampled_at = EXCLUDED.sampled_at
       RETURNING (SELECT writer FROM prev), (SELECT xact_total FROM prev),
                 EXTRACT(epoch FROM clock_timestamp() - (SELECT sampled_at FROM prev))::float8"""
).format(table=HEARTBEAT)
_READ_TOKEN = sql.SQL("SELECT token FROM {table} WHERE id = 1").format(table=HEARTBEAT)
_READER = "SELECT EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000"


@dataclass(frozen=True)
class Expectation:
    """What verify mode must see after a promotion."""

    writer: str | None = None
    replicas: int | None = None


@dataclass
class WriterProbe:
    error: str | None = None
    read_only: bool = False  # the writer endpoint reached a node that refuses writes
    instance: str | None = None
    in_recovery: bool = False
    write_ms: float | None = None
    token: str | None = None
    replicas: list[ReplicaLag] = field(default_factory=list)
    connections: ConnectionStats | None = None
    tps: float | None = None
    blocked: list[str] = field(default_factory=list)  # application roles a drain left blocked


@dataclass
class ReaderProbe:
    error: str | None = None
    instance: str | None = None
    in_recovery: bool = False
    replay_age_ms: float | None = None
    saw_token: bool | None = None  # verify mode only


def identify(conn) -> tuple[bool, str, bool]:
    """(is Aurora, instance id, in recovery) of the server behind `conn`."""
    aurora = bool(query_one(conn, _IS_AURORA)[0])
    instance, in_recovery = query_one(conn, _AURORA_IDENTITY if aurora else _PG_IDENTITY)
    return aurora, str(instance), bool(in_recovery)


def probe_writer(db: Database) -> WriterProbe:
    out = WriterProbe()
    try:
        with db.session(db.settings.writer, target_session_attrs="read-write") as conn:
            aurora, out.instance, out.in_recovery = identify(conn)
            if out.in_recovery:
                return out
            out.token = uuid.uuid4().hex
            out.write_ms, out.tps = _beat(conn, out.instance, out.token)
            out.replicas = _replicas(conn, aurora)
            out.connections = ConnectionStats(*query_one(conn, _CONNECTIONS))
            out.blocked = blocked_roles(conn)
    except errors.HapgError as exc:
        out.error = str(exc)
        out.read_only = isinstance(exc, errors.WriterReadOnly)
    return out


def blocked_table_exists(conn) -> bool:
    return query_one(conn, "SELECT to_regclass(%s)", (f"{DB_SCHEMA}.blocked_roles",))[0] is not None


def blocked_roles(conn) -> list[str]:
    """Roles the drainer blocked (CONNECTION LIMIT 0) that no restore has put back yet."""
    if not blocked_table_exists(conn):
        return []
    return [r for (r,) in query(conn, sql.SQL("SELECT role FROM {t} ORDER BY role").format(t=BLOCKED_ROLES))]


def replica_lags(db: Database) -> dict[str, float | None]:
    """Replica lag per instance as the writer sees it (the coordinator's snapshot uses this)."""
    with db.session(db.settings.writer, target_session_attrs="read-write") as conn:
        aurora = bool(query_one(conn, _IS_AURORA)[0])
        return {r.instance_id: r.lag_ms for r in _replicas(conn, aurora)}


def _beat(conn, writer: str, token: str) -> tuple[float, float | None]:
    xacts = query_one(conn, _XACTS)[0]
    params = {"token": token, "writer": writer, "xacts": xacts}
    started = time.perf_counter()
    try:
        prev_writer, prev_xacts, seconds = query_one(conn, _BEAT, params)
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
        # first run on a fresh database: the checker creates the table it owns
        query(conn, _CREATE)
        started = time.perf_counter()
        prev_writer, prev_xacts, seconds = query_one(conn, _BEAT, params)
    write_ms = round((time.perf_counter() - started) * 1000, 2)
    tps = None
    if prev_writer == writer and prev_xacts is not None and seconds and seconds > 0 and xacts >= prev_xacts:
        tps = round((xacts - prev_xacts) / seconds, 2)
    return write_ms, tps


def _replicas(conn, aurora: bool) -> list[ReplicaLag]:
    if aurora:
        return [ReplicaLag(str(sid), lag, "aurora") for sid, lag in query(conn, _AURORA_LAG)]
    return [ReplicaLag(str(name), lag, str(state)) for name, state, lag in query(conn, _PG_LAG)]


def probe_reader(db: Database, token: str | None, wait_s: float) -> ReaderProbe:
    out = ReaderProbe()
    try:
        with db.session(db.settings.reader, target_session_attrs="prefer-standby") as conn:
            _, out.instance, out.in_recovery = identify(conn)
            if out.in_recovery:
                out.replay_age_ms = query_one(conn, _READER)[0]
            if token is not None:
                out.saw_token = _wait_for_token(conn, token, wait_s)
    except errors.HapgError as exc:
        out.error = str(exc)
    return out


def _wait_for_token(conn, token: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        row = query_one(conn, _READ_TOKEN)
        if row and row[0] == token:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def judge(writer: WriterProbe, reader: ReaderProbe, max_lag_ms: float, expect: Expectation) -> tuple[bool, bool, str]:
    """(writer_ok, healthy, reason sentence). Pure."""
    if writer.error:
        stale = " (a reader: DNS not yet updated?)" if writer.read_only else ""
        return False, False, f"writer endpoint failed{stale}: {writer.error}"
    if writer.in_recovery:
        return False, False, f"writer endpoint reached {writer.instance}, which is in recovery"
    if expect.writer and writer.instance != expect.writer:
        return False, False, f"writer endpoint reached {writer.instance}, expected {expect.writer}"
    problems = []
    if reader.error:
        problems.append(f"reader endpoint failed: {reader.error}")
    if writer.blocked:
        problems.append(
            f"application role(s) {', '.join(writer.blocked)} still blocked on {writer.instance} by a drain "
            "(expected during a switchover; otherwise undo it: runbook section 5, step 3)"
        )
    if reader.saw_token is False:
        problems.append(f"reader {reader.instance} did not see the write probe in time")
    lagging = [r for r in writer.replicas if r.lag_ms is None or r.lag_ms > max_lag_ms]
    if lagging:
        names = ", ".join(r.instance_id for r in lagging)
        problems.append(f"lag over {max_lag_ms:g} ms on {names}")
    if expect.replicas is not None and len(writer.replicas) < expect.replicas:
        problems.append(f"{len(writer.replicas)} of {expect.replicas} replicas are replicating")
    if problems:
        return True, False, "; ".join(problems)
    most = max_known_lag(writer.replicas)
    lag_text = f", max lag {most:.0f} ms" if most is not None else ""
    return (
        True,
        True,
        (
            f"healthy: {writer.instance} accepted a write in {writer.write_ms:.1f} ms; "
            f"{len(writer.replicas)} replica(s){lag_text}; reader {reader.instance} answered"
        ),
    )


@dataclass
class ProxyProbe:
    error: str | None = None
    latency_ms: float | None = None


def probe_proxy(db: Database, credentials) -> ProxyProbe:
    """Through RDS Proxy (IAM auth, TLS): a session that lands on the writer, and its latency."""
    endpoint = db.settings.proxy
    out = ProxyProbe()
    started = time.perf_counter()
    try:
        settings = dataclasses.replace(db.settings, sslrootcert=db.settings.proxy_sslrootcert)
        conn = open_connection(endpoint, credentials(), settings, app=f"{db.app}-proxy")
        with guarded(conn, f"proxy {endpoint}"):
            if query_one(conn, "SELECT pg_is_in_recovery()")[0]:
                out.error = "the proxy routed to a node in recovery"
        out.latency_ms = round((time.perf_counter() - started) * 1000, 2)
    except errors.HapgError as exc:
        out.error = str(exc)
    return out


def check_health(
    db: Database, mode: str, max_lag_ms: float, expect: Expectation | None = None, proxy_credentials=None
) -> HealthReport:
    if mode not in HealthMode.ALL:
        raise errors.InvalidInput(f"unknown mode {mode!r}; expected one of {', '.join(HealthMode.ALL)}")
    expect = expect or Expectation()
    started = time.perf_counter()
    writer = probe_writer(db)
    verify_token = writer.token if mode == HealthMode.VERIFY else None
    reader = probe_reader(db, verify_token, wait_s=db.settings.connect_timeout_s)
    writer_ok, healthy, reason = judge(writer, reader, max_lag_ms, expect)
    proxy = probe_proxy(db, proxy_credentials) if db.settings.proxy and proxy_credentials else None
    if proxy and proxy.error:
        healthy = False
        reason = (
            f"RDS Proxy failed: {proxy.error}"
            if writer_ok and reason.startswith("healthy")
            else (f"{reason}; RDS Proxy failed: {proxy.error}")
        )
    report = HealthReport(
        mode=mode,
        healthy=healthy,
        reason=reason,
        writer_ok=writer_ok,
        writer_instance=writer.instance,
        write_latency_ms=writer.write_ms,
        reader_ok=reader.error is None and reader.saw_token is not False,
        reader_instance=reader.instance,
        writer_stale=writer.read_only or bool(expect.writer and writer.instance and writer.instance != expect.writer),
        replicas=tuple(writer.replicas),
        connections=writer.connections,
        tps=writer.tps,
        proxy_ok=None if proxy is None else proxy.error is None,
        proxy_latency_ms=proxy.latency_ms if proxy else None,
        blocked_roles=tuple(writer.blocked),
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    log.info("health verdict", extra={"healthy": healthy, "reason": reason, "mode": mode})
    return report


def run(request: HealthRequest, db_factory, settings_factory, proxy_credentials_factory=None) -> HealthReport:
    """The health_checker's one core call: check, emit metrics, apply the mode's contract.

    Scheduled: never raises; a sick database or broken wiring is an "unhealthy" report.
    Verify: raises NotReady when the cluster endpoint still points at the old writer (DNS TTL)
    and VerificationFailed when the new writer is not healthy.
    """
    try:
        s = settings_factory()
        report = check_health(
            db_factory(),
            request.mode,
            s.max_lag_ms,
            Expectation(request.expected_writer, request.expected_replicas),
            proxy_credentials_factory() if proxy_credentials_factory else None,
        )
    except errors.InvalidInput:
        raise
    except Exception as exc:
        if request.mode != HealthMode.SCHEDULED:
            raise
        log.exception("health check could not run")
        cause = str(exc) if isinstance(exc, errors.HapgError) else f"internal error ({type(exc).__name__})"
        report = _failed_report(request.mode, cause)
        s = None
    emit_metrics(report, s.cluster_id if s else "unknown")
    if request.mode == HealthMode.SCHEDULED and s is not None:
        metrics.flush_metrics()  # the verdict is out before the flag read, which may wait on DynamoDB
        emit(s.cluster_id, {Metric.AUTOMATION_PAUSED: (automation_paused(s), MetricUnit.Count)})
    if request.mode == HealthMode.VERIFY and not report.healthy:
        # right after a failover, DNS, replica catch-up and rejoining readers settle within seconds:
        # retry those; a writer that cannot take a write is a real failure
        if report.writer_stale or report.writer_ok:
            raise errors.NotReady(report.reason)
        raise errors.VerificationFailed(report.reason)
    return report


def automation_paused(settings) -> float | None:
    """The maintenance flag as a figure for the dashboard: 1 while operators have paused the failover
    automation, 0 when not; None (nothing emitted) without a state table or when the flag cannot be
    read. It never changes the health verdict."""
    if not settings.state_table:
        return None
    from hapg.history import StateTable

    try:
        return 1.0 if StateTable(settings.state_table, settings.cluster_id).maintenance() else 0.0
    except errors.HapgError as exc:
        log.warning("maintenance flag unreadable", extra={"cause": str(exc)})
        return None


def _failed_report(mode: str, cause: str) -> HealthReport:
    return HealthReport(
        mode=mode,
        healthy=False,
        reason=f"health check failed: {cause}",
        writer_ok=False,
        writer_instance=None,
        write_latency_ms=None,
        reader_ok=False,
        reader_instance=None,
    )


def emit_metrics(report: HealthReport, cluster_id: str) -> None:
    conns = report.connections
    emit(
        cluster_id,
        {
            Metric.HEALTHY: (1.0 if report.writer_ok else 0.0, MetricUnit.Count),
            Metric.HEALTH_CHECK_FAILED: (0.0 if report.healthy else 1.0, MetricUnit.Count),
            Metric.READER_HEALTHY: (1.0 if report.reader_ok else 0.0, MetricUnit.Count),
            Metric.WRITE_PROBE_LATENCY: (report.write_latency_ms, MetricUnit.Milliseconds),
            Metric.REPLICA_LAG_MAX: (report.max_lag_ms, MetricUnit.Milliseconds),
            Metric.CONNECTIONS_ACTIVE: (conns.active if conns else None, MetricUnit.Count),
            Metric.CONNECTIONS_IDLE: (conns.idle if conns else None, MetricUnit.Count),
            Metric.CONNECTIONS_IDLE_IN_TX: (conns.idle_in_transaction if conns else None, MetricUnit.Count),
            Metric.CONNECTIONS_PCT_MAX: (conns.percent_of_max if conns else None, MetricUnit.Percent),
            Metric.TPS: (report.tps, MetricUnit.CountPerSecond),
            Metric.PROXY_HEALTHY: (None if report.proxy_ok is None else float(report.proxy_ok), MetricUnit.Count),
        },
    )
    lags = {r.instance_id: r.lag_ms for r in report.replicas if r.lag_ms is not None}
    emit_per_instance(cluster_id, Metric.REPLICA_LAG, MetricUnit.Milliseconds, lags)
