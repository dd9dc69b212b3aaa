"""pg.Database + secrets.credentials_provider against a real server and moto Secrets Manager:
the login survives the moments of a rotation when the database and AWSCURRENT disagree."""

from __future__ import annotations

import json

import boto3
import pytest
from hapg import errors, runtime, secrets
from hapg.pg import Database

USER = "cred_probe"


@pytest.fixture
def role(function_env, pg_pair):
    pg_pair.primary.sql(f"DROP ROLE IF EXISTS {USER}")
    pg_pair.primary.sql(f"CREATE ROLE {USER} LOGIN PASSWORD 'old-password-1'")
    yield
    pg_pair.primary.sql(f"DROP ROLE IF EXISTS {USER}")


def make_secret(password: str) -> str:
    value = json.dumps({"username": USER, "password": password})
    return boto3.client("secretsmanager").create_secret(Name="cred-probe", SecretString=value)["ARN"]


def stage_pending(arn: str, password: str) -> None:
    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn,
        ClientRequestToken="11111111-2222-3333-4444-555555555555",
        SecretString=json.dumps({"username": USER, "password": password}),
        VersionStages=["AWSPENDING"],
    )


def login(arn: str) -> str:
    db = Database(runtime.settings().db, secrets.credentials_provider(arn), "test")
    conn = db.open()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_mid_rotation_the_pending_password_logs_in(role, pg_pair):
    arn = make_secret("old-password-1")
    assert login(arn) == USER
    stage_pending(arn, "new-password-2")
    pg_pair.primary.sql(f"ALTER ROLE {USER} PASSWORD 'new-password-2'")  # setSecret ran; finishSecret not yet
    secrets.reset()
    assert login(arn) == USER


def test_a_rotated_password_is_picked_up_after_the_cache(role, pg_pair):
    arn = make_secret("old-password-1")
    assert login(arn) == USER  # caches the old value
    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": USER, "password": "new-password-3"})
    )
    pg_pair.primary.sql(f"ALTER ROLE {USER} PASSWORD 'new-password-3'")
    assert login(arn) == USER, "cached value fails, the refreshed AWSCURRENT works"


def test_wrong_everywhere_is_a_clear_authentication_failure(role):
    arn = make_secret("not-the-password")
    with pytest.raises(errors.AuthenticationFailed, match="authentication failed") as info:
        login(arn)
    assert "not-the-password" not in str(info.value)
