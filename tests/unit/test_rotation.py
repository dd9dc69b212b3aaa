"""Secret rotation: the event, the staging rules and the secret-value checks (pure), the Secrets Manager port."""

import json

import boto3
import pytest
from hapg import errors, roles, rotation, rotation_rules, secret_store
from hapg.config import DbSettings
from hapg.models import Endpoint
from hapg.names import Rotation
from hapg.rotation_rules import Step, Strategy

TOKEN = "0b5c6f0e-2f3a-4a55-9a7d-0c1d2e3f4a5b"
MASTER_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/master-AbCdEf"
APP_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hapg-dev/db/app-GhIjKl"
WRITER = "hapg-dev-cluster.cluster-abc.us-east-1.rds.amazonaws.com"
READER = "hapg-dev-cluster.cluster-ro-abc.us-east-1.rds.amazonaws.com"
PASSWORD = "Aa1!Bb2$Cc3&Dd4(Ee5)Ff6*Gg7+Hh8,"  # 32 chars, none excluded
NEW_PASSWORD = "Zz9!Yy8$Xx7&Ww6(Vv5)Uu4*Tt3+Ss2,"
ROTATION_TOKEN = "rt-" + "5" * 40


def db(proxy: str | None = None) -> DbSettings:
    return DbSettings(
        secret_arn=MASTER_ARN,
        dbname="financialdb",
        writer=Endpoint(WRITER, 5432),
        reader=Endpoint(READER, 5432),
        sslmode="verify-full",
        sslrootcert="/ca.pem",
        connect_timeout_s=5,
        statement_timeout_ms=5000,
        proxy=Endpoint(proxy, 5432) if proxy else None,
    )


def master(**change) -> dict:
    value = {"username": "hapg_admin", "password": PASSWORD, "engine": "postgres", "host": WRITER, "port": 5432}
    value.update({"dbClusterIdentifier": "hapg-dev-cluster"})
    return {k: v for k, v in {**value, **change}.items() if v is not None}


def app(**change) -> dict:
    value = {
        "username": Rotation.APP_USER,
        "password": PASSWORD,
        "engine": "postgres",
        "host": WRITER,
        "port": 5432,
        "dbname": "financialdb",
        "masterarn": MASTER_ARN,
    }
    return {k: v for k, v in {**value, **change}.items() if v is not None}


# ---- the event -------------------------------------------------------------------------------------
def event(**change):
    base = {"SecretId": MASTER_ARN, "ClientRequestToken": TOKEN, "Step": "createSecret"}
    return {k: v for k, v in {**base, **change}.items() if v is not None}


@pytest.mark.parametrize("step", Step.ALL)
def test_event_parses(step):
    request = rotation.RotationRequest.parse(event(Step=step, RotationToken=ROTATION_TOKEN, Extra="ignored"))
    assert (request.secret_id, request.token, request.step) == (MASTER_ARN, TOKEN, step)
    assert request.rotation_token == ROTATION_TOKEN
    assert ROTATION_TOKEN not in repr(request), "the rotation token is sensitive"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["not", "a", "dict"], "must be a JSON object"),
        (event(SecretId=None), "SecretId must be non-empty strings"),
        (event(SecretId=""), "SecretId must be non-empty strings"),
        (event(ClientRequestToken=None, Step=None), "ClientRequestToken, Step must be non-empty strings"),
        (event(Step="deleteSecret"), "unknown Step 'deleteSecret'"),
        (event(Step=3), "Step must be non-empty strings"),
        (event(ClientRequestToken="short"), "ClientRequestToken must be 32-64"),
        (event(ClientRequestToken=TOKEN + "; DROP"), "ClientRequestToken must be 32-64"),
        (event(ClientRequestToken=TOKEN + "\n"), "ClientRequestToken must be 32-64"),
        (event(RotationToken=""), "RotationToken must be a non-empty string"),
        (event(RotationToken=5), "RotationToken must be a non-empty string"),
        (event(RotationToken="x" * 35), "RotationToken must be 36-256 characters"),
    ],
)
def test_bad_events_are_refused(bad, message):
    with pytest.raises(errors.InvalidInput, match=message):
        rotation.RotationRequest.parse(bad)


# ---- which secret, which stage ---------------------------------------------------------------------
def test_strategy_follows_the_secret_not_its_value():
    assert rotation_rules.strategy_for(MASTER_ARN, MASTER_ARN, APP_ARN) == Strategy.SINGLE_USER
    assert rotation_rules.strategy_for(APP_ARN, MASTER_ARN, APP_ARN) == Strategy.ALTERNATING
    with pytest.raises(errors.RotationError, match="neither the master secret nor"):
        rotation_rules.strategy_for(APP_ARN, MASTER_ARN, None)
    with pytest.raises(errors.RotationError, match="neither"):
        rotation_rules.strategy_for(MASTER_ARN + "x", MASTER_ARN, APP_ARN)


