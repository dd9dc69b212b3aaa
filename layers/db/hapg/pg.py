"""The one place that connects to PostgreSQL.

Every connection gets TLS (verify-full against the RDS CA bundle by default), a server-side
statement timeout, an `application_name`, and a client-side deadline on every blocking call:
psycopg2 runs in "green" mode with a wait callback that select()s with a timeout, so a
frozen server or a black-holed packet cannot hang a Lambda past its budget.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext

from hapg import errors
from hapg.config import DbSettings
from hapg.models import Credentials, Endpoint
from hapg.names import APP_NAME_PREFIX

_local = threading.local()
MAX_CREDENTIAL_ATTEMPTS = 3  # cached, fresh AWSCURRENT, AWSPENDING
DEFAULT_OP_TIMEOUT_S = 10.0
_UNAVAILABLE = (
    psycopg2.errors.AdminShutdown,
    psycopg2.errors.CrashShutdown,
    psycopg2.errors.CannotConnectNow,
    psycopg2.errors.IdleSessionTimeout,
)


# libpq refusing a standby under target_session_attrs=read-write (PG 14+ wording, then PG <= 13)
_READ_ONLY_CONNECT = ("session is read-only", "server is in hot standby mode", "could not make a writable connection")


class DeadlineConnection(ext.connection):
    """A connection whose blocking calls each get at most `op_timeout_s` seconds."""

    op_timeout_s: float | None = None


def _wait_with_deadline(conn: ext.connection) -> None:
    timeout = getattr(conn, "op_timeout_s", None) or getattr(_local, "timeout", None) or DEFAULT_OP_TIMEOUT_S
    deadline = time.monotonic() + timeout
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.DatabaseTimeout(f"no answer from the server within {timeout:g}s")
        fd = conn.fileno()
        if state == ext.POLL_READ:
            select.select([fd], [], [], remaining)
        elif state == ext.POLL_WRITE:
            select.select([], [fd], [], remaining)
        else:  # pragma: no cover - libpq contract
            raise errors.DatabaseUnavailable(f"unexpected poll state {state}")


ext.set_wait_callback(_wait_with_deadline)


def _kind(exc: BaseException, first: str) -> type[errors.HapgError] | None:
    operational = isinstance(exc, psycopg2.OperationalError)
    if isinstance(exc, psycopg2.errors.ReadOnlySqlTransaction) or (
        operational and any(s in first for s in _READ_ONLY_CONNECT)
    ):
        return errors.WriterReadOnly
    if operational and ("password authentication failed" in first or "PAM authentication failed" in first):
        return errors.AuthenticationFailed
    if operational or isinstance(exc, (*_UNAVAILABLE, psycopg2.InterfaceError)):
        return errors.DatabaseUnavailable
    return None


def translate(exc: BaseException, where: str) -> errors.HapgError:
    """Driver error -> our hierarchy. Messages carry the endpoint, never credentials."""
    if isinstance(exc, errors.HapgError):
        return exc
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg2.errors.QueryCanceled):
        return errors.DatabaseTimeout(f"{where}: statement timed out")
    kind = _kind(exc, first)
    if kind is errors.AuthenticationFailed:
        return kind(f"{where}: authentication failed")
    if kind is not None:
        return kind(f"{where}: {first}")
    return errors.DatabaseError(f"{where}: {type(exc).__name__}: {first}")


def open_connection(
    endpoint: Endpoint,
    creds: Credentials,
    settings: DbSettings,
    *,
    app: str,
    timeout_s: float | None = None,
    target_session_attrs: str | None = None,
    dbname: str | None = None,
) -> DeadlineConnection:
    """Connect or raise a HapgError. The caller owns (and closes) the connection."""
    op_timeout = timeout_s or settings.connect_timeout_s
    params: dict[str, object] = {
        "host": endpoint.host,
        "port": str(endpoint.port),
        "dbname": dbname or settings.dbname,
        "user": creds.username,
        "password": creds.password,
        "application_name": f"{APP_NAME_PREFIX}-{app}",
        "sslmode": settings.sslmode,
        "options": f"-c statement_timeout={settings.statement_timeout_ms} -c lock_timeout=2000",
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "tcp_user_timeout": int(op_timeout * 1000),
        "connection_factory": DeadlineConnection,
    }
    if settings.sslmode.startswith("verify"):
        params["sslrootcert"] = settings.sslrootcert
    if target_session_attrs:
        params["target_session_attrs"] = target_session_attrs
    _local.timeout = op_timeout
    try:
        conn = psycopg2.connect(**params)
    except Exception as exc:
        raise translate(exc, f"connect {endpoint}") from exc
    finally:
        _local.timeout = None
    conn.op_timeout_s = max(op_timeout, settings.statement_timeout_ms / 1000 + 1)
    conn.autocommit = True
    return conn


class Database:
    """Connections for one function: settings + a credentials provider + its app name.

    `credentials(attempt)` returns the credentials to try: 0 the cached ones, then fresher ones
    (see `secrets.credentials_provider`), None when there is nothing left to try. A rotation may
    have just changed the password, so an authentication failure moves on to the next attempt.
    """

    def __init__(self, settings: DbSettings, credentials: Callable[[int], Credentials | None], app: str):
        self.settings = settings
        self._credentials = credentials
        self.app = app

    def open(self, endpoint: Endpoint | None = None, **kwargs) -> DeadlineConnection:
        endpoint = endpoint or self.settings.writer
        failure: errors.AuthenticationFailed | None = None
        for attempt in range(MAX_CREDENTIAL_ATTEMPTS):
            creds = self._credentials(attempt)
            if creds is None:
                break
            try:
                return open_connection(endpoint, creds, self.settings, app=self.app, **kwargs)
            except errors.AuthenticationFailed as exc:
                failure = exc
        raise failure or errors.AuthenticationFailed(f"connect {endpoint}: no credentials to try")

    @contextmanager
    def session(self, endpoint: Endpoint | None = None, **kwargs) -> Iterator[DeadlineConnection]:
        conn = self.open(endpoint, **kwargs)
        with guarded(conn, f"{endpoint or self.settings.writer}"):
            yield conn


@contextmanager
def guarded(conn: ext.connection, where: str) -> Iterator[ext.connection]:
    """Translate driver errors raised while using `conn`, and always close it."""
    try:
        yield conn
    except errors.HapgError:
        raise
    except psycopg2.Error as exc:
        raise translate(exc, where) from exc
    finally:
        close_quietly(conn)


def close_quietly(conn: ext.connection | None) -> None:
    if conn is None or conn.closed:
        return
    with contextlib.suppress(psycopg2.Error):
        conn.close()


def query(conn: ext.connection, sql: object, params: object = None) -> list[tuple]:
    """Run one statement; return all rows (empty for statements without a result)."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def query_one(conn: ext.connection, sql: object, params: object = None) -> tuple | None:
    rows = query(conn, sql, params)
    return rows[0] if rows else None
