"""secret_rotation against a real PostgreSQL 15 server and moto Secrets Manager/DynamoDB.

The server is this module's own (roles and passwords change here, so the shared pair stays
untouched), configured like the cluster: TLS only, SCRAM, `log_statement = ddl`. The master is an
RDS-style master: LOGIN CREATEROLE CREATEDB, not a superuser, owner of financialdb. Secrets Manager's
side (staging a version, invoking the steps, retrying) is local.rotation.LocalRotation.

Every bad case checks three things: the error is clear (class and message), nothing changed
(AWSCURRENT, the database's passwords), and the old password still logs in.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import traceback
import uuid

import boto3
import psycopg2
import psycopg2.extensions as ext
import pytest
from hapg import errors, runtime
from hapg.names import DB_NAME, Env, Rotation, Table
from psycopg2 import sql
from support import connect_as, create_state_table

from local.pgnode import PgNode, Sandbox
from local.rotation import STEPS, LocalRotation

MASTER = "hapg_master"
APP = Rotation.APP_USER
CLONE = APP + Rotation.CLONE_SUFFIX
GROUP = APP + Rotation.GROUP_SUFFIX
CLUSTER = "hapg-test-cluster"
TABLE = "hapg-test-state"
CREATE, SET, TEST, FINISH = STEPS


def password() -> str:
    return secrets.token_urlsafe(24)


# ---- the server ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def node():
    sandbox = Sandbox("hapg-rotation-")
    server = PgNode("writer", sandbox)
    try:
        server.initdb({"log_statement": "ddl", "password_encryption": "scram-sha-256"})
        server.start()
        server.sql(f"CREATE ROLE {MASTER} LOGIN CREATEROLE CREATEDB NOSUPERUSER")
        server.sql(f"CREATE DATABASE {DB_NAME} OWNER {MASTER}")
        # a table the master created before the app roles existed (GRANT ... ON ALL TABLES)
        server.sql(f"SET ROLE {MASTER}; CREATE TABLE accounts (id serial PRIMARY KEY, balance numeric)", dbname=DB_NAME)
        yield server
    finally:
        server.stop("immediate")
        sandbox.cleanup()


def admin_set_password(node: PgNode, role: str, value: str) -> None:
    """Set a password as the admin, sending a verifier (keeps plaintext out of the server log)."""
    conn = node.connect(DB_NAME)
    try:
        verifier = ext.encrypt_password(value, role, conn, "scram-sha-256")
        with conn.cursor() as cur:
            cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))
    finally:
        conn.close()


def logs_in(node: PgNode, user: str, pw: str) -> bool:
    try:
        connect_as(node, user, pw).close()
    except psycopg2.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return False
        raise
    return True


def verifier(node: PgNode, role: str) -> str | None:
    rows = node.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
    return rows[0][0] if rows else None


def role_exists(node: PgNode, role: str) -> bool:
    return bool(node.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)))


def reset_roles(node: PgNode) -> None:
    for role in (APP, CLONE, GROUP):
        if role_exists(node, role):
            node.sql(f"DROP OWNED BY {role}", dbname=DB_NAME)
            node.sql(f"DROP ROLE {role}")


# ---- one stack per test: moto secrets + state table, the function's environment --------------------
class Stack:
    def __init__(self, node: PgNode, monkeypatch):
        self.node = node
        self.monkeypatch = monkeypatch
        self.sm = boto3.client("secretsmanager")
        self.ddb = boto3.client("dynamodb")
        create_state_table(TABLE)
        reset_roles(node)
        self.master_password = password()
        admin_set_password(node, MASTER, self.master_password)
        self.app_password = password()
        base = {"engine": "postgres", "host": node.endpoint.host, "port": node.port, "dbname": DB_NAME}
        self.master = self.create_secret(
            "hapg-test/db/master", {"username": MASTER, "password": self.master_password, **base}
        )
        app = {"username": APP, "password": self.app_password, **base, "masterarn": self.master}
        self.app = self.create_secret("hapg-test/db/app", app)
        self.env = {
            Env.CLUSTER_ID: CLUSTER,
            Env.DB_SECRET_ARN: self.master,
            Env.APP_SECRET_ARN: self.app,
            Env.DB_NAME: DB_NAME,
            Env.DB_WRITER_ENDPOINT: str(node.endpoint),
            Env.DB_READER_ENDPOINT: str(node.endpoint),
            Env.DB_SSLMODE: "verify-full",
            Env.DB_SSL_ROOT_CERT: str(node.sandbox.tls.ca_cert),
            Env.DB_CONNECT_TIMEOUT: "3",
            Env.DB_STATEMENT_TIMEOUT_MS: "3000",
            Env.STATE_TABLE: TABLE,
            Env.SERVICE_NAME: "secret_rotation",
            Env.METRICS_NAMESPACE: "HAPostgreSQL",
        }
        self.configure()
        self.rotation = LocalRotation()

    def configure(self, **overrides: str) -> None:
        for key, value in {**self.env, **overrides}.items():
            self.monkeypatch.setenv(key, value)
        runtime.reset()

    def create_secret(self, name: str, value: dict) -> str:
        return self.sm.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]

    def value(self, secret: str, stage: str = "AWSCURRENT", version: str | None = None) -> dict:
        return self.rotation.value(secret, stage, version)

    def current_logs_in(self, secret: str) -> bool:
        v = self.value(secret)
        return logs_in(self.node, v["username"], v["password"])

    def lock(self, owner: str = "arn:aws:states:us-east-1:123456789012:execution:hapg-test-failover:x", ttl: int = 900):
        self.ddb.put_item(
            TableName=TABLE,
            Item={
                Table.PK: {"S": f"{Table.LOCK_PREFIX}{CLUSTER}"},
                Table.SK: {"S": Table.LOCK_SK},
                Table.OWNER: {"S": owner},
                Table.TTL: {"N": str(int(time.time()) + ttl)},
            },
        )

    def unlock(self) -> None:
        self.ddb.delete_item(
            TableName=TABLE, Key={Table.PK: {"S": f"{Table.LOCK_PREFIX}{CLUSTER}"}, Table.SK: {"S": Table.LOCK_SK}}
        )

    def all_passwords(self) -> set[str]:
        """Every password any version of either secret ever held."""
        out = {self.master_password, self.app_password}
        for secret in (self.master, self.app):
            for version in self.rotation.stages(secret):
                try:
                    raw = self.sm.get_secret_value(SecretId=secret, VersionId=version)["SecretString"]
                except self.sm.exceptions.ResourceNotFoundException:
                    continue
                try:
                    value = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(value, dict) and isinstance(value.get("password"), str):
                    out.add(value["password"])
        return out


@pytest.fixture
def stack(aws, node, monkeypatch):
    yield Stack(node, monkeypatch)
    node.thaw()
    if not node.is_running():
        node.start()


def bootstrap(stack: Stack) -> str:
    """The first rotation of the app secret after a deploy: it creates the app roles."""
    return stack.rotation.rotate(stack.app)


def assert_clean(exc: BaseException, stack: Stack) -> None:
    """No password (or verifier) in the error, its chain, or its formatted traceback."""
    text = "".join(traceback.format_exception(exc))
    for pw in stack.all_passwords():
        assert pw not in text
    assert "SCRAM-SHA-256$" not in text and "PASSWORD '" not in text


# ---- full rotations, a login checked after each step --------------------------------------------------
def test_master_single_user_rotation(stack):
    old = stack.master_password
    seen = {}

    def after(step, result):
        seen[step] = result
        pending = stack.value(stack.master, "AWSPENDING", token_box[0]) if step != FINISH else None
        if step == CREATE:
            assert pending["username"] == MASTER and pending["password"] != old
            assert logs_in(stack.node, MASTER, old) and not logs_in(stack.node, MASTER, pending["password"])
        elif step in (SET, TEST):  # single user: from setSecret on, only the pending password logs in
            assert logs_in(stack.node, MASTER, pending["password"]) and not logs_in(stack.node, MASTER, old)
            assert stack.value(stack.master)["password"] == old, "AWSCURRENT moves at finishSecret only"
        else:
            assert stack.current_logs_in(stack.master)
            assert stack.value(stack.master, "AWSPREVIOUS")["password"] == old

    token_box = [stack.rotation.stage(stack.master)]
    stack.rotation.resume(stack.master, token_box[0], STEPS, after)
    assert [seen[s]["outcome"] for s in STEPS] == ["created", "set", "tested", "finished"]
    assert {r["strategy"] for r in seen.values()} == {"single-user"}
    assert stack.rotation.stages(stack.master)[token_box[0]] == ["AWSPENDING", "AWSCURRENT"]
    new = stack.value(stack.master)["password"]
    assert len(new) == Rotation.PASSWORD_LENGTH and not set(new) & set(Rotation.EXCLUDE_CHARACTERS)


def test_app_rotation_bootstraps_the_roles_then_alternates_without_a_failed_login(stack):
    assert not role_exists(stack.node, APP), "first deploy: the app user does not exist yet"
    first = bootstrap(stack)
    assert stack.value(stack.app)["username"] == CLONE
    assert logs_in(stack.node, APP, stack.app_password), "created with the password the secret held"
    assert stack.current_logs_in(stack.app)

    # From now on, what applications hold (AWSCURRENT when the rotation starts) logs in at every step,
    # and so does AWSCURRENT whenever they re-read it.
    users = []

    def rotate_checking_logins():
        held = stack.value(stack.app)

        def after(step, result):
            assert logs_in(stack.node, held["username"], held["password"]), step
            assert stack.current_logs_in(stack.app), step
            if step == SET:
                pending = stack.value(stack.app, "AWSPENDING", result["version"])
                assert logs_in(stack.node, pending["username"], pending["password"])
            if step == FINISH:
                users.append(result["username"])

        return stack.rotation.rotate(stack.app, after)

    second = rotate_checking_logins()
    previous = stack.value(stack.app, "AWSPREVIOUS")
    third = rotate_checking_logins()
    assert len({first, second, third}) == 3
    assert users == [APP, CLONE], "the users alternate"
    # after a rotation AWSCURRENT and AWSPREVIOUS log in; the one before that was replaced
    assert stack.current_logs_in(stack.app)
    latest_previous = stack.value(stack.app, "AWSPREVIOUS")
    assert logs_in(stack.node, latest_previous["username"], latest_previous["password"])
    assert not logs_in(stack.node, previous["username"], previous["password"])


def test_app_roles_hold_least_privilege(stack):
    bootstrap(stack)
    rows = stack.node.sql(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
        "FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname",
        ([APP, CLONE, GROUP],),
    )
    assert rows == [
        (APP, True, False, False, False, False, False),
        (CLONE, True, False, False, False, False, False),
        (GROUP, False, False, False, False, False, False),
    ]
    members = stack.node.sql(
        "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
        "JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = %s ORDER BY 1",
        (GROUP,),
    )
    assert members == [(APP,), (CLONE,)]
    # a table the master creates later is covered by the default privileges
    stack.node.sql(f"SET ROLE {MASTER}; CREATE TABLE IF NOT EXISTS later (id int)", dbname=DB_NAME)
    current = stack.value(stack.app)
    for user, pw in ((APP, stack.app_password), (current["username"], current["password"])):
        conn = connect_as(stack.node, user, pw)
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO accounts (balance) VALUES (1) RETURNING id")
                (row_id,) = cur.fetchone()
                cur.execute("UPDATE accounts SET balance = 2 WHERE id = %s", (row_id,))
                cur.execute("DELETE FROM accounts WHERE id = %s", (row_id,))
                cur.execute("INSERT INTO later VALUES (1)")
                cur.execute("SELECT count(*) FROM later")
                for forbidden in (
                    "CREATE TABLE nope (id int)",
                    "CREATE ROLE nope",
                    "CREATE DATABASE nope",
                    "DROP TABLE accounts",
                    "SELECT * FROM pg_authid",
                ):
                    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                        cur.execute(forbidden)
        finally:
            conn.close()
    stack.node.sql("DROP TABLE later", dbname=DB_NAME)


# ---- every step is safe to re-run ----------------------------------------------------------------------
@pytest.mark.parametrize("which", ["master", "app"])
def test_each_step_twice(stack, which):
    if which == "app":
        bootstrap(stack)
    secret = getattr(stack, which)
    token = stack.rotation.stage(secret)
    first = stack.rotation.step(secret, token, CREATE)
    pending = stack.value(secret, "AWSPENDING", token)
    again = stack.rotation.step(secret, token, CREATE)
    assert (first["outcome"], again["outcome"]) == ("created", "kept")
    assert stack.value(secret, "AWSPENDING", token) == pending, "createSecret keeps the existing AWSPENDING value"

    assert stack.rotation.step(secret, token, SET)["outcome"] == "set"
    hashed = verifier(stack.node, pending["username"])
    assert stack.rotation.step(secret, token, SET)["outcome"] == "already-set"
    assert verifier(stack.node, pending["username"]) == hashed, "the pending password was tried first: no ALTER"

    for _ in range(2):
        assert stack.rotation.step(secret, token, TEST)["outcome"] == "tested"
    assert stack.rotation.step(secret, token, FINISH)["outcome"] == "finished"
    stages = stack.rotation.stages(secret)
    assert stack.rotation.step(secret, token, FINISH)["outcome"] == "already-current"
    assert stack.rotation.stages(secret) == stages
    for step in (CREATE, SET, TEST):  # a late retry of an earlier step changes nothing either
        assert stack.rotation.step(secret, token, step)["outcome"] == "already-current"
    assert stack.current_logs_in(secret)


# ---- refusals: a clear error, nothing changed, the old password still logs in --------------------------
class Before:
    """What must not change when a step refuses."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.stages = self.labels()
        self.current = {s: stack.value(s) for s in (stack.master, stack.app)}
        self.verifiers = {r: verifier(stack.node, r) for r in (MASTER, APP, CLONE, GROUP)}

    def labels(self) -> dict[str, dict[str, list[str]]]:
        """Staging labels per version (a version left without labels is deprecated: ignored)."""
        s = self.stack
        return {x: {v: st for v, st in s.rotation.stages(x).items() if st} for x in (s.master, s.app)}

    def assert_unchanged(self, exc: BaseException | None = None) -> None:
        s = self.stack
        assert self.labels() == self.stages
        assert {r: verifier(s.node, r) for r in (MASTER, APP, CLONE, GROUP)} == self.verifiers
        assert logs_in(s.node, MASTER, self.current[s.master]["password"]), "the old master password logs in"
        if self.verifiers[self.current[s.app]["username"]]:
            assert s.current_logs_in(s.app), "the old app password logs in"
        if exc is not None:
            assert_clean(exc, s)


