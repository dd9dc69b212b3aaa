"""health_checker end to end: real handler, real PostgreSQL pair over TLS, moto Secrets Manager."""

from __future__ import annotations

import json

import pytest
from hapg import errors
from hapg.names import Env, Metric

from local import handlers
from local.pgnode import PgNode, Sandbox


def emf_records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and "_aws" in line]


def metric_values(out: str) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for rec in emf_records(out):
        for m in rec["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            v = rec[m["Name"]]
            values.setdefault(m["Name"], []).extend(v if isinstance(v, list) else [v])
    return values


def test_scheduled_run_is_healthy_and_emits_every_figure(function_env, capsys):
    handlers.invoke("health_checker", {"mode": "scheduled"})
    result = handlers.invoke("health_checker", {"mode": "scheduled"})  # second run has a TPS delta
    assert result["healthy"] is True, result["reason"]
    assert result["writer_instance"] == "writer"
    assert result["reader_instance"] == "reader-1"
    assert [r["instance_id"] for r in result["replicas"]] == ["reader-1"]
    assert result["write_latency_ms"] > 0
    assert result["tps"] is not None and result["tps"] >= 0
    conns = result["connections"]
    assert conns["active"] >= 1 and conns["max_connections"] == 100
    assert 0 < conns["percent_of_max"] <= 100
    assert result["reason"].startswith("healthy: writer accepted a write")

    values = metric_values(capsys.readouterr().out)
    assert values[Metric.HEALTHY][-1] == 1.0
    assert values[Metric.HEALTH_CHECK_FAILED][-1] == 0.0
    for name in (Metric.WRITE_PROBE_LATENCY, Metric.CONNECTIONS_PCT_MAX, Metric.TPS, Metric.REPLICA_LAG):
        assert name in values, name


def test_per_instance_lag_carries_the_instance_dimension(function_env, capsys):
    handlers.invoke("health_checker", {"mode": "scheduled"})
    recs = [r for r in emf_records(capsys.readouterr().out) if Metric.REPLICA_LAG in r]
    assert recs and recs[0][Metric.DIM_INSTANCE] == "reader-1"
    assert recs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[Metric.DIM_CLUSTER, Metric.DIM_INSTANCE]]


def test_verify_mode_proves_the_reader_sees_a_fresh_write(function_env):
    result = handlers.invoke("health_checker", {"mode": "verify", "expected_writer": "writer", "expected_replicas": 1})
    assert result["healthy"] is True
    assert result["mode"] == "verify"


def test_verify_mode_with_stale_writer_endpoint_is_retryable(function_env):
    with pytest.raises(errors.NotReady, match="expected new-writer"):
        handlers.invoke("health_checker", {"mode": "verify", "expected_writer": "new-writer"})


def test_verify_mode_missing_replicas_is_retryable(function_env):
    """Readers rejoin within seconds of a failover: the workflow retries before it gives up."""
    with pytest.raises(errors.NotReady, match="1 of 2 replicas"):
        handlers.invoke("health_checker", {"mode": "verify", "expected_replicas": 2})


def test_verify_mode_with_the_writer_down_fails(function_env, monkeypatch):
    monkeypatch.setenv(Env.DB_WRITER_ENDPOINT, "127.0.0.1:1")
    with pytest.raises(errors.VerificationFailed, match="writer endpoint failed"):
        handlers.invoke("health_checker", {"mode": "verify", "expected_writer": "writer"})


def test_writer_down_is_unhealthy_not_an_exception(function_env, monkeypatch, capsys):
    monkeypatch.setenv(Env.DB_WRITER_ENDPOINT, "127.0.0.1:1")
    result = handlers.invoke("health_checker", {"mode": "scheduled"})
    assert result["healthy"] is False and result["writer_ok"] is False
    assert "writer endpoint failed" in result["reason"]
    assert metric_values(capsys.readouterr().out)[Metric.HEALTHY] == [0.0]


def test_wrong_password_is_reported_without_leaking_it(function_env, pg_pair, capsys):
    import boto3

    boto3.client("secretsmanager").put_secret_value(
        SecretId=function_env, SecretString=json.dumps({"username": "hapg_admin", "password": "Wr0ng-Pass!"})
    )
    result = handlers.invoke("health_checker", {"mode": "scheduled"})
    assert result["healthy"] is False
    assert "authentication failed" in result["reason"]
    assert "Wr0ng-Pass!" not in json.dumps(result) + capsys.readouterr().out


def test_missing_configuration_is_unhealthy_on_a_scheduled_run(function_env, monkeypatch):
    monkeypatch.delenv(Env.DB_SECRET_ARN)
    result = handlers.invoke("health_checker", {"mode": "scheduled"})
    assert result["healthy"] is False
    assert "DB_SECRET_ARN" in result["reason"]


