"""Environment -> typed, frozen settings. Read once per cold start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hapg.errors import ConfigError
from hapg.models import Endpoint
from hapg.names import DB_NAME, Env, Timing

CA_BUNDLE = str(Path(__file__).parent / "certs" / "rds-ca-bundle.pem")
# RDS Proxy serves an ACM certificate: it chains to the Amazon Trust Services roots instead
PROXY_CA_BUNDLE = str(Path(__file__).parent / "certs" / "amazon-trust-bundle.pem")
SSL_MODES = ("verify-full", "verify-ca", "require", "disable")


@dataclass(frozen=True)
class DbSettings:
    secret_arn: str
    dbname: str
    writer: Endpoint
    reader: Endpoint
    sslmode: str
    sslrootcert: str
    connect_timeout_s: float
    statement_timeout_ms: int
    proxy: Endpoint | None = None
    proxy_sslrootcert: str = PROXY_CA_BUNDLE


@dataclass(frozen=True)
class Settings:
    cluster_id: str
    db: DbSettings
    state_table: str | None
    topic_arn: str | None
    max_lag_ms: int
    cooldown_s: int
    drain_grace_s: float
    secret_cache_s: int
    lock_ttl_s: float = Timing.LOCK_TTL_S
    promote_deadline_s: float = Timing.PROMOTE_DEADLINE_S
    poll_interval_s: float = 1.0
    poll_window_s: float = Timing.STATUS_POLL_WINDOW_S
    stale_event_s: float = 900
    app_secret_arn: str | None = None


def env_value(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, default)
    if value is None or value == "":
        raise ConfigError(f"environment variable {name} is required")
    return value


def env_number(
    env: Mapping[str, str], name: str, default: str | None, kind: type = int, *, positive: bool = False
) -> int | float:
    raw = env_value(env, name, default)
    try:
        value = kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc
    if value < 0 or positive and value == 0:
        raise ConfigError(f"{name} must {'be positive' if positive else 'not be negative'}")
    return value


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    port = env_value(env, Env.DB_PORT, "5432")
    sslmode = env_value(env, Env.DB_SSLMODE, "verify-full")
    if sslmode not in SSL_MODES:
        raise ConfigError(f"{Env.DB_SSLMODE} must be one of {', '.join(SSL_MODES)}")
    proxy = env.get(Env.DB_PROXY_ENDPOINT)
    db = DbSettings(
        secret_arn=env_value(env, Env.DB_SECRET_ARN),
        dbname=env_value(env, Env.DB_NAME, DB_NAME),
        writer=Endpoint.parse(env_value(env, Env.DB_WRITER_ENDPOINT), port),
        reader=Endpoint.parse(env_value(env, Env.DB_READER_ENDPOINT), port),
        sslmode=sslmode,
        sslrootcert=env_value(env, Env.DB_SSL_ROOT_CERT, CA_BUNDLE),
        connect_timeout_s=env_number(env, Env.DB_CONNECT_TIMEOUT, "5", float),
        statement_timeout_ms=env_number(env, Env.DB_STATEMENT_TIMEOUT_MS, "5000"),
        proxy=Endpoint.parse(proxy, port) if proxy else None,
        proxy_sslrootcert=env_value(env, Env.DB_PROXY_SSL_ROOT_CERT, PROXY_CA_BUNDLE),
    )
    return Settings(
        cluster_id=env_value(env, Env.CLUSTER_ID),
        db=db,
        state_table=env.get(Env.STATE_TABLE) or None,
        topic_arn=env.get(Env.ALERT_TOPIC_ARN) or None,
        max_lag_ms=env_number(env, Env.MAX_LAG_MS, str(Timing.MAX_LAG_MS)),
        cooldown_s=env_number(env, Env.FAILOVER_COOLDOWN_S, "300"),
        drain_grace_s=env_number(env, Env.DRAIN_GRACE_S, "5", float),
        secret_cache_s=env_number(env, Env.SECRET_CACHE_TTL_S, "300"),
        lock_ttl_s=env_number(env, Env.LOCK_TTL_S, str(Timing.LOCK_TTL_S), float),
        promote_deadline_s=env_number(env, Env.PROMOTE_DEADLINE_S, str(Timing.PROMOTE_DEADLINE_S), float),
        poll_interval_s=env_number(env, Env.STATUS_POLL_INTERVAL_S, "1", float),
        poll_window_s=env_number(env, Env.STATUS_POLL_WINDOW_S, str(Timing.STATUS_POLL_WINDOW_S), float),
        stale_event_s=env_number(env, Env.STALE_EVENT_S, "900", float),
        app_secret_arn=env.get(Env.APP_SECRET_ARN) or None,
    )