def assert_refused(stack: Stack, secret: str, token: str, message: str, steps=STEPS) -> None:
    """Every step refuses with RotationError(message) and changes nothing."""
    before = Before(stack)
    for step in steps:
        with pytest.raises(errors.RotationError, match=message) as caught:
            stack.rotation.step(secret, token, step)
        before.assert_unchanged(caught.value)


def _other_version(stack: Stack, secret: str) -> str:
    """A version staged with a label of our own only: not AWSPENDING."""
    token = str(uuid.uuid4())
    value = {**stack.value(secret), "password": password()}
    stack.sm.put_secret_value(
        SecretId=secret, ClientRequestToken=token, SecretString=json.dumps(value), VersionStages=["MANUAL"]
    )
    return token


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("disabled", "rotation is not enabled"),
        ("unknown-token", "has no stage for rotation"),
        ("wrong-stage", "is not staged AWSPENDING"),
        ("foreign-secret", "neither the master secret nor the application secret"),
    ],
)
def test_staging_refusals(stack, case, message):
    secret = stack.master
    token = stack.rotation.stage(secret)
    if case == "disabled":
        stack.sm.cancel_rotate_secret(SecretId=secret)
    elif case == "unknown-token":
        token = str(uuid.uuid4())
    elif case == "wrong-stage":
        token = _other_version(stack, secret)
    elif case == "foreign-secret":
        secret = stack.create_secret("someone-else/db", stack.value(stack.master))
        token = stack.rotation.stage(secret)
    assert_refused(stack, secret, token, message)


