"""A drain whose undo never ran leaves application roles blocked: the health checker says so."""

from __future__ import annotations

import pytest
from hapg import runtime
from hapg.drain import drain_connections, restore_connections

from local import handlers

APP = "health_blocked_app"


@pytest.fixture
def app_role(function_env, pg_pair):
    pg_pair.primary.sql(f"DROP ROLE IF EXISTS {APP}")
    pg_pair.primary.sql(f"CREATE ROLE {APP} LOGIN PASSWORD 'x-pw-1' CONNECTION LIMIT 5")
    yield APP
    restore_connections(runtime.database("test"))
    pg_pair.primary.sql(f"DROP ROLE IF EXISTS {APP}")


def test_a_block_left_behind_is_unhealthy_until_restored(app_role, pg_pair):
    db = runtime.database("test")
    drain_connections(db, pg_pair.primary.endpoint, grace_s=0.1, blocked_by="crashed-exec")

    stuck = handlers.invoke("health_checker", {"mode": "scheduled"})
    assert stuck["healthy"] is False and stuck["writer_ok"] is True, "writes still work for the master"
    assert APP in stuck["blocked_roles"]
    assert f"{APP} still blocked on writer" in stuck["reason"]

    restore_connections(db)
    after = handlers.invoke("health_checker", {"mode": "scheduled"})
    assert after["healthy"] is True, after["reason"]
    assert list(after["blocked_roles"]) == []
