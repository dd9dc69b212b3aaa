"""Every custom metric the dashboard or an alarm reads is really emitted, with those dimensions.

All five functions run for real and their stdout (the EMF CloudWatch would ingest) is collected:
  * health_checker, connection_drainer, failover_coordinator on a local stack (real PostgreSQL pair,
    moto, the committed ASL): scheduled checks with maintenance on (AutomationPaused = 1) and
    through an "RDS Proxy", a planned switchover, and an Aurora failover event;
  * backup_verifier on moto RDS: the daily check, and the restore test's record step;
  * secret_rotation: a full single-user rotation of the master secret on a real server.
The set of (metric, dimension names) found must cover what template.yaml's dashboard and alarms
use, with the values they ask for. (That no `service` dimension appears under the deployed
POWERTOOLS_SERVICE_NAME is tests/unit/test_telemetry_dimensions.py: Powertools reads it at import.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator

import boto3
import pytest
from backup_support import create_source
from hapg import runtime, telemetry
from hapg.models import Credentials
from hapg.names import DB_NAME, Env, Metric, Outcome, OutcomeLog, RdsEvent
from moto import mock_aws
from samtranslator.yaml_helper import yaml_parse
from support import create_state_table

from local import handlers
from local.pgnode import ADMIN_USER, PgNode, Sandbox
from local.rotation import LocalRotation
from local.stack import CLUSTER_ID, LocalStack, StackOptions, rds_event
from observability import render
from observability.readback import Resolver, alarm_uses, dashboard, widget_uses

pytestmark = pytest.mark.pg
TABLE = "hapg-test-state"


def emf(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def emitted(records: list[dict]) -> set[tuple[str, str, frozenset[str]]]:
    out = set()
    for rec in records:
        for directive in rec["_aws"]["CloudWatchMetrics"]:
            for dims in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    out.add((directive["Namespace"], metric["Name"], frozenset(dims)))
    return out


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    runtime.reset()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        runtime.reset()


def state_table() -> None:
    create_state_table(TABLE)


# ---- the runs -------------------------------------------------------------------------------------------
def failover_side(results: dict) -> None:
    with LocalStack(StackOptions(fast=True, env={Env.FAILOVER_COOLDOWN_S: "0"})) as st:
        st.set_maintenance(True)
        for _ in range(2):  # the second run has a TPS sample
            report = handlers.invoke("health_checker", {"mode": "scheduled"})
            assert report["healthy"] is True, report["reason"]
        st.set_maintenance(False)
        # through an "RDS Proxy" (the writer itself; admin credentials stand in for the IAM token)
        creds = Credentials(ADMIN_USER, st.pair.sandbox.admin_password)
        proxy = {Env.DB_PROXY_ENDPOINT: str(st.writer().endpoint)}
        st.configure(**proxy, **{Env.DB_PROXY_SSL_ROOT_CERT: str(st.pair.sandbox.tls.ca_cert)})
        runtime.override(proxy_credentials=lambda: creds)
        assert handlers.invoke("health_checker", {"mode": "scheduled"})["proxy_ok"] is True
        st.configure(**{Env.DB_PROXY_ENDPOINT: ""})

        results["old_writer"] = st.writer().name
        switchover = st.run({"action": "switchover", "reason": "emitted metrics"})
        assert switchover.status == "SUCCEEDED", switchover.timeline()
        assert switchover.output["outcome"] == Outcome.SUCCEEDED
        results["switchover"] = switchover
        results["new_writer"] = st.writer().name
        aurora = st.run(rds_event(RdsEvent.COMPLETED, at=time.time() + 1))  # Aurora failed over by itself
        assert aurora.output["outcome"] == Outcome.VERIFIED, aurora.timeline()


def backup_side() -> None:
    with mock_aws():
        env = create_source()
        state_table()
        topic = boto3.client("sns").create_topic(Name="hapg-test-alerts")["TopicArn"]
        with environment({**env, Env.STATE_TABLE: TABLE, Env.ALERT_TOPIC_ARN: topic}):
            handlers.invoke("backup_verifier", {"action": "check"})
            t0 = time.time() - 1800
            state = {  # what a successful restore-test execution has gathered when it records
                "request": {"started_at": t0, "cluster_id": "hapg-test-restore-0123456789", "reason": "test"},
                "prepare": {"snapshot": {"id": "rds:hapg-test-cluster-2026-11-28-03-10", "created_at": t0 - 3600}},
                "restore": {"started_at": t0 + 60},
                "status": {"available_at": t0 + 1260},
                "verify": {"ok": True, "reason": "financialdb restored: 3 schemas, row counts and size plausible"},
                "cleanup": {"gone": True},
            }
            execution = "arn:aws:states:us-east-1:123456789012:execution:hapg-test-backup-verification:emitted"
            result = handlers.invoke("backup_verifier", {"action": "record", "state": state, "execution": execution})
            assert result["outcome"] == Outcome.SUCCEEDED, result


def rotation_side() -> None:
    sandbox = Sandbox("hapg-emit-rot-")
    node = PgNode("writer", sandbox)
    try:
        node.initdb({"password_encryption": "scram-sha-256"})
        node.start()
        master, password = "hapg_master", "initial-" + sandbox.repl_password[:16]
        node.sql(f"CREATE ROLE {master} LOGIN CREATEROLE CREATEDB NOSUPERUSER PASSWORD '{password}'")
        node.sql(f"CREATE DATABASE {DB_NAME} OWNER {master}")
        with mock_aws():
            state_table()
            value = {
                "engine": "postgres",
                "host": node.endpoint.host,
                "port": node.port,
                "dbname": DB_NAME,
                "username": master,
                "password": password,
            }
            arn = boto3.client("secretsmanager").create_secret(
                Name="hapg-test/db/master", SecretString=json.dumps(value)
            )["ARN"]
            env = {
                Env.CLUSTER_ID: "hapg-test-cluster",
                Env.DB_SECRET_ARN: arn,
                Env.DB_NAME: DB_NAME,
                Env.DB_WRITER_ENDPOINT: str(node.endpoint),
                Env.DB_READER_ENDPOINT: str(node.endpoint),
                Env.DB_SSL_ROOT_CERT: str(sandbox.tls.ca_cert),
                Env.DB_CONNECT_TIMEOUT: "3",
                Env.STATE_TABLE: TABLE,
            }
            with environment(env):
                LocalRotation().rotate(arn)
    finally:
        node.stop("immediate")
        sandbox.cleanup()


@pytest.fixture(scope="module")
def runs():
    """Run everything once; stdout (EMF) and the Powertools log lines of all of it."""
    stdout, logs, results = io.StringIO(), io.StringIO(), {}
    handler = telemetry.logger.registered_handler  # holds the stdout of its import time: swap its stream
    saved_stream = handler.stream
    handler.stream = logs
    try:
        with contextlib.redirect_stdout(stdout):
            failover_side(results)
            backup_side()
            rotation_side()
    finally:
        handler.stream = saved_stream
    results["emf"] = emf(stdout.getvalue())
    results["logs"] = [json.loads(x) for x in logs.getvalue().splitlines() if x.startswith("{")]
    return results


@pytest.fixture(scope="module")
def used():
    """Every custom-metric use of template.yaml's dashboard and alarms, resolved for the `dev` names the
    local stack uses (hapg-dev-cluster, hapg-dev-writer, ...)."""
    template = yaml_parse(render.TEMPLATE.read_text())
    resolver = Resolver(template, {"EnvironmentSuffix": "dev", "ReaderCount": "2"})
    uses = widget_uses(dashboard(template, resolver)) + alarm_uses(template, resolver)
    return [u for u in uses if u.namespace == Metric.NAMESPACE]


# ---- the checks ------------------------------------------------------------------------------------------
def test_every_custom_metric_used_is_emitted(runs, used):
    assert used, "the dashboard and alarms read no custom metric: the lookup is broken"
    found = emitted(runs["emf"])
    missing = sorted(
        {(u.name, tuple(sorted(u.dimension_names))) for u in used}
        - {(name, tuple(sorted(dims))) for ns, name, dims in found if ns == Metric.NAMESPACE}
    )
    assert not missing, f"used by the dashboard or alarms but never emitted (metric, dimensions): {missing}"


def test_dimension_values_are_the_ones_the_dashboard_asks_for(runs, used):
    records = runs["emf"]
    assert all("service" not in rec for rec in records), "Powertools' service dimension leaked in"
    stack_records = [r for r in records if r.get(Metric.DIM_CLUSTER) == CLUSTER_ID]
    assert len(stack_records) > 10
    assert {u.dims[0][1] for u in used if u.dims[0][0] == Metric.DIM_CLUSTER} == {CLUSTER_ID}
    asked = {v for u in used for k, v in u.dims if k == Metric.DIM_INSTANCE}
    seen = {rec[Metric.DIM_INSTANCE] for rec in stack_records if Metric.DIM_INSTANCE in rec}
    assert seen and seen <= asked, (seen, asked)
    paused = [rec[Metric.AUTOMATION_PAUSED] for rec in stack_records if Metric.AUTOMATION_PAUSED in rec]
    assert paused[:2] == [[1.0], [1.0]], paused


def test_the_coordinator_logs_one_outcome_line_per_recorded_execution(runs):
    """The JSON line the dashboard's "Recent failovers" table selects, as Powertools writes it."""
    lines = [x for x in runs["logs"] if x.get("message") == OutcomeLog.MESSAGE]
    assert [x[OutcomeLog.OUTCOME] for x in lines] == [Outcome.SUCCEEDED, Outcome.VERIFIED]
    switchover = lines[0]
    assert set(OutcomeLog.FIELDS) <= set(switchover)
    assert (switchover[OutcomeLog.OLD_WRITER], switchover[OutcomeLog.NEW_WRITER]) == (
        runs["old_writer"],
        runs["new_writer"],
    )
    assert switchover[OutcomeLog.MODE] == switchover[OutcomeLog.KIND] == "switchover"
    assert switchover[OutcomeLog.DURATION_S] > 0
    assert switchover[OutcomeLog.EXECUTION] == runs["switchover"].execution_arn
    assert lines[1][OutcomeLog.MODE] == "aurora"