def test_a_current_token_returns_early(stack):
    token = next(v for v, s in stack.rotation.stages(stack.master).items() if "AWSCURRENT" in s)
    stack.rotation.stage(stack.master)  # rotation on; the current version keeps its label
    before = Before(stack)
    stack.lock()  # not even the lock is read: nothing would change
    for step in STEPS:
        assert stack.rotation.step(stack.master, token, step)["outcome"] == "already-current"
    before.assert_unchanged()


def _broken(stack: Stack, which: str, case: str) -> dict:
    current = stack.value(getattr(stack, which))
    other = APP if which == "app" else MASTER  # after bootstrap() the app's current user is the clone
    good = {**current, "username": other, "password": password()}
    return {
        "username-differs": {**good, "username": "someone_else"},
        "same-user": {**good, "username": current["username"]},
        "host-differs": {**good, "host": "db.elsewhere.example"},
        "port-differs": {**good, "port": 6543},
        "dbname-differs": {**good, "dbname": "otherdb"},
        "masterarn-differs": {**good, "masterarn": stack.app},
        "missing-password": {k: v for k, v in good.items() if k != "password"},
        "bad-password": {**good, "password": "p@ss/word:" + password()},
        "short-password": {**good, "password": "x" * 8},
        "same-password": {**good, "password": current["password"]},
        "not-json": "hunter2-is-not-json",
    }[case]


