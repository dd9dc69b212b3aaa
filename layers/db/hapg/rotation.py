"""Secret rotation for PostgreSQL: Secrets Manager's four-step protocol for our two secrets.

Secrets Manager calls the function once per step with `{SecretId, ClientRequestToken, Step}`:

  createSecret  put a new value under the token, staged AWSPENDING (an existing one is kept)
  setSecret     make the database accept it (the pending password is tried first)
  testSecret    log in with it
  finishSecret  move AWSCURRENT to the token

and retries a failed rotation later with the same token, so every step checks "already done"
first. Like AWS's SecretsManagerRDSPostgreSQLRotation{SingleUser,MultiUser} templates, a step
refuses when rotation is off, the token is not staged or staged wrongly, and returns at once when
the token is already AWSCURRENT. The strategy follows from WHICH secret is rotated, never from
what a secret says:

* the master secret (DB_SECRET_ARN): single user. The master changes its own password. Between
  setSecret and finishSecret only AWSPENDING logs in, so consumers holding the old value fail
  until they re-read the secret: only this stack's functions use it, and they re-read on an
  authentication failure.
* the app secret (APP_SECRET_ARN): alternating users `<user>` / `<user>_clone`, changed through
  the master secret named by its `masterarn`. A rotation sets the password of the user that is
  NOT current, so whatever applications hold keeps logging in: they never see a failed login.
  Both login roles are members of a NOLOGIN group `<user>_rw` holding the privileges (DML on the
  public schema of financialdb, nothing else); setSecret creates the group and the roles when
  they are missing, so the first rotation after the deploy creates the application user.

Safety rules:
* Connections go to the cluster's writer endpoint from the environment (DB_WRITER_ENDPOINT), never
  to a host read from a secret: whoever can edit a secret could otherwise make us send the master
  password anywhere. A secret whose host/port/dbname do not name this cluster is refused, and a
  pending value may differ from the current one only in its password (and, alternating, in the
  username, which must be the current one's alternate).
* Passwords never reach a log, an exception message or the server's logs: CREATE/ALTER ROLE carry
  the SCRAM verifier libpq computes client-side (what psql's \\password does), so the cluster's
  `log_statement=ddl`, pg_stat_statements and pg_stat_activity see a salted hash only, and a failed
  statement is reported by SQLSTATE and primary message, never with the driver's error chained
  (psycopg2 errors carry the statement).
* Nothing changes while the failover workflow holds its lock: LockHeld (retryable) and Secrets
  Manager tries again later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext
from psycopg2 import sql

from hapg import aws, errors, pg, runtime, telemetry
from hapg.config import DbSettings, Settings
from hapg.models import Credentials, require_mapping, to_dict
from hapg.names import Function, Metric, Rotation
from hapg.telemetry import child_logger

log = child_logger()

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
ENGINES = ("postgres", "aurora-postgresql")
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
MIN_PASSWORD = 16
MAX_PASSWORD = 128  # RDS's limit for master passwords
_TOKEN = re.compile(r"[A-Za-z0-9-]{32,64}")  # fullmatch: "$" would let a trailing newline in
_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_RESERVED = re.compile(r"^(pg_|rds_|rdsadmin$|rdsrepladmin$|public$)", re.IGNORECASE)


class Step:
    CREATE = "createSecret"
    SET = "setSecret"
    TEST = "testSecret"
    FINISH = "finishSecret"
    ALL = (CREATE, SET, TEST, FINISH)


class Strategy:
    SINGLE_USER = "single-user"  # the master secret
    ALTERNATING = "alternating-users"  # the app secret


class Outcome:
    CREATED = "created"  # createSecret put a new AWSPENDING value
    KEPT = "kept"  # createSecret found one and kept it
    SET = "set"  # setSecret changed the database
    ALREADY_SET = "already-set"  # setSecret: the pending password already logs in
    TESTED = "tested"
    FINISHED = "finished"
    ALREADY_CURRENT = "already-current"  # the token is AWSCURRENT: nothing to do


# -- the event --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RotationRequest:
    """One rotation step as Secrets Manager sends it. Unknown keys are ignored: AWS adds fields."""

    secret_id: str
    token: str
    step: str
    rotation_token: str | None = field(default=None, repr=False)  # sensitive: never logged

    @classmethod
    def parse(cls, event: Any) -> RotationRequest:
        event = require_mapping(event, "secret_rotation event")
        missing = [k for k in ("SecretId", "ClientRequestToken", "Step") if not _text(event.get(k))]
        if missing:
            raise errors.InvalidInput(f"secret_rotation event: {', '.join(missing)} must be non-empty strings")
        if event["Step"] not in Step.ALL:
            raise errors.InvalidInput(f"unknown Step {event['Step']!r:.40}; expected one of {', '.join(Step.ALL)}")
        if not _TOKEN.fullmatch(event["ClientRequestToken"]):
            raise errors.InvalidInput("ClientRequestToken must be 32-64 letters, digits or hyphens")
        rotation_token = event.get("RotationToken")
        if rotation_token is not None and not _text(rotation_token):
            raise errors.InvalidInput("RotationToken must be a non-empty string when present")
        if rotation_token is not None and not 36 <= len(rotation_token) <= 256:
            raise errors.InvalidInput("RotationToken must be 36-256 characters")
        return cls(event["SecretId"], event["ClientRequestToken"], event["Step"], rotation_token)


@dataclass(frozen=True)
class StepResult:
    secret: str
    step: str
    strategy: str
    outcome: str
    version: str
    username: str | None = None  # the pending user (never a password)
    detail: str = ""


# -- pure checks over Secrets Manager metadata and values (plain dicts) ----------------------------
def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def strategy_for(arn: str, master_arn: str, app_arn: str | None) -> str:
    """Which strategy rotates the secret with this ARN; refuses any other secret."""
    if arn == master_arn:
        return Strategy.SINGLE_USER
    if app_arn and arn == app_arn:
        return Strategy.ALTERNATING
    raise errors.RotationError(
        f"secret {arn} is neither the master secret nor the application secret this function rotates"
    )


def already_current(metadata: Mapping[str, Any], token: str) -> bool:
    """True when the token is AWSCURRENT (nothing to do); raises when this rotation must not run."""
    name = metadata.get("Name") or metadata.get("ARN")
    if metadata.get("RotationEnabled") is not True:
        raise errors.RotationError(f"rotation is not enabled on secret {name}")
    stages = (metadata.get("VersionIdsToStages") or {}).get(token)
    if stages is None:
        raise errors.RotationError(f"version {token} of secret {name} has no stage for rotation")
    if CURRENT in stages:
        return True
    if PENDING not in stages:
        raise errors.RotationError(
            f"version {token} of secret {name} is not staged {PENDING} (stages: {', '.join(stages) or '-'})"
        )
    return False


def current_version(metadata: Mapping[str, Any]) -> str | None:
    return next((v for v, stages in (metadata.get("VersionIdsToStages") or {}).items() if CURRENT in stages), None)


def alternate(username: str) -> str:
    """hapg_app <-> hapg_app_clone."""
    suffix = Rotation.CLONE_SUFFIX
    return username[: -len(suffix)] if username.endswith(suffix) else username + suffix


def group_role(username: str) -> str:
    """The NOLOGIN role holding the app privileges: <base user>_rw for both alternates."""
    return username.removesuffix(Rotation.CLONE_SUFFIX) + Rotation.GROUP_SUFFIX


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 65536 else None
    if isinstance(value, str) and value.isdigit():
        return _port(int(value))
    return None


def secret_problems(value: Any, strategy: str) -> list[str]:
    """What is missing or invalid in a secret value (never quotes the password)."""
    if not isinstance(value, Mapping):
        return ["the value is not a JSON object"]
    problems = []
    user = value.get("username")
    if not isinstance(user, str) or not _ROLE.fullmatch(user):
        problems.append("username is missing or not a plain PostgreSQL role name")
    elif _RESERVED.match(user):
        problems.append(f"username {user!r} is reserved")
    elif strategy == Strategy.ALTERNATING and not _ROLE.fullmatch(alternate(user) + Rotation.GROUP_SUFFIX):
        problems.append(f"username {user!r} is too long for its alternate and group role")
    if not _text(value.get("password")):
        problems.append("password is missing or empty")
    host = value.get("host")
    if not _text(host) or any(c.isspace() or c == "," for c in host):
        problems.append("host is missing or not a single host name")
    if value.get("engine") not in ENGINES:
        problems.append(f"engine must be one of {', '.join(ENGINES)}")
    if "port" in value and _port(value["port"]) is None:
        problems.append("port is not a TCP port number")
    if "dbname" in value and not _text(value["dbname"]):
        problems.append("dbname is not a non-empty string")
    master = value.get("masterarn")
    if strategy == Strategy.ALTERNATING:
        if not (_text(master) and master.startswith("arn:") and ":secretsmanager:" in master):
            problems.append("masterarn is missing or not a Secrets Manager ARN")
    elif "masterarn" in value:
        problems.append("a single-user secret must not name a masterarn")
    return problems


def password_problems(password: Any) -> list[str]:
    """Rules for a NEW password (the current one is whatever it is)."""
    if not isinstance(password, str):
        return ["password is not a string"]
    problems = []
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        problems.append(f"password length must be {MIN_PASSWORD}-{MAX_PASSWORD}")
    if any(not (0x21 <= ord(c) <= 0x7E) for c in password):
        problems.append("password must be printable ASCII without spaces")
    if set(password) & set(Rotation.EXCLUDE_CHARACTERS):
        problems.append("password contains characters that break connection strings")
    return problems


def pending_problems(current: Mapping[str, Any], pending: Any, strategy: str, step: str) -> list[str]:
    """Is the pending value valid, and consistent with the current one?

    Only the password may differ (and, alternating, the username, which must be the current
    user's alternate). testSecret also accepts the current value itself: when rotation is turned
    on without rotating, Secrets Manager stages a copy of the current value and runs testSecret."""
    if step == Step.TEST and isinstance(pending, Mapping) and dict(pending) == dict(current):
        return []
    problems = secret_problems(pending, strategy)
    if problems:
        return problems
    problems += password_problems(pending["password"])
    if pending["password"] == current.get("password"):
        problems.append("the pending password equals the current one")
    want = alternate(current["username"]) if strategy == Strategy.ALTERNATING else current.get("username")
    if pending["username"] != want:
        problems.append(f"username {pending['username']!r} differs from {want!r}")
    shown = {"host", "port", "dbname", "engine", "masterarn"}
    for key in sorted((set(current) | set(pending)) - {"username", "password"}):
        if current.get(key) != pending.get(key):
            values = f" ({current.get(key)!r} vs {pending.get(key)!r})" if key in shown else ""
            problems.append(f"{key} differs from the current value{values}")
    return problems


def target_problems(value: Mapping[str, Any], db: DbSettings) -> list[str]:
    """Does the secret name this cluster (writer/reader/proxy endpoint, port, database)?"""
    endpoints = [db.writer, db.reader, *([db.proxy] if db.proxy else [])]
    hosts = {e.host.lower() for e in endpoints}
    problems = []
    if str(value.get("host", "")).lower() not in hosts:
        problems.append(f"host {value.get('host')!r} is not an endpoint of this cluster ({', '.join(sorted(hosts))})")
    if "port" in value and _port(value["port"]) != _port(db.writer.port):
        problems.append(f"port {value['port']!r} is not the cluster's port {db.writer.port}")
    if "dbname" in value and value["dbname"] != db.dbname:
        problems.append(f"dbname {value['dbname']!r} is not this stack's database {db.dbname!r}")
    return problems


def role_problems(role: Mapping[str, Any]) -> list[str]:
    """An application (or group) role must hold no cluster-level power."""
    problems = [f"{attr[3:].upper()}" for attr in PRIVILEGED_ATTRIBUTES if role.get(attr)]
    problems += [f"member of {name}" for name in role.get("powerful") or ()]
    return [f"role {role.get('rolname')!r} has {p}" for p in problems]


def new_pending(current: Mapping[str, Any], password: str, strategy: str) -> dict[str, Any]:
    """The next value: the current one with a new password (and, alternating, the other user)."""
    value = {**current, "password": password}
    if strategy == Strategy.ALTERNATING:
        value["username"] = alternate(current["username"])
    return value


def refuse(what: str, problems: Iterable[str]) -> None:
    problems = list(problems)
    if problems:
        raise errors.RotationError(f"{what}: {'; '.join(problems)}")


# -- Secrets Manager ---------------------------------------------------------------------------------
class SecretStore:
    """The Secrets Manager calls a rotation makes. Every read names its stage (never "latest")."""

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("secretsmanager")

    def describe(self, secret_id: str) -> dict[str, Any]:
        with aws.call("secretsmanager:DescribeSecret"):
            return self.client.describe_secret(SecretId=secret_id)

    def value(self, secret_id: str, stage: str, version: str | None = None) -> dict[str, Any] | None:
        """The JSON value under `stage` (and `version`), None when there is none."""
        kwargs = {"SecretId": secret_id, "VersionStage": stage, **({"VersionId": version} if version else {})}
        try:
            with aws.call("secretsmanager:GetSecretValue"):
                raw = self.client.get_secret_value(**kwargs).get("SecretString")
        except errors.AwsRequestFailed as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        try:
            value = json.loads(raw) if raw is not None else None
        except ValueError:
            value = None
        if not isinstance(value, dict):  # never echo the text: it may be a bare password
            raise errors.RotationError(f"{stage} value of secret {secret_id} is not a JSON object")
        return value

    def random_password(self) -> str:
        with aws.call("secretsmanager:GetRandomPassword"):
            return self.client.get_random_password(
                PasswordLength=Rotation.PASSWORD_LENGTH,
                ExcludeCharacters=Rotation.EXCLUDE_CHARACTERS,
                RequireEachIncludedType=True,
            )["RandomPassword"]

    def put_pending(self, secret_id: str, token: str, value: Mapping[str, Any], rotation_token: str | None) -> None:
        kwargs = {"RotationToken": rotation_token} if rotation_token else {}
        with aws.call("secretsmanager:PutSecretValue"):
            self.client.put_secret_value(
                SecretId=secret_id,
                ClientRequestToken=token,
                SecretString=json.dumps(value),
                VersionStages=[PENDING],
                **kwargs,
            )

    def make_current(self, secret_id: str, token: str, previous: str | None) -> None:
        with aws.call("secretsmanager:UpdateSecretVersionStage"):
            self.client.update_secret_version_stage(
                SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=token, RemoveFromVersionId=previous
            )


# -- PostgreSQL ------------------------------------------------------------------------------------------
def _login(db: DbSettings, value: Mapping[str, Any]) -> pg.DeadlineConnection:
    """Log in on the cluster's writer as the secret's user (TLS, deadlines: the one connect path)."""
    creds = Credentials(value["username"], value["password"])
    return pg.open_connection(db.writer, creds, db, app=Function.SECRET_ROTATION, target_session_attrs="read-write")


def _try_login(db: DbSettings, value: Mapping[str, Any] | None) -> pg.DeadlineConnection | None:
    """A connection, or None when the server rejects the password. Unreachable servers raise."""
    if value is None:
        return None
    try:
        return _login(db, value)
    except errors.AuthenticationFailed:
        return None


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


def _roles(conn: pg.DeadlineConnection, names: list[str], group: str) -> dict[str, dict[str, Any]]:
    rows = pg.query(conn, _ROLES, {"names": names, "group": group, "powerful": list(POWERFUL_ROLES)})
    return {row[0]: dict(zip(_COLUMNS, row, strict=True)) for row in rows}


def _password(conn: pg.DeadlineConnection, role: str, password: str, secrets: list[str]) -> sql.Composable:
    """The PASSWORD clause: a verifier in the server's own format, computed here (never the password).
    The verifier joins `secrets`, the strings an error message must not carry either."""
    algorithm = pg.query_one(conn, "SHOW password_encryption")[0]
    if algorithm not in ("scram-sha-256", "md5"):
        algorithm = "scram-sha-256"
    verifier = ext.encrypt_password(password, role, conn, algorithm)
    secrets.append(verifier)
    return sql.Literal(verifier)


def _login_role(role: str, password: sql.Composable, group: str) -> sql.Composed:
    return sql.SQL(
        "CREATE ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT "
        "PASSWORD {password} IN ROLE {group}"
    ).format(role=sql.Identifier(role), password=password, group=sql.Identifier(group))


def _set_password(role: str, password: sql.Composable) -> sql.Composed:
    return sql.SQL("ALTER ROLE {role} WITH PASSWORD {password}").format(role=sql.Identifier(role), password=password)


def _group(group: str, dbname: str) -> list[sql.Composed]:
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


def _apply(conn: pg.DeadlineConnection, build: Callable[[], list[sql.Composable]], where: str, secrets: list[str]):
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


# -- the steps ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: SecretStore
    lock_owner: Callable[[], str | None]


@dataclass(frozen=True)
class _Context:
    request: RotationRequest
    arn: str
    name: str
    strategy: str
    metadata: dict[str, Any]
    deps: Deps

    @property
    def db(self) -> DbSettings:
        return self.deps.settings.db

    def result(self, outcome: str, username: str | None = None, detail: str = "") -> StepResult:
        return StepResult(self.name, self.request.step, self.strategy, outcome, self.request.token, username, detail)


def rotate(request: RotationRequest, deps: Deps) -> StepResult:
    """Check, then dispatch one step. Raises HapgError subclasses; changes nothing when it refuses."""
    metadata = deps.store.describe(request.secret_id)
    arn, name = metadata["ARN"], metadata.get("Name", metadata["ARN"])
    strategy = strategy_for(arn, deps.settings.db.secret_arn, deps.settings.app_secret_arn)
    ctx = _Context(request, arn, name, strategy, metadata, deps)
    if already_current(metadata, request.token):
        return ctx.result(Outcome.ALREADY_CURRENT, detail=f"version is already {CURRENT}")
    owner = deps.lock_owner()
    if owner:
        raise errors.LockHeld(f"failover {owner} holds the lock: {request.step} of {name} deferred")
    step = {Step.CREATE: _create, Step.SET: _set, Step.TEST: _test, Step.FINISH: _finish}[request.step]
    return step(ctx)


def _current(ctx: _Context) -> dict[str, Any]:
    current = ctx.deps.store.value(ctx.arn, CURRENT)
    if current is None:
        raise errors.RotationError(f"secret {ctx.name} has no {CURRENT} value")
    refuse(f"{CURRENT} of {ctx.name}", secret_problems(current, ctx.strategy))
    refuse(f"{CURRENT} of {ctx.name}", target_problems(current, ctx.db))
    if ctx.strategy == Strategy.ALTERNATING and current["masterarn"] != ctx.db.secret_arn:
        raise errors.RotationError(f"{CURRENT} of {ctx.name}: masterarn is not this stack's master secret")
    return current


def _pending(ctx: _Context, current: Mapping[str, Any]) -> dict[str, Any]:
    pending = ctx.deps.store.value(ctx.arn, PENDING, ctx.request.token)
    if pending is None:
        raise errors.RotationError(f"{PENDING} version {ctx.request.token} of {ctx.name} has no value (createSecret?)")
    refuse(f"{PENDING} of {ctx.name}", pending_problems(current, pending, ctx.strategy, ctx.request.step))
    return pending


def _create(ctx: _Context) -> StepResult:
    current = _current(ctx)
    existing = ctx.deps.store.value(ctx.arn, PENDING, ctx.request.token)
    if existing is not None:
        refuse(f"{PENDING} of {ctx.name}", pending_problems(current, existing, ctx.strategy, Step.CREATE))
        return ctx.result(Outcome.KEPT, existing["username"], f"kept the existing {PENDING} value")
    pending = new_pending(current, ctx.deps.store.random_password(), ctx.strategy)
    refuse(f"new {PENDING} of {ctx.name}", pending_problems(current, pending, ctx.strategy, Step.CREATE))
    ctx.deps.store.put_pending(ctx.arn, ctx.request.token, pending, ctx.request.rotation_token)
    return ctx.result(Outcome.CREATED, pending["username"], f"new {PENDING} value for {pending['username']}")


def _set(ctx: _Context) -> StepResult:
    current = _current(ctx)
    pending = _pending(ctx, current)
    conn = _try_login(ctx.db, pending)
    if conn is not None:
        with pg.guarded(conn, f"setSecret {ctx.name}"):
            _check_app_login(ctx, conn, pending["username"])
        return ctx.result(Outcome.ALREADY_SET, pending["username"], "the pending password already logs in")
    if ctx.strategy == Strategy.SINGLE_USER:
        return _set_single(ctx, current, pending)
    return _set_alternating(ctx, current, pending)


def _set_single(ctx: _Context, current: dict[str, Any], pending: dict[str, Any]) -> StepResult:
    """The master sets its own password, logged in with AWSCURRENT (or AWSPREVIOUS, as AWS's template
    does: a rotation that was rolled back by hand leaves the database one version behind)."""
    user = current["username"]
    conn = _try_login(ctx.db, current)
    if conn is None:
        previous = ctx.deps.store.value(ctx.arn, PREVIOUS)
        if previous is not None and previous.get("username") == user and not secret_problems(previous, ctx.strategy):
            conn = _try_login(ctx.db, previous)
    if conn is None:
        raise errors.AuthenticationFailed(
            f"setSecret {ctx.name}: neither the {PENDING}, {CURRENT} nor {PREVIOUS} password logs in as {user}"
        )
    secrets = [current["password"], pending["password"]]
    build = lambda: [_set_password(user, _password(conn, user, pending["password"], secrets))]  # noqa: E731
    _apply(conn, build, f"set {user}", secrets)
    pg.close_quietly(conn)
    _prove(ctx, pending)
    return ctx.result(Outcome.SET, user, f"password of {user} changed")


def _master(ctx: _Context, app: Mapping[str, Any]) -> pg.DeadlineConnection:
    """A connection as the master, from the master secret the app secret names. AWSPENDING is tried
    when AWSCURRENT is refused: the master may be between its own setSecret and finishSecret."""
    arn = app["masterarn"]
    master = ctx.deps.store.value(arn, CURRENT)
    if master is None:
        raise errors.RotationError(f"master secret {arn} has no {CURRENT} value")
    refuse(f"master secret {arn}", secret_problems(master, Strategy.SINGLE_USER))
    refuse(f"master secret {arn}", target_problems(master, ctx.db))
    if master["host"].lower() != app["host"].lower():
        raise errors.RotationError(f"master secret host {master['host']!r} is not the app secret host {app['host']!r}")
    conn = _try_login(ctx.db, master)
    if conn is None:
        pending = ctx.deps.store.value(arn, PENDING)
        same_user = pending is not None and pending.get("username") == master["username"]
        if same_user and not secret_problems(pending, Strategy.SINGLE_USER):
            conn = _try_login(ctx.db, pending)
    if conn is None:
        raise errors.AuthenticationFailed(
            f"setSecret {ctx.name}: the master secret does not log in as {master['username']}"
        )
    return conn


def _set_alternating(ctx: _Context, current: dict[str, Any], pending: dict[str, Any]) -> StepResult:
    user, other = current["username"], pending["username"]
    group = group_role(user)
    current_ok = _try_login(ctx.db, current)
    pg.close_quietly(current_ok)
    conn = _master(ctx, current)
    with pg.guarded(conn, f"setSecret {ctx.name}"):
        roles = _roles(conn, [user, other, group], group)
        if current_ok is None and user in roles:
            raise errors.AuthenticationFailed(
                f"setSecret {ctx.name}: the {CURRENT} password does not log in as {user}, which exists: "
                "it was changed outside rotation; refusing to rotate"
            )
        refuse(f"setSecret {ctx.name}", [p for r in roles.values() for p in role_problems(r)])
        if group in roles and roles[group]["rolcanlogin"]:
            raise errors.RotationError(f"setSecret {ctx.name}: group role {group!r} can log in")
        created = [r for r in (group, user, other) if r not in roles]
        secrets = [current["password"], pending["password"]]

        def statements() -> list[sql.Composable]:
            out: list[sql.Composable] = _group(group, ctx.db.dbname) if group not in roles else []
            if user not in roles:  # first rotation after the deploy: the app user from the secret
                out.append(_login_role(user, _password(conn, user, current["password"], secrets), group))
            if other in roles:
                out.append(_set_password(other, _password(conn, other, pending["password"], secrets)))
            else:
                out.append(_login_role(other, _password(conn, other, pending["password"], secrets), group))
            out += [
                sql.SQL("GRANT {g} TO {r}").format(g=sql.Identifier(group), r=sql.Identifier(r))
                for r in (user, other)
                if r in roles and not roles[r]["in_group"]
            ]
            return out

        _apply(conn, statements, f"set {other}", secrets)
    _prove(ctx, pending)
    if user in created:
        _prove(ctx, current, CURRENT)
    detail = f"password of {other} set" + (f"; created {', '.join(created)}" if created else "")
    return ctx.result(Outcome.SET, other, detail)


def _prove(ctx: _Context, value: Mapping[str, Any], stage: str = PENDING) -> None:
    """Log in with `value` and check who we are (and, alternating, that the role is unprivileged)."""
    conn = _try_login(ctx.db, value)
    if conn is None:
        raise errors.AuthenticationFailed(
            f"{ctx.request.step} {ctx.name}: the {stage} password does not log in as {value['username']}"
        )
    with pg.guarded(conn, f"{ctx.request.step} {ctx.name}"):
        _check_app_login(ctx, conn, value["username"])


def _check_app_login(ctx: _Context, conn: pg.DeadlineConnection, username: str) -> None:
    who = pg.query_one(conn, "SELECT current_user")[0]
    if who != username:
        raise errors.RotationError(f"{ctx.request.step} {ctx.name}: logged in as {who!r}, expected {username!r}")
    if ctx.strategy != Strategy.ALTERNATING:
        return
    group = group_role(username)
    role = _roles(conn, [username], group).get(username, {"rolname": username})
    problems = role_problems(role)
    if not role.get("in_group"):
        problems.append(f"role {username!r} is not a member of {group!r}")
    refuse(f"{ctx.request.step} {ctx.name}", problems)


def _test(ctx: _Context) -> StepResult:
    current = _current(ctx)
    pending = _pending(ctx, current)
    _prove(ctx, pending)
    return ctx.result(Outcome.TESTED, pending["username"], f"{pending['username']} logs in")


def _finish(ctx: _Context) -> StepResult:
    current = _current(ctx)
    pending = _pending(ctx, current)
    _prove(ctx, pending)  # never promote a value that does not log in
    ctx.deps.store.make_current(ctx.arn, ctx.request.token, current_version(ctx.metadata))
    telemetry.emit(ctx.deps.settings.cluster_id, {Metric.ROTATION_SUCCEEDED: (1.0, telemetry.MetricUnit.Count)})
    return ctx.result(Outcome.FINISHED, pending["username"], f"version is now {CURRENT}")


# -- entry point -------------------------------------------------------------------------------------------
def _lock_owner() -> str | None:
    from hapg.history import StateTable

    s = runtime.settings()
    if not s.state_table:
        raise errors.ConfigError("STATE_TABLE is required by secret_rotation (it reads the failover lock)")
    return StateTable(s.state_table, s.cluster_id).lock_owner()


def deps() -> Deps:
    return Deps(runtime.settings(), runtime.port("secret_store", SecretStore), _lock_owner)


def run(request: RotationRequest) -> dict[str, Any]:
    """secret_rotation's one entry point: one step, logged (no secrets) and counted."""
    d = deps()
    where = {"secret": request.secret_id, "step": request.step, "version": request.token}
    try:
        result = rotate(request, d)
    except errors.LockHeld as exc:
        log.warning("rotation step deferred: the failover lock is held", extra={**where, "reason": str(exc)})
        raise
    except errors.HapgError as exc:
        log.error("rotation step failed", extra={**where, "error": type(exc).__name__, "reason": str(exc)})
        telemetry.emit(d.settings.cluster_id, {Metric.ROTATION_SUCCEEDED: (0.0, telemetry.MetricUnit.Count)})
        raise
    log.info("rotation step done", extra=to_dict(result))
    return to_dict(result)