def metadata(stages: dict, enabled=True) -> dict:
    out = {"ARN": MASTER_ARN, "Name": "hapg-dev/db/master", "VersionIdsToStages": stages}
    if enabled is not None:
        out["RotationEnabled"] = enabled
    return out


def test_staging_rules():
    assert rotation_rules.already_current(metadata({TOKEN: ["AWSPENDING"], "v1": ["AWSCURRENT"]}), TOKEN) is False
    assert rotation_rules.already_current(metadata({TOKEN: ["AWSCURRENT", "AWSPENDING"]}), TOKEN) is True
    assert rotation_rules.already_current(metadata({TOKEN: ["AWSCURRENT"]}), TOKEN) is True


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (metadata({TOKEN: ["AWSPENDING"]}, enabled=False), "rotation is not enabled on secret hapg-dev/db/master"),
        (metadata({TOKEN: ["AWSPENDING"]}, enabled=None), "rotation is not enabled"),
        (metadata({"v1": ["AWSCURRENT"]}), f"version {TOKEN} of secret hapg-dev/db/master has no stage"),
        (metadata({TOKEN: ["AWSPREVIOUS"]}), r"is not staged AWSPENDING \(stages: AWSPREVIOUS\)"),
        (metadata({TOKEN: []}), r"is not staged AWSPENDING \(stages: -\)"),
    ],
)
def test_staging_refusals(meta, message):
    with pytest.raises(errors.RotationError, match=message):
        rotation_rules.already_current(meta, TOKEN)


def test_current_version():
    assert (
        rotation_rules.current_version(metadata({TOKEN: ["AWSPENDING"], "v1": ["AWSPREVIOUS"], "v2": ["AWSCURRENT"]}))
        == "v2"
    )
    assert rotation_rules.current_version(metadata({})) is None


# ---- alternating users ---------------------------------------------------------------------------
def test_alternate_and_group():
    assert rotation_rules.alternate("hapg_app") == "hapg_app_clone"
    assert rotation_rules.alternate("hapg_app_clone") == "hapg_app"
    assert rotation_rules.alternate(rotation_rules.alternate("svc")) == "svc"
    assert rotation_rules.group_role("hapg_app") == rotation_rules.group_role("hapg_app_clone") == "hapg_app_rw"


def test_new_pending():
    assert rotation_rules.new_pending(master(), NEW_PASSWORD, Strategy.SINGLE_USER) == master(password=NEW_PASSWORD)
    pending = rotation_rules.new_pending(app(), NEW_PASSWORD, Strategy.ALTERNATING)
    assert pending == app(username="hapg_app_clone", password=NEW_PASSWORD)
    back = rotation_rules.new_pending(pending, PASSWORD, Strategy.ALTERNATING)
    assert back["username"] == "hapg_app"


# ---- secret values -------------------------------------------------------------------------------------
def test_valid_secrets_have_no_problems():
    assert rotation_rules.secret_problems(master(), Strategy.SINGLE_USER) == []
    assert rotation_rules.secret_problems(master(port="5432"), Strategy.SINGLE_USER) == []
    assert rotation_rules.secret_problems(app(), Strategy.ALTERNATING) == []