BROKEN = [
    ("master", "username-differs", "username 'someone_else' differs"),
    ("master", "host-differs", "host differs from the current value"),
    ("master", "port-differs", "port differs"),
    ("master", "missing-password", "password is missing"),
    ("master", "bad-password", "characters that break connection strings"),
    ("master", "short-password", "password length"),
    ("master", "same-password", "equals the current one"),
    ("master", "not-json", "is not a JSON object"),
    ("app", "same-user", "username 'hapg_app_clone' differs from 'hapg_app'"),
    ("app", "username-differs", "differs from 'hapg_app'"),
    ("app", "host-differs", "host differs"),
    ("app", "dbname-differs", "dbname differs"),
    ("app", "masterarn-differs", "masterarn differs"),
    ("app", "bad-password", "characters that break connection strings"),
]


@pytest.mark.parametrize(("which", "case", "message"), BROKEN)
def test_a_broken_pending_value_is_refused(stack, which, case, message):
    if which == "app":
        bootstrap(stack)  # app current: hapg_app_clone; its alternate is hapg_app
    secret = getattr(stack, which)
    token = stack.rotation.stage(secret)
    stack.rotation.put_pending(secret, token, _broken(stack, which, case))
    # testSecret accepts a pending value equal to the current one (the configuration test)
    steps = (CREATE, SET, FINISH) if (which, case) == ("master", "same-password") else STEPS
    assert_refused(stack, secret, token, message, steps)


