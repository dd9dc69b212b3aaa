"""Helpers shared by test modules (importable: pyproject puts tests/ on sys.path)."""

from __future__ import annotations

import json

from hapg.names import DB_NAME, Env, Table

from local.pgnode import ADMIN_USER, PgNode, Sandbox

CLUSTER_ID = "hapg-test-cluster"


def make_secret(sandbox: Sandbox, name: str = "hapg-test/db/master") -> str:
    """A moto secret holding the sandbox's admin credentials; returns its ARN."""
    import boto3

    value = {
        "username": ADMIN_USER,
        "password": sandbox.admin_password,
        "engine": "postgres",
        "dbname": DB_NAME,
    }
    return boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(value))["ARN"]


def pair_env(pair, secret_arn: str) -> dict[str, str]:
    """The environment template.yaml gives a function, pointed at a local pair."""
    primary, standby = pair.primary, pair.standby
    return {
        Env.CLUSTER_ID: CLUSTER_ID,
        Env.DB_SECRET_ARN: secret_arn,
        Env.DB_NAME: DB_NAME,
        Env.DB_WRITER_ENDPOINT: str(primary.endpoint),
        Env.DB_READER_ENDPOINT: str(standby.endpoint),
        Env.DB_SSLMODE: "verify-full",
        Env.DB_SSL_ROOT_CERT: str(pair.sandbox.tls.ca_cert),
        Env.DB_CONNECT_TIMEOUT: "3",
        Env.DB_STATEMENT_TIMEOUT_MS: "3000",
        Env.METRICS_NAMESPACE: "HAPostgreSQL",
    }


def create_state_table(name: str) -> str:
    """The state table as template.yaml declares it (string pk/sk, on demand), on moto; returns its name."""
    import boto3

    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": Table.PK, "KeyType": "HASH"}, {"AttributeName": Table.SK, "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": Table.PK, "AttributeType": "S"},
            {"AttributeName": Table.SK, "AttributeType": "S"},
        ],
    )
    return name


def connect_as(node: PgNode, user: str, password: str, timeout: int = 3):
    """An autocommit session to the node's financialdb as `user` (TLS verify-full, like the clients)."""
    import psycopg2

    conn = psycopg2.connect(
        host=node.endpoint.host,
        port=node.port,
        user=user,
        password=password,
        dbname=DB_NAME,
        sslmode="verify-full",
        sslrootcert=str(node.sandbox.tls.ca_cert),
        connect_timeout=timeout,
    )
    conn.autocommit = True
    return conn
