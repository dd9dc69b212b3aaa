"""The writer endpoint still resolving to a standby (DNS after a failover): named as such, not a generic outage."""

from __future__ import annotations

import pytest
from hapg import errors
from hapg.names import Env

from local import handlers


@pytest.fixture
def writer_on_standby(function_env, pg_pair, monkeypatch):
    monkeypatch.setenv(Env.DB_WRITER_ENDPOINT, str(pg_pair.standby.endpoint))


def test_scheduled_run_names_a_writer_endpoint_that_reaches_a_standby(writer_on_standby):
    result = handlers.invoke("health_checker", {"mode": "scheduled"})
    assert result["healthy"] is False and result["writer_ok"] is False
    assert result["writer_stale"] is True
    assert "(a reader: DNS not yet updated?)" in result["reason"]


def test_verify_mode_asks_to_be_retried_while_the_endpoint_is_stale(writer_on_standby):
    with pytest.raises(errors.NotReady, match="DNS not yet updated"):
        handlers.invoke("health_checker", {"mode": "verify", "expected_writer": "reader-1"})