def test_setsecret_before_createsecret_is_refused(stack):
    token = stack.rotation.stage(stack.master)
    before = Before(stack)
    with pytest.raises(errors.RotationError, match="has no value") as caught:
        stack.rotation.step(stack.master, token, SET)
    before.assert_unchanged(caught.value)


@pytest.mark.parametrize(
    ("which", "change", "message"),
    [
        ("master", {"host": "db.elsewhere.example"}, "is not an endpoint of this cluster"),
        ("master", {"port": 6543}, "is not the cluster's port"),
        ("master", {"dbname": "postgres"}, "is not this stack's database"),
        (
            "master",
            {"masterarn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"},
            "must not name a masterarn",
        ),
        ("master", {"engine": "mysql"}, "engine must be one of"),
        ("master", {"username": "rdsadmin"}, "is reserved"),
        ("app", {"masterarn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"}, "not this stack's master"),
        ("app", {"masterarn": None}, "masterarn is missing"),
    ],
)
def test_a_current_value_for_another_target_is_refused(stack, which, change, message):
    secret = getattr(stack, which)
    value = {k: v for k, v in {**stack.value(secret), **change}.items() if v is not None}
    stack.sm.put_secret_value(SecretId=secret, SecretString=json.dumps(value))  # becomes AWSCURRENT
    token = stack.rotation.stage(secret)
    assert_refused(stack, secret, token, message)


