"""Session-wide fixtures: fake AWS credentials, moto, a real PostgreSQL 15 pair, handler env."""

from __future__ import annotations

import logging
import os

import pytest

# Before anything imports boto3: no real account, ever.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",  # noqa: S105 - moto's documented dummy
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_DEV="false",
)
logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)

from hapg import runtime  # noqa: E402
from moto import mock_aws  # noqa: E402
from support import make_secret, pair_env  # noqa: E402


@pytest.fixture
def aws():
    """A fresh moto backend per test, with the core's cached clients forgotten."""
    with mock_aws():
        runtime.reset()
        yield
    runtime.reset()


@pytest.fixture(scope="session")
def pg_pair():
    """A real primary + sync standby for read-mostly integration tests (do not promote it)."""
    from local.pgpair import PgPair

    pair = PgPair(prefix="hapg-test-").start()
    yield pair
    pair.stop()


@pytest.fixture
def function_env(aws, pg_pair, monkeypatch):
    """moto + a master secret + the function environment, for handler tests against the pair."""
    arn = make_secret(pg_pair.sandbox)
    for key, value in pair_env(pg_pair, arn).items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    return arn