@pytest.mark.parametrize(
    ("value", "strategy", "problem"),
    [
        ("not a dict", Strategy.SINGLE_USER, "not a JSON object"),
        (master(username=None), Strategy.SINGLE_USER, "username is missing"),
        (master(username='x"; DROP ROLE y; --'), Strategy.SINGLE_USER, "not a plain PostgreSQL role name"),
        (master(username="hapg_admin\n"), Strategy.SINGLE_USER, "not a plain PostgreSQL role name"),
        (master(username="pg_monitor"), Strategy.SINGLE_USER, "is reserved"),
        (master(username="rdsadmin"), Strategy.SINGLE_USER, "is reserved"),
        (master(username="rds_superuser"), Strategy.SINGLE_USER, "is reserved"),
        (app(username="a" * 60), Strategy.ALTERNATING, "too long for its alternate"),
        (master(password=None), Strategy.SINGLE_USER, "password is missing"),
        (master(password=""), Strategy.SINGLE_USER, "password is missing"),
        (master(password=123), Strategy.SINGLE_USER, "password is missing"),
        (master(host=None), Strategy.SINGLE_USER, "host is missing"),
        (master(host="a,b"), Strategy.SINGLE_USER, "not a single host name"),
        (master(host="a b"), Strategy.SINGLE_USER, "not a single host name"),
        (master(engine="mysql"), Strategy.SINGLE_USER, "engine must be one of"),
        (master(engine=None), Strategy.SINGLE_USER, "engine must be one of"),
        (master(port=0), Strategy.SINGLE_USER, "port is not a TCP port"),
        (master(port=True), Strategy.SINGLE_USER, "port is not a TCP port"),
        (master(port="54x"), Strategy.SINGLE_USER, "port is not a TCP port"),
        (master(dbname=""), Strategy.SINGLE_USER, "dbname is not a non-empty string"),
        (master(masterarn=MASTER_ARN), Strategy.SINGLE_USER, "must not name a masterarn"),
        (app(masterarn=None), Strategy.ALTERNATING, "masterarn is missing"),
        (app(masterarn="hapg-dev/db/master"), Strategy.ALTERNATING, "not a Secrets Manager ARN"),
    ],
)
def test_secret_problems(value, strategy, problem):
    problems = rotation_rules.secret_problems(value, strategy)
    assert any(problem in p for p in problems), problems
    assert not any(PASSWORD in p for p in problems)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short1!A", "length must be 16-128"),
        ("x" * 129, "length must be 16-128"),
        ("abcdefghijklmnop qr", "printable ASCII without spaces"),
        ("abcdefghijklmnopé", "printable ASCII"),
        ("abcdefghijklmnop@", "break connection strings"),
        ("abcdefghijklmnop/", "break connection strings"),
        ("abcdefghijklmnop'", "break connection strings"),
        (None, "not a string"),
    ],
)
def test_password_rules(password, problem):
    assert any(problem in p for p in rotation_rules.password_problems(password))


def test_a_good_password_passes():
    assert rotation_rules.password_problems(PASSWORD) == []


def test_exclusions_cover_connection_string_syntax():
    # libpq keyword/value quoting, URI delimiters and percent-encoding, and what RDS refuses
    assert set("\"'\\ @/:?#[]%") <= set(Rotation.EXCLUDE_CHARACTERS)


# ---- pending vs current ----------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [Step.CREATE, Step.SET, Step.TEST, Step.FINISH])
def test_a_consistent_pending_value(step):
    assert rotation_rules.pending_problems(master(), master(password=NEW_PASSWORD), Strategy.SINGLE_USER, step) == []
    pending = app(username="hapg_app_clone", password=NEW_PASSWORD)
    assert rotation_rules.pending_problems(app(), pending, Strategy.ALTERNATING, step) == []


def test_testsecret_accepts_a_copy_of_the_current_value_only():
    """RotateImmediately=false: Secrets Manager stages the current value itself and runs testSecret."""
    for current, strategy in ((master(), Strategy.SINGLE_USER), (app(), Strategy.ALTERNATING)):
        assert rotation_rules.pending_problems(current, dict(current), strategy, Step.TEST) == []
        for step in (Step.CREATE, Step.SET, Step.FINISH):
            assert "the pending password equals the current one" in rotation_rules.pending_problems(
                current, dict(current), strategy, step
            )
    # anything but an exact copy gets the full rules, in testSecret too
    same_user = app(password=NEW_PASSWORD)
    assert rotation_rules.pending_problems(app(), same_user, Strategy.ALTERNATING, Step.TEST) == [
        "username 'hapg_app' differs from 'hapg_app_clone'"
    ]


@pytest.mark.parametrize(
    ("strategy", "change", "problem"),
    [
        (Strategy.SINGLE_USER, {"username": "someone_else"}, "username 'someone_else' differs from 'hapg_admin'"),
        (Strategy.SINGLE_USER, {"host": "evil.example"}, f"host differs from the current value ('{WRITER}' vs"),
        (Strategy.SINGLE_USER, {"port": 6543}, "port differs from the current value (5432 vs 6543)"),
        (Strategy.SINGLE_USER, {"engine": "aurora-postgresql"}, "engine differs"),
        (Strategy.SINGLE_USER, {"dbClusterIdentifier": "other"}, "dbClusterIdentifier differs from the current value"),
        (Strategy.SINGLE_USER, {"extra": "x"}, "extra differs from the current value"),
        (Strategy.SINGLE_USER, {"password": PASSWORD}, "equals the current one"),
        (Strategy.SINGLE_USER, {"password": "p@" + NEW_PASSWORD[2:]}, "break connection strings"),
        (Strategy.ALTERNATING, {"username": "hapg_app"}, "username 'hapg_app' differs from 'hapg_app_clone'"),
        (Strategy.ALTERNATING, {"masterarn": APP_ARN}, "masterarn differs"),
        (Strategy.ALTERNATING, {"dbname": "postgres"}, "dbname differs"),
        (Strategy.ALTERNATING, {"password": None}, "password is missing"),
    ],
)
def test_pending_problems(strategy, change, problem):
    if strategy == Strategy.SINGLE_USER:
        current, pending = master(), master(**{"password": NEW_PASSWORD, **change})
    else:
        current, pending = app(), app(username="hapg_app_clone", password=NEW_PASSWORD)
        pending = {k: v for k, v in {**pending, **change}.items() if v is not None}
    for step in Step.ALL:
        problems = rotation_rules.pending_problems(current, pending, strategy, step)
        if step == Step.TEST and pending == current:
            assert problems == [], "the configuration test's copy"
            continue
        assert any(problem in p for p in problems), (step, problems)
        assert not any(NEW_PASSWORD in p or PASSWORD in p for p in problems), "problems never quote passwords"


