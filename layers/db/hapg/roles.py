"""PostgreSQL's side of a secret rotation: logins with a secret's value, the login and group roles.

Passwords never reach a log, an exception message or the server's logs: CREATE/ALTER ROLE carry
the SCRAM verifier libpq computes client-side (what psql's \\password does), so the cluster's
`log_statement=ddl`, pg_stat_statements and pg_stat_activity see a salted hash only, and a failed
statement is reported by SQLSTATE and primary message, never with the driver's error chained
(psycopg2 errors carry the statement).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext
from psycopg2 import sql

from hapg import errors, pg
from hapg.config import DbSettings
from hapg.models import Credentials
from hapg.names import Function

# Roles whose membership makes an application login far more than an application login.
POWERFUL_ROLES = (
    "rds_superuser",
    "rds_replication",
    "rds_password",
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
)
PRIVILEGED_ATTRIBUTES = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")


# -- logins ------------------------------------------------------------------------------------------------
def login(db: DbSettings, value: Mapping[str, Any]) -> pg.DeadlineConnection:
    """Log in on the cluster's writer as the secret's user (TLS, deadlines: the one connect path).
    Never to the host a secret names: whoever can edit a secret could make us send a password anywhere."""
    creds = Credentials(value["username"], value["password"])
    return pg.open_connection(db.writer, creds, db, app=Function.SECRET_ROTATION, target_session_attrs="read-write")


def try_login(db: DbSettings, value: Mapping[str, Any] | None) -> pg.DeadlineConnection | None:
    """A connection, or None when the server rejects the password. Unreachable servers raise."""
    if value is None:
        return None
    try:
        return login(db, value)
    except errors.AuthenticationFailed:
        return None


# -- what the roles are ------------------------------------------------------------------------------------
_ROLES = """
SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
       ARRAY(SELECT p.rolname::text FROM pg_roles p
              WHERE p.rolname = ANY(%(powerful)s) AND p.oid <> r.oid AND pg_has_role(r.oid, p.oid, 'MEMBER')
              ORDER BY 1) AS powerful,
       EXISTS (SELECT 1 FROM pg_roles g
                WHERE g.rolname = %(group)s AND g.oid <> r.oid AND pg_has_role(r.oid, g.oid, 'MEMBER')) AS in_group
  FROM pg_roles r WHERE r.rolname = ANY(%(names)s)
"""
_COLUMNS = ("rolname", "rolcanlogin", *PRIVILEGED_ATTRIBUTES, "powerful", "in_group")


def read_roles(conn: pg.DeadlineConnection, names: list[str], group: str) -> dict[str, dict[str, Any]]:
    """The existing roles among `names`: attributes, powerful memberships, membership of `group`."""
    rows = pg.query(conn, _ROLES, {"names": names, "group": group, "powerful": list(POWERFUL_ROLES)})
    return {row[0]: dict(zip(_COLUMNS, row, strict=True)) for row in rows}


def role_problems(role: Mapping[str, Any]) -> list[str]:
    """An application (or group) role must hold no cluster-level power."""
    problems = [f"{attr[3:].upper()}" for attr in PRIVILEGED_ATTRIBUTES if role.get(attr)]
    problems += [f"member of {name}" for name in role.get("powerful") or ()]
    return [f"role {role.get('rolname')!r} has {p}" for p in problems]


# -- statements --------------------------------------------------------------------------------------------
def password_clause(conn: pg.DeadlineConnection, role: str, password: str, secrets: list[str]) -> sql.Composable:
    """The PASSWORD clause: a verifier in the server's own format, computed here (never the password).
    The verifier joins `secrets`, the strings an error message must not carry either."""
    algorithm = pg.query_one(conn, "SHOW password_encryption")[0]
    if algorithm not in ("scram-sha-256", "md5"):
        algorithm = "scram-sha-256"
    verifier = ext.encrypt_password(password, role, conn, algorithm)
    secrets.append(verifier)
    return sql.Literal(verifier)


def create_login(role: str, password: sql.Composable, group: str) -> sql.Composed:
    return sql.SQL(
        "CREATE ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT "
        "PASSWORD {password} IN ROLE {group}"
    ).format(role=sql.Identifier(role), password=password, group=sql.Identifier(group))


def set_password(role: str, password: sql.Composable) -> sql.Composed:
    return sql.SQL("ALTER ROLE {role} WITH PASSWORD {password}").format(role=sql.Identifier(role), password=password)


def grant(group: str, role: str) -> sql.Composed:
    return sql.SQL("GRANT {g} TO {r}").format(g=sql.Identifier(group), r=sql.Identifier(role))


def create_group(group: str, dbname: str) -> list[sql.Composed]:
    """The app privileges: connect to the database, DML on the public schema's tables, nothing else.
    Schema changes run as the master (migrations); the defaults cover the tables it creates later."""
    ident = {"g": sql.Identifier(group), "db": sql.Identifier(dbname)}
    return [
        sql.SQL(s).format(**ident)
        for s in (
            "CREATE ROLE {g} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
            "GRANT CONNECT ON DATABASE {db} TO {g}",
            "GRANT USAGE ON SCHEMA public TO {g}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {g}",
            "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {g}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {g}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {g}",
        )
    ]


# -- running them ------------------------------------------------------------------------------------------
def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _sanitized(exc: psycopg2.Error, where: str, secrets: Iterable[str]) -> errors.HapgError:
    """Our error for a failed password statement: SQLSTATE and primary message, no statement text."""
    diag = getattr(exc, "diag", None)
    primary = _scrub(getattr(diag, "message_primary", None) or "", secrets)
    message = f"{where}: {type(exc).__name__} (SQLSTATE {exc.pgcode or '-'}){': ' + primary if primary else ''}"
    if isinstance(exc, psycopg2.errors.QueryCanceled | psycopg2.errors.LockNotAvailable):
        return errors.DatabaseTimeout(message)
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return errors.DatabaseUnavailable(message)
    return errors.DatabaseError(message)


def apply(conn: pg.DeadlineConnection, build: Callable[[], list[sql.Composable]], where: str, secrets: list[str]):
    """Run the statements `build()` returns in one transaction. On failure the error is raised
    outside the except block, so neither the driver's error (which quotes the statement) nor its
    cursor is attached to ours as __cause__ or __context__; `secrets` (passwords, and the verifiers
    `build` adds) are masked in the message as well."""
    failure: errors.HapgError | None = None
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            for statement in build():
                cur.execute(statement)
        conn.commit()
    except psycopg2.Error as exc:
        failure = _sanitized(exc, where, secrets)
    except errors.HapgError as exc:  # a client-side deadline (pg._wait_with_deadline)
        failure = type(exc)(_scrub(str(exc), secrets))
    finally:
        if failure is not None:
            pg.close_quietly(conn)
        elif not conn.closed:
            conn.autocommit = True
    if failure is not None:
        raise failure