def test_app_password_changed_outside_rotation_is_refused(stack):
    bootstrap(stack)
    current = stack.value(stack.app)
    by_hand = password()
    admin_set_password(stack.node, current["username"], by_hand)  # someone reset it by hand
    token = stack.rotation.stage(stack.app)
    stack.rotation.step(stack.app, token, CREATE)
    before = Before(stack)
    with pytest.raises(errors.AuthenticationFailed, match="changed outside rotation") as caught:
        stack.rotation.step(stack.app, token, SET)
    assert_clean(caught.value, stack)
    assert before.labels() == before.stages
    assert {r: verifier(stack.node, r) for r in (APP, CLONE, GROUP)} == {
        r: before.verifiers[r] for r in (APP, CLONE, GROUP)
    }
    assert logs_in(stack.node, current["username"], by_hand), "the password in use still logs in"


@pytest.mark.parametrize("attribute", ["CREATEDB", "CREATEROLE", "SUPERUSER", "IN ROLE pg_write_server_files"])
def test_a_privileged_app_role_is_refused(stack, attribute):
    bootstrap(stack)  # current: the clone; next: hapg_app
    if attribute.startswith("IN ROLE"):
        stack.node.sql(f"GRANT pg_write_server_files TO {APP}")
    else:
        stack.node.sql(f"ALTER ROLE {APP} {attribute}")
    token = stack.rotation.stage(stack.app)
    stack.rotation.step(stack.app, token, CREATE)
    before = Before(stack)
    with pytest.raises(errors.RotationError, match=f"role '{APP}' has") as caught:
        stack.rotation.step(stack.app, token, SET)
    before.assert_unchanged(caught.value)


def test_master_that_cannot_log_in_is_refused(stack):
    admin_set_password(stack.node, MASTER, password())  # the master password was reset outside rotation
    token = stack.rotation.stage(stack.master)
    stack.rotation.step(stack.master, token, CREATE)
    app_token = stack.rotation.stage(stack.app)
    stack.rotation.step(stack.app, app_token, CREATE)
    hashed = verifier(stack.node, MASTER)
    with pytest.raises(
        errors.AuthenticationFailed, match="neither the AWSPENDING, AWSCURRENT nor AWSPREVIOUS"
    ) as caught:
        stack.rotation.step(stack.master, token, SET)
    assert_clean(caught.value, stack)
    with pytest.raises(errors.AuthenticationFailed, match="master secret does not log in") as caught:
        stack.rotation.step(stack.app, app_token, SET)
    assert_clean(caught.value, stack)
    assert verifier(stack.node, MASTER) == hashed, "the master's password is what it was"
    assert not role_exists(stack.node, APP) and not role_exists(stack.node, CLONE)


# ---- the failover lock ------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", STEPS)
def test_no_step_runs_while_the_failover_lock_is_held(stack, step):
    bootstrap(stack)
    token = stack.rotation.stage(stack.app)
    done = {CREATE: (), SET: (CREATE,), TEST: (CREATE, SET), FINISH: (CREATE, SET, TEST)}[step]
    stack.rotation.resume(stack.app, token, done)
    stack.lock(owner="arn:aws:states:us-east-1:123456789012:execution:hapg-test-failover:switchover-1")
    before = Before(stack)
    pending_before = stack.rotation.stages(stack.app)[token]
    with pytest.raises(errors.LockHeld, match="switchover-1 holds the lock") as caught:
        stack.rotation.step(stack.app, token, step)
    assert isinstance(caught.value, errors.RetryableError), "Secrets Manager retries it later"
    before.assert_unchanged(caught.value)
    assert stack.rotation.stages(stack.app)[token] == pending_before
    if step == CREATE:
        with pytest.raises(stack.sm.exceptions.ResourceNotFoundException):
            stack.value(stack.app, "AWSPENDING", token)
    stack.lock(ttl=-1)  # an expired lock is no lock
    stack.rotation.resume(stack.app, token)  # Secrets Manager's retry: every step again, the same token
    assert stack.rotation.stages(stack.app)[token] == ["AWSPENDING", "AWSCURRENT"]
    assert stack.current_logs_in(stack.app)