def test_unknown_keys_are_compared_but_not_quoted():
    problems = rotation_rules.pending_problems(
        master(token="old-token"), master(token="new-token", password=NEW_PASSWORD), Strategy.SINGLE_USER, Step.SET
    )
    assert problems == ["token differs from the current value"]


# ---- the cluster the secret names -----------------------------------------------------------------
def test_targets_of_this_cluster():
    assert rotation_rules.target_problems(master(), db()) == []
    assert rotation_rules.target_problems(master(host=WRITER.upper()), db()) == [], "DNS names are case-insensitive"
    assert rotation_rules.target_problems(master(host=READER), db()) == []
    assert rotation_rules.target_problems(master(host="proxy.example", port="5432"), db(proxy="proxy.example")) == []
    assert rotation_rules.target_problems(master(port=None), db()) == [], "port and dbname are optional"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (master(host="evil.example"), "host 'evil.example' is not an endpoint of this cluster"),
        (master(host="proxy.example"), "is not an endpoint"),
        (master(port=6543), "port 6543 is not the cluster's port 5432"),
        (app(dbname="postgres"), "dbname 'postgres' is not this stack's database 'financialdb'"),
    ],
)
def test_other_targets_are_refused(value, problem):
    assert any(problem in p for p in rotation_rules.target_problems(value, db()))


# ---- roles -------------------------------------------------------------------------------------------------
def test_role_problems():
    plain = {"rolname": "hapg_app", **{a: False for a in roles.PRIVILEGED_ATTRIBUTES}, "powerful": []}
    assert roles.role_problems(plain) == []
    assert roles.role_problems({**plain, "rolcreatedb": True, "rolsuper": True}) == [
        "role 'hapg_app' has SUPER",
        "role 'hapg_app' has CREATEDB",
    ]
    assert roles.role_problems({**plain, "powerful": ["rds_superuser"]}) == [
        "role 'hapg_app' has member of rds_superuser"
    ]


def test_refuse():
    rotation_rules.refuse("nothing", [])
    with pytest.raises(errors.RotationError, match="^AWSPENDING of x: a; b$"):
        rotation_rules.refuse("AWSPENDING of x", ["a", "b"])


# ---- the Secrets Manager port (moto) -------------------------------------------------------------------
@pytest.fixture
def store(aws):
    return secret_store.SecretStore()


def test_store_reads_by_stage_and_version(store):
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name="s", SecretString=json.dumps(master()))["ARN"]
    assert store.value(arn, "AWSCURRENT") == master()
    assert store.value(arn, "AWSPENDING") is None
    assert store.value(arn, "AWSPENDING", TOKEN) is None
    store.put_pending(arn, TOKEN, master(password=NEW_PASSWORD), rotation_token="r" * 36)
    assert store.value(arn, "AWSPENDING", TOKEN) == master(password=NEW_PASSWORD)
    assert store.describe(arn)["VersionIdsToStages"][TOKEN] == ["AWSPENDING"]
    previous = rotation_rules.current_version(store.describe(arn))
    store.make_current(arn, TOKEN, previous)
    stages = store.describe(arn)["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[TOKEN] and stages[previous] == ["AWSPREVIOUS"]


def test_store_never_echoes_a_value_that_is_not_json(store):
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name="s", SecretString="hunter2hunter2")["ARN"]
    with pytest.raises(errors.RotationError, match="AWSCURRENT value of secret .* is not a JSON object") as caught:
        store.value(arn, "AWSCURRENT")
    assert "hunter2" not in str(caught.value)


def test_store_translates_aws_errors(store):
    with pytest.raises(errors.AwsRequestFailed, match="secretsmanager:DescribeSecret: ResourceNotFoundException"):
        store.describe("no-such-secret")


def test_random_passwords_follow_the_rules(store):
    for _ in range(20):
        pw = store.random_password()
        assert len(pw) == Rotation.PASSWORD_LENGTH
        assert rotation_rules.password_problems(pw) == []
