"""Database credentials from Secrets Manager, cached (Powertools parameters)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from hapg import aws, errors
from hapg.models import Credentials, Endpoint
from hapg.names import SecretStage


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


def value_at(secret_id: str, stage: str, version: str | None = None, client: Any = None) -> dict[str, Any] | None:
    """The JSON object under `stage` (and `version`), None when there is none. Never cached. A value
    that is not a JSON object raises ConfigError without being quoted: it may be a bare password."""
    kwargs = {"SecretId": secret_id, "VersionStage": stage, **({"VersionId": version} if version else {})}
    try:
        with aws.call("secretsmanager:GetSecretValue"):
            raw = (client or aws.client("secretsmanager")).get_secret_value(**kwargs).get("SecretString")
    except errors.AwsRequestFailed as exc:
        if aws.error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    try:
        value = json.loads(raw) if raw is not None else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise errors.ConfigError(f"{stage} value of secret {secret_id} is not a JSON object")
    return value


def fetch_pending(secret_id: str) -> dict[str, Any] | None:
    """The AWSPENDING value, or None when no rotation is in progress (or its value is unusable)."""
    try:
        return value_at(secret_id, SecretStage.PENDING)
    except errors.ConfigError:
        return None


def credentials_provider(secret_id: str, max_age: int = 300) -> Callable[[int], Credentials | None]:
    """For pg.Database: attempt 0 the cached AWSCURRENT, 1 a fresh AWSCURRENT, 2 AWSPENDING.

    The last one covers a single-user rotation between setSecret (the database already has the
    new password) and finishSecret (AWSCURRENT still has the old one): without it every function
    would fail to log in for that window."""

    def provide(attempt: int = 0) -> Credentials | None:
        if attempt <= 1:
            return Credentials.from_secret(fetch(secret_id, max_age=max_age, refresh=attempt == 1))
        if attempt == 2:
            pending = fetch_pending(secret_id)
            return Credentials.from_secret(pending) if pending else None
        return None

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
