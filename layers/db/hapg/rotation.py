"""Secret rotation for PostgreSQL: Secrets Manager's four-step protocol for our two secrets.

Secrets Manager calls the function once per step with `{SecretId, ClientRequestToken, Step}`:

  createSecret  put a new value under the token, staged AWSPENDING (an existing one is kept)
  setSecret     make the database accept it (the pending password is tried first)
  testSecret    log in with it
  finishSecret  move AWSCURRENT to the token

and retries a failed rotation later with the same token, so every step checks "already done"
first. Like AWS's SecretsManagerRDSPostgreSQLRotation{SingleUser,MultiUser} templates, a step
refuses when rotation is off, the token is not staged or staged wrongly, and returns at once when
the token is already AWSCURRENT. The rules are `hapg.rotation_rules`, Secrets Manager's calls
`hapg.secret_store`, the SQL `hapg.roles`.

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

Nothing changes while the failover workflow holds its lock: LockHeld (retryable) and Secrets
Manager tries again later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from hapg import errors, pg, roles, runtime, telemetry
from hapg.config import DbSettings, Settings
from hapg.models import require_mapping, to_dict
from hapg.names import Metric
from hapg.rotation_rules import (
    CURRENT,
    PENDING,
    PREVIOUS,
    Step,
    Strategy,
    already_current,
    current_version,
    group_role,
    new_pending,
    nonempty,
    pending_problems,
    refuse,
    secret_problems,
    strategy_for,
    target_problems,
)
from hapg.secret_store import SecretStore
from hapg.telemetry import child_logger

log = child_logger()

_TOKEN = re.compile(r"[A-Za-z0-9-]{32,64}")  # fullmatch: "$" would let a trailing newline in


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
        missing = [k for k in ("SecretId", "ClientRequestToken", "Step") if not nonempty(event.get(k))]
        if missing:
            raise errors.InvalidInput(f"secret_rotation event: {', '.join(missing)} must be non-empty strings")
        if event["Step"] not in Step.ALL:
            raise errors.InvalidInput(f"unknown Step {event['Step']!r:.40}; expected one of {', '.join(Step.ALL)}")
        if not _TOKEN.fullmatch(event["ClientRequestToken"]):
            raise errors.InvalidInput("ClientRequestToken must be 32-64 letters, digits or hyphens")
        rotation_token = event.get("RotationToken")
        if rotation_token is not None and not nonempty(rotation_token):
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
    conn = roles.try_login(ctx.db, pending)
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
    conn = _login_or(ctx, ctx.arn, current, PREVIOUS)
    if conn is None:
        raise errors.AuthenticationFailed(
            f"setSecret {ctx.name}: neither the {PENDING}, {CURRENT} nor {PREVIOUS} password logs in as {user}"
        )
    secrets = [current["password"], pending["password"]]
    build = lambda: [roles.set_password(user, roles.password_clause(conn, user, pending["password"], secrets))]  # noqa: E731
    roles.apply(conn, build, f"set {user}", secrets)
    pg.close_quietly(conn)
    _prove(ctx, pending)
    return ctx.result(Outcome.SET, user, f"password of {user} changed")


def _login_or(ctx: _Context, arn: str, value: Mapping[str, Any], fallback: str) -> pg.DeadlineConnection | None:
    """Log in with a single-user `value`, else with the secret's `fallback` stage when it is the same user."""
    conn = roles.try_login(ctx.db, value)
    if conn is None:
        other = ctx.deps.store.value(arn, fallback)
        same_user = other is not None and other.get("username") == value["username"]
        if same_user and not secret_problems(other, Strategy.SINGLE_USER):
            conn = roles.try_login(ctx.db, other)
    return conn


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
    conn = _login_or(ctx, arn, master, PENDING)
    if conn is None:
        raise errors.AuthenticationFailed(
            f"setSecret {ctx.name}: the master secret does not log in as {master['username']}"
        )
    return conn


def _set_alternating(ctx: _Context, current: dict[str, Any], pending: dict[str, Any]) -> StepResult:
    user, other = current["username"], pending["username"]
    group = group_role(user)
    current_ok = roles.try_login(ctx.db, current)
    pg.close_quietly(current_ok)
    conn = _master(ctx, current)
    with pg.guarded(conn, f"setSecret {ctx.name}"):
        existing = roles.read_roles(conn, [user, other, group], group)
        if current_ok is None and user in existing:
            raise errors.AuthenticationFailed(
                f"setSecret {ctx.name}: the {CURRENT} password does not log in as {user}, which exists: "
                "it was changed outside rotation; refusing to rotate"
            )
        refuse(f"setSecret {ctx.name}", [p for r in existing.values() for p in roles.role_problems(r)])
        if group in existing and existing[group]["rolcanlogin"]:
            raise errors.RotationError(f"setSecret {ctx.name}: group role {group!r} can log in")
        created = [r for r in (group, user, other) if r not in existing]
        secrets = [current["password"], pending["password"]]

        def statements() -> list[sql.Composable]:
            out: list[sql.Composable] = roles.create_group(group, ctx.db.dbname) if group not in existing else []
            if user not in existing:  # first rotation after the deploy: the app user from the secret
                out.append(
                    roles.create_login(user, roles.password_clause(conn, user, current["password"], secrets), group)
                )
            password = roles.password_clause(conn, other, pending["password"], secrets)
            if other in existing:
                out.append(roles.set_password(other, password))
            else:
                out.append(roles.create_login(other, password, group))
            out += [roles.grant(group, r) for r in (user, other) if r in existing and not existing[r]["in_group"]]
            return out

        roles.apply(conn, statements, f"set {other}", secrets)
    _prove(ctx, pending)
    if user in created:
        _prove(ctx, current, CURRENT)
    detail = f"password of {other} set" + (f"; created {', '.join(created)}" if created else "")
    return ctx.result(Outcome.SET, other, detail)


def _prove(ctx: _Context, value: Mapping[str, Any], stage: str = PENDING) -> None:
    """Log in with `value` and check who we are (and, alternating, that the role is unprivileged)."""
    conn = roles.try_login(ctx.db, value)
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
    role = roles.read_roles(conn, [username], group).get(username, {"rolname": username})
    problems = roles.role_problems(role)
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
    return runtime.state_table("secret_rotation (it reads the failover lock)").lock_owner()


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
