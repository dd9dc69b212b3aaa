"""One fast local stack per module: real PostgreSQL pair, moto, the committed ASL, our handlers."""

from __future__ import annotations

import pytest
from hapg.names import Env, Table


@pytest.fixture(scope="module")
def stack():
    from local.stack import LocalStack, StackOptions

    with LocalStack(StackOptions(fast=True, env={Env.FAILOVER_COOLDOWN_S: "0"})) as st:
        yield st


@pytest.fixture
def st(stack):
    """The module stack, healthy and idle before each test: both nodes up, replicas streaming,
    no lock, maintenance off, default settings."""
    from local.pgpair import PgPair

    stack.cluster.wait_rejoined(60)
    for node in stack.pair.nodes:
        if not node.is_running():
            node.start()
    writer = stack.writer()
    for node in stack.pair.nodes:
        if node is not writer:
            PgPair.wait_streaming(writer, node)
    stack.cluster.partitioned.clear()
    stack.set_maintenance(False)
    stack.configure(**{Env.PROMOTE_DEADLINE_S: "60"})
    import boto3

    key = {Table.PK: {"S": f"{Table.LOCK_PREFIX}{stack.cluster.cluster_id}"}, Table.SK: {"S": Table.LOCK_SK}}
    boto3.client("dynamodb").delete_item(TableName=stack.table, Key=key)
    stack.notifications()  # drain what earlier tests published
    return stack