def test_lock_needs_the_state_table(stack):
    stack.configure(**{Env.STATE_TABLE: ""})
    token = stack.rotation.stage(stack.master)
    with pytest.raises(errors.ConfigError, match="STATE_TABLE is required"):
        stack.rotation.step(stack.master, token, CREATE)


# ---- the database unreachable during setSecret --------------------------------------------------------------
@pytest.mark.parametrize("which", ["master", "app"])
def test_database_down_during_setsecret(stack, which):
    if which == "app":
        bootstrap(stack)
    secret = getattr(stack, which)
    token = stack.rotation.stage(secret)
    stack.rotation.step(secret, token, CREATE)
    before = Before(stack)
    stack.node.stop("fast")
    try:
        with pytest.raises(errors.DatabaseUnavailable, match="connect 127.0.0.1") as caught:
            stack.rotation.step(secret, token, SET)
        assert isinstance(caught.value, errors.RetryableError)
    finally:
        stack.node.start()
    before.assert_unchanged(caught.value)
    pending = stack.value(secret, "AWSPENDING", token)
    assert not logs_in(stack.node, pending["username"], pending["password"])
    stack.rotation.resume(secret, token, (SET, TEST, FINISH))
    assert stack.current_logs_in(secret)


def test_database_frozen_during_setsecret(stack):
    stack.configure(**{Env.DB_CONNECT_TIMEOUT: "1"})
    token = stack.rotation.stage(stack.master)
    stack.rotation.step(stack.master, token, CREATE)
    before = Before(stack)
    stack.node.freeze()
    try:
        with pytest.raises(errors.DatabaseTimeout, match="no answer from the server within 1s") as caught:
            stack.rotation.step(stack.master, token, SET)
    finally:
        stack.node.thaw()
    before.assert_unchanged(caught.value)


def test_a_failed_password_statement_reports_no_statement(stack):
    """ALTER ROLE waits for a lock a DBA holds, times out (lock_timeout 2 s): our error has no chain
    to the driver's error (which carries the statement) and no password or verifier."""
    bootstrap(stack)  # next: hapg_app gets a new password
    token = stack.rotation.stage(stack.app)
    stack.rotation.step(stack.app, token, CREATE)
    before = Before(stack)
    dba = stack.node.connect(DB_NAME)
    dba.autocommit = False
    try:
        with dba.cursor() as cur:
            cur.execute(f"ALTER ROLE {APP} CONNECTION LIMIT 50")
        with pytest.raises(errors.DatabaseTimeout, match=r"LockNotAvailable \(SQLSTATE 55P03\)") as caught:
            stack.rotation.step(stack.app, token, SET)
    finally:
        dba.rollback()
        dba.close()
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    before.assert_unchanged(caught.value)
    stack.rotation.resume(stack.app, token, (SET, TEST, FINISH))
    assert stack.current_logs_in(stack.app)


# ---- Secrets Manager's configuration test, concurrent rotations ------------------------------------------
def test_configuration_test_runs_testsecret_on_a_copy_of_the_current_value(stack):
    """RotateImmediately=false (the master's RotationSchedule): Secrets Manager stages a copy of the
    current value and runs testSecret. For the app secret on a fresh stack it would fail: its user
    does not exist yet, which is why the app's schedule rotates immediately instead."""
    before = Before(stack)
    assert stack.rotation.test_configuration(stack.master)["outcome"] == "tested"
    with pytest.raises(errors.AuthenticationFailed, match=f"does not log in as {APP}"):
        stack.rotation.test_configuration(stack.app)
    before.assert_unchanged()
    bootstrap(stack)
    assert stack.rotation.test_configuration(stack.app)["outcome"] == "tested"


def test_app_rotation_while_the_master_is_mid_rotation(stack):
    """Both schedules may fire the same night: between the master's setSecret and finishSecret only
    the master's AWSPENDING logs in, and the app rotation uses it."""
    bootstrap(stack)
    master_token = stack.rotation.stage(stack.master)
    stack.rotation.resume(stack.master, master_token, (CREATE, SET))
    assert not stack.current_logs_in(stack.master)
    stack.rotation.rotate(stack.app)
    assert stack.current_logs_in(stack.app)
    stack.rotation.resume(stack.master, master_token, (TEST, FINISH))
    assert stack.current_logs_in(stack.master)


