"""Per-process wiring: settings, the database, and the ports a handler uses.

Handlers call these accessors; tests and the local harness call `override()` to swap a port
(for example the Aurora cluster for the local PostgreSQL pair) without touching the core.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hapg import aws, config, secrets
from hapg.config import Settings
from hapg.pg import Database

_overrides: dict[str, Any] = {}


@cache
def settings() -> Settings:
    return config.load()


@cache
def database(app: str) -> Database:
    s = settings()
    return Database(s.db, secrets.credentials_provider(s.db.secret_arn, s.secret_cache_s), app)


def state_table(required_by: str) -> Any:
    """This cluster's hapg.history.StateTable; ConfigError when STATE_TABLE is not set."""
    s = settings()
    if not s.state_table:
        from hapg.errors import ConfigError

        raise ConfigError(f"STATE_TABLE is required by {required_by}")
    from hapg.history import StateTable

    return StateTable(s.state_table, s.cluster_id)


def proxy_credentials() -> Any:
    """The credentials provider for RDS Proxy (a port: IAM tokens on AWS), None without a proxy."""
    return port("proxy_credentials", _iam_proxy_credentials)


def _iam_proxy_credentials() -> Any:
    s = settings()
    if s.db.proxy is None:
        return None
    if not s.app_secret_arn:
        from hapg.errors import ConfigError

        raise ConfigError("DB_PROXY_ENDPOINT is set but APP_SECRET_ARN is not")
    return secrets.iam_token_provider(s.app_secret_arn, s.db.proxy)


def port(name: str, default_factory: Any) -> Any:
    """An overridden port, else the cached default built by `default_factory()`."""
    if name in _overrides:
        return _overrides[name]
    return _default_port(name, default_factory)


@cache
def _default_port(name: str, factory: Any) -> Any:
    return factory()


def override(**ports: Any) -> None:
    _overrides.update(ports)


def reset() -> None:
    """Forget everything cached: settings, clients, secrets, ports (tests, harness)."""
    _overrides.clear()
    for fn in (settings, database, _default_port):
        fn.cache_clear()
    aws.reset_clients()
    secrets.reset()
