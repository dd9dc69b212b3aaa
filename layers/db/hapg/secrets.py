"""Database credentials from Secrets Manager, cached (Powertools parameters)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from hapg import aws, errors
from hapg.models import Credentials, Endpoint


@cache
def _provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=aws.client("secretsmanager"))


def reset() -> None:
    """Drop the provider and its cache (tests; after a rotation in-process)."""
    _provider.cache_clear()


def fetch(secret_id: str, *, max_age: int = 300, refresh: bool = False) -> dict[str, Any]:
    """The secret's AWSCURRENT value as a dict."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        raw = _provider().get(secret_id, max_age=max_age, force_fetch=refresh)
    except GetParameterError as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        raise aws.translate(cause, "secretsmanager:GetSecretValue") from exc
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise errors.ConfigError("database secret is not a JSON object") from exc
    if not isinstance(value, dict):
        raise errors.ConfigError("database secret is not a JSON object")
    return value


def credentials_provider(secret_id: str, max_age: int = 300) -> Callable[[bool], Credentials]:
    """For pg.Database: `provider(refresh)` -> Credentials."""

    def provide(refresh: bool = False) -> Credentials:
        return Credentials.from_secret(fetch(secret_id, max_age=max_age, refresh=refresh))

    return provide


def iam_token_provider(secret_id: str, endpoint: Endpoint) -> Callable[[], Credentials]:
    """Credentials for RDS Proxy with IAM auth: the app user's name, a 15-minute signed token."""

    def provide() -> Credentials:
        user = str(fetch(secret_id).get("username") or "")
        if not user:
            raise errors.ConfigError("the application secret has no username")
        with aws.call("rds:GenerateDBAuthToken"):
            token = aws.client("rds").generate_db_auth_token(
                DBHostname=endpoint.host, Port=int(endpoint.port), DBUsername=user
            )
        return Credentials(user, token)

    return provide