def test_concurrent_logins_during_app_rotations_never_fail(stack):
    """An application re-reading AWSCURRENT and logging in, in a loop, across two rotations."""
    bootstrap(stack)
    current = {"value": stack.value(stack.app)}
    stop = threading.Event()
    outcomes: list[bool] = []

    def application():
        while not stop.is_set():
            v = current["value"]
            outcomes.append(logs_in(stack.node, v["username"], v["password"]))

    def logins_after(seen: int) -> int:
        """Until the application has logged in again after `seen` logins (it dies on an unexpected
        error); bounded."""
        deadline = time.monotonic() + 30
        while len(outcomes) < seen + 2 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        return len(outcomes)

    marks: list[tuple[str, int]] = []  # (step, logins so far) after each step of each rotation

    def after(step, _result):
        current.update(value=stack.value(stack.app))
        marks.append((step, logins_after(len(outcomes))))

    worker = threading.Thread(target=application, daemon=True)
    worker.start()
    try:
        for _ in range(2):
            marks.append(("start", len(outcomes)))
            stack.rotation.rotate(stack.app, after=after)
    finally:
        stop.set()
        worker.join(10)
    assert [step for step, _ in marks] == ["start", *STEPS] * 2
    for rotation in (marks[:5], marks[5:]):
        counts = [n for _, n in rotation]
        assert counts == sorted(set(counts)), f"no login after every step: {marks}"
    assert outcomes and all(outcomes), f"{outcomes.count(False)} failed logins out of {len(outcomes)}"


def emitted(emf: list[dict]) -> list[float]:
    """SecretRotationSucceeded values in EMF records (Powertools writes a value or a list)."""
    values = [m["SecretRotationSucceeded"] for m in emf if "SecretRotationSucceeded" in m]
    return [x for v in values for x in (v if isinstance(v, list) else [v])]


# ---- nothing secret in logs, results, metrics or the server log -------------------------------------------
def logged(caplog) -> str:
    """Every log record the rotation emitted, with its extra fields (what Powertools puts in the JSON)."""
    return "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records)


def test_no_password_in_logs_results_or_server_log(stack, capfd, caplog):
    caplog.set_level("INFO")
    log_start = stack.node.log_file.stat().st_size
    results = [
        stack.rotation.step(secret, token, step)
        for secret in (stack.master, stack.app)
        for token in [stack.rotation.stage(secret)]
        for step in STEPS
    ]
    stack.lock()
    with pytest.raises(errors.LockHeld):
        stack.rotation.rotate(stack.app)
    stack.unlock()
    out = capfd.readouterr()
    records = logged(caplog)
    text = out.out + out.err + records + json.dumps(results)
    passwords = stack.all_passwords()
    assert len(passwords) == 4  # both secrets: the first value and the rotated one
    for pw in passwords:
        assert pw not in text
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("rotation step done") == 8 and "rotation step deferred: the failover lock is held" in messages
    emf = [json.loads(line) for line in out.out.splitlines() if line.startswith("{") and '"_aws"' in line]
    assert emitted(emf) == [1.0, 1.0]
    assert all(m["ClusterId"] == CLUSTER for m in emf if "SecretRotationSucceeded" in m)
    server_log = stack.node.log_file.read_text()[log_start:]
    assert server_log.count("hapg-secret_rotation LOG:  statement: CREATE ROLE") == 3  # group, hapg_app, clone
    assert "PASSWORD 'SCRAM-SHA-256$" in server_log, "log_statement=ddl sees the verifier ..."
    for pw in passwords:
        assert pw not in server_log, "... and never the password"


def test_a_failed_step_counts_as_a_failed_rotation(stack, capfd, caplog):
    token = stack.rotation.stage(stack.master)
    stack.rotation.put_pending(stack.master, token, {**stack.value(stack.master), "password": "tooShort1"})
    with pytest.raises(errors.RotationError):
        stack.rotation.step(stack.master, token, SET)
    out = capfd.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    assert emitted(emf) == [0.0]
    records = logged(caplog)
    assert "rotation step failed" in records and "password length" in records
    assert "tooShort1" not in records + out