@pytest.mark.parametrize(
    "event",
    [
        {"mode": "sometimes"},
        {},
        {"mode": "verify", "expected_replicas": -1},
        {"mode": "scheduled", "x": 1},
        [],
    ],
)
def test_bad_input_gets_a_clear_error(function_env, event):
    with pytest.raises(errors.InvalidInput):
        handlers.invoke("health_checker", event)


def test_frozen_server_cannot_hang_the_check(aws, monkeypatch):
    """A SIGSTOPped server accepts TCP but never answers: the client deadline must fire."""
    from support import make_secret

    sandbox = Sandbox("hapg-test-frozen-")
    node = PgNode("frozen", sandbox)
    try:
        node.initdb()
        node.start()
        node.psql("CREATE DATABASE financialdb")
        arn = make_secret(sandbox)
        env = {
            Env.CLUSTER_ID: "c",
            Env.DB_SECRET_ARN: arn,
            Env.DB_WRITER_ENDPOINT: f"127.0.0.1:{node.port}",
            Env.DB_READER_ENDPOINT: f"127.0.0.1:{node.port}",
            Env.DB_SSL_ROOT_CERT: str(sandbox.tls.ca_cert),
            Env.DB_CONNECT_TIMEOUT: "2",
            Env.DB_STATEMENT_TIMEOUT_MS: "1000",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        node.freeze()
        result = handlers.invoke("health_checker", {"mode": "scheduled"})
        assert result["healthy"] is False
        # the configured deadline (DB_CONNECT_TIMEOUT 2 s) fired, not the 10 s default or none at all
        assert "writer endpoint failed: no answer from the server within 2s" in result["reason"], result["reason"]
    finally:
        node.thaw()
        node.stop("immediate")
        sandbox.cleanup()


def _proxy_run(pg_pair, capsys):
    from hapg import runtime
    from hapg.models import Credentials

    from local.pgnode import ADMIN_USER

    creds = Credentials(ADMIN_USER, pg_pair.sandbox.admin_password)  # stands in for the IAM token
    runtime.reset()
    runtime.override(proxy_credentials=lambda: creds)
    report = handlers.invoke("health_checker", {"mode": "scheduled"})
    return report, metric_values(capsys.readouterr().out)


def test_rds_proxy_is_checked_when_configured(function_env, pg_pair, monkeypatch, capsys):
    monkeypatch.setenv(Env.DB_PROXY_ENDPOINT, str(pg_pair.primary.endpoint))  # the "proxy" reaches the writer
    monkeypatch.setenv(Env.DB_PROXY_SSL_ROOT_CERT, str(pg_pair.sandbox.tls.ca_cert))
    report, values = _proxy_run(pg_pair, capsys)
    assert report["healthy"] and report["proxy_ok"] is True and report["proxy_latency_ms"] > 0
    assert values[Metric.PROXY_HEALTHY] == [1.0]


def test_a_broken_rds_proxy_makes_the_check_unhealthy(function_env, pg_pair, monkeypatch, capsys):
    monkeypatch.setenv(Env.DB_PROXY_ENDPOINT, str(pg_pair.standby.endpoint))  # routes to a reader: wrong
    monkeypatch.setenv(Env.DB_PROXY_SSL_ROOT_CERT, str(pg_pair.sandbox.tls.ca_cert))
    report, values = _proxy_run(pg_pair, capsys)
    assert not report["healthy"] and report["writer_ok"] and report["proxy_ok"] is False
    assert report["reason"] == "RDS Proxy failed: the proxy routed to a node in recovery"
    assert values[Metric.PROXY_HEALTHY] == [0.0]


def test_no_proxy_no_proxy_metric(function_env, capsys):
    handlers.invoke("health_checker", {"mode": "scheduled"})
    values = metric_values(capsys.readouterr().out)
    assert values[Metric.HEALTHY] == [1.0], "the run's metrics were captured"
    assert Metric.PROXY_HEALTHY not in values


def test_the_proxy_is_verified_against_the_amazon_roots_not_the_rds_cas(function_env, pg_pair, monkeypatch, capsys):
    """Default trust for the proxy is the Amazon Trust Services bundle: a server whose certificate
    chains elsewhere (here, the local test CA) is rejected, so the probe fails closed."""
    monkeypatch.setenv(Env.DB_PROXY_ENDPOINT, str(pg_pair.primary.endpoint))
    report, _ = _proxy_run(pg_pair, capsys)
    assert report["proxy_ok"] is False and "certificate verify failed" in report["reason"]
