"""Secrets Manager's side of a secret rotation: reads by stage, the pending value, the stage move.

Every read names its stage (never "latest"), and a value that is not a JSON object is refused
without being quoted: it may be a bare password.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hapg import aws, errors, secrets
from hapg.names import Rotation
from hapg.rotation_rules import CURRENT, PENDING


class SecretStore:
    """The Secrets Manager calls a rotation makes. Every read names its stage (never "latest")."""

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("secretsmanager")

    def describe(self, secret_id: str) -> dict[str, Any]:
        with aws.call("secretsmanager:DescribeSecret"):
            return self.client.describe_secret(SecretId=secret_id)

    def value(self, secret_id: str, stage: str, version: str | None = None) -> dict[str, Any] | None:
        """The JSON value under `stage` (and `version`), None when there is none."""
        try:
            return secrets.value_at(secret_id, stage, version, self.client)
        except errors.ConfigError as exc:
            raise errors.RotationError(str(exc)) from exc

    def random_password(self) -> str:
        with aws.call("secretsmanager:GetRandomPassword"):
            return self.client.get_random_password(
                PasswordLength=Rotation.PASSWORD_LENGTH,
                ExcludeCharacters=Rotation.EXCLUDE_CHARACTERS,
                RequireEachIncludedType=True,
            )["RandomPassword"]

    def put_pending(self, secret_id: str, token: str, value: Mapping[str, Any], rotation_token: str | None) -> None:
        kwargs = {"RotationToken": rotation_token} if rotation_token else {}
        with aws.call("secretsmanager:PutSecretValue"):
            self.client.put_secret_value(
                SecretId=secret_id,
                ClientRequestToken=token,
                SecretString=json.dumps(value),
                VersionStages=[PENDING],
                **kwargs,
            )

    def make_current(self, secret_id: str, token: str, previous: str | None) -> None:
        with aws.call("secretsmanager:UpdateSecretVersionStage"):
            self.client.update_secret_version_stage(
                SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=token, RemoveFromVersionId=previous
            )
