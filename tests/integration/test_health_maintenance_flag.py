"""The health checker publishes the maintenance flag (AutomationPaused) for the dashboard and its alarm:
scheduled runs only, only with a state table, and never at the cost of the health verdict."""

from __future__ import annotations

import json

import boto3
import pytest
from hapg.names import Env, Metric, Table
from support import CLUSTER_ID, create_state_table

from local import handlers

TABLE = "hapg-test-state"


def values(out: str, name: str) -> list[float]:
    found = []
    for line in out.splitlines():
        if line.startswith('{"_aws"') and name in line:
            rec = json.loads(line)
            assert rec["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[Metric.DIM_CLUSTER]]
            found += rec[name] if isinstance(rec[name], list) else [rec[name]]
    return found


@pytest.fixture
def state_table(function_env, monkeypatch):
    create_state_table(TABLE)
    monkeypatch.setenv(Env.STATE_TABLE, TABLE)
    return TABLE


def set_maintenance(enabled: bool) -> None:
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={
            Table.PK: {"S": f"{Table.CONTROL_PREFIX}{CLUSTER_ID}"},
            Table.SK: {"S": Table.MAINTENANCE_SK},
            "enabled": {"BOOL": enabled},
        },
    )


def test_flag_off_and_on(state_table, capsys):
    handlers.invoke("health_checker", {"mode": "scheduled"})  # no item yet: not paused
    set_maintenance(True)
    handlers.invoke("health_checker", {"mode": "scheduled"})
    set_maintenance(False)
    handlers.invoke("health_checker", {"mode": "scheduled"})
    assert values(capsys.readouterr().out, Metric.AUTOMATION_PAUSED) == [0.0, 1.0, 0.0]


def test_verify_runs_do_not_read_it(state_table, capsys):
    set_maintenance(True)
    handlers.invoke("health_checker", {"mode": "verify", "expected_writer": "writer"})
    out = capsys.readouterr().out
    assert values(out, Metric.HEALTHY) == [1.0], "the run's metrics were captured"
    assert values(out, Metric.AUTOMATION_PAUSED) == []


def test_without_a_state_table_nothing_is_emitted(function_env, capsys):
    result = handlers.invoke("health_checker", {"mode": "scheduled"})
    assert result["healthy"] is True
    out = capsys.readouterr().out
    assert values(out, Metric.HEALTHY) == [1.0], "the run's metrics were captured"
    assert values(out, Metric.AUTOMATION_PAUSED) == []


def test_an_unreadable_flag_leaves_the_verdict_alone(function_env, monkeypatch, capsys):
    monkeypatch.setenv(Env.STATE_TABLE, "no-such-table")
    result = handlers.invoke("health_checker", {"mode": "scheduled"})
    assert result["healthy"] is True, result["reason"]
    out = capsys.readouterr().out
    assert values(out, Metric.AUTOMATION_PAUSED) == []
    assert values(out, Metric.HEALTHY) == [1.0]


def test_the_verdict_is_out_before_the_flag_is_read(state_table, monkeypatch, capsys):
    """Lambda kills a run that hangs on DynamoDB, and nothing after that point is printed (no finally
    runs): the verdict must already be out, else the writer alarm, which treats missing data as
    unhealthy, would page for a healthy writer."""
    from hapg.history import StateTable

    printed_before_the_read = []

    def read(self):
        printed_before_the_read.append(capsys.readouterr().out)
        return False

    monkeypatch.setattr(StateTable, "maintenance", read)
    handlers.invoke("health_checker", {"mode": "scheduled"})
    (before,) = printed_before_the_read
    assert values(before, Metric.HEALTHY) == [1.0]
    assert values(capsys.readouterr().out, Metric.AUTOMATION_PAUSED) == [0.0]
