"""Secrets Manager's side of a secret rotation, on moto, with the secret_rotation handler in-process.

    with mock_aws():
        rotation = LocalRotation()                 # a moto Lambda function standing for ours
        token = rotation.stage(master_arn)         # what RotateSecret does before the first step
        rotation.step(master_arn, token, "createSecret")
        token = rotation.rotate(app_arn, after=check_logins)   # the four steps, like AWS

What AWS does (and this driver does): RotateSecret configures rotation, stages a new version id
AWSPENDING without a value, then invokes the rotation function once per step with
`{"SecretId": <arn>, "ClientRequestToken": <version id>, "Step": ...}`, stops at the first failed
step and leaves AWSCURRENT where it was; a retry reuses the token. With RotateImmediately=false it
stages a copy of the current value and runs testSecret only, to test the configuration, then
removes that version's AWSPENDING label.

Where moto 5.2 differs, and how we get AWS's behaviour anyway:
* its rotate_secret runs every step even after one failed, then moves AWSCURRENT to the new version
  regardless: we let it only *stage* the version (our patched Lambda invoke raises at the first
  step, which aborts the call) and call the steps ourselves;
* it refuses to start a rotation while AWSPENDING and AWSCURRENT share a version, which is how a
  successful rotation ends on AWS: we first drop that leftover label (AWS allows either state);
* it sends the secret's name as SecretId: AWS sends the ARN, so do we;
* get_secret_value without a stage returns the version that was the default before
  update_secret_version_stage moved AWSCURRENT: read with VersionStage (the rotation always does).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest import mock

import boto3
from hapg.names import Function, SecretStage
from moto.awslambda.models import LambdaFunction

from local.executor import placeholder_function
from local.handlers import LambdaContext, load

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
FUNCTION = Function.SECRET_ROTATION
CURRENT, PENDING = SecretStage.CURRENT, SecretStage.PENDING


class _Staged(Exception):  # noqa: N818 - control flow inside moto, never escapes this module
    def __init__(self, token: str):
        super().__init__(token)
        self.token = token


class LocalRotation:
    """Drives rotations on the active moto backend (create it inside `mock_aws()`)."""

    def __init__(self, name: str = "hapg-local-secret-rotation", days: int = 30, timeout_s: float = 300.0):
        self.name = name
        self.days = days
        self.timeout_s = timeout_s
        self.sm = boto3.client("secretsmanager")
        self.arn = placeholder_function(boto3.client("lambda"), boto3.client("iam"), name, timeout_s)
        self.invocations: list[dict[str, Any]] = []

    # -- what Secrets Manager does -----------------------------------------------------------------
    def stage(self, secret_id: str) -> str:
        """Turn rotation on and stage a new, empty AWSPENDING version; return its token."""
        self._drop_finished_pending(secret_id)

        def staged(_fn: Any, body: str, *_: Any, **__: Any) -> None:
            raise _Staged(json.loads(body)["ClientRequestToken"])

        with mock.patch.object(LambdaFunction, "invoke", staged):
            try:
                self.sm.rotate_secret(
                    SecretId=secret_id, RotationLambdaARN=self.arn, RotationRules={"AutomaticallyAfterDays": self.days}
                )
            except _Staged as done:
                return done.token
        raise AssertionError("moto's rotate_secret did not invoke the rotation function")

    def step(self, secret_id: str, token: str, step: str, **extra: Any) -> dict[str, Any]:
        """One step, as Secrets Manager invokes it (the handler's exceptions propagate)."""
        event = {"SecretId": self.arn_of(secret_id), "ClientRequestToken": token, "Step": step, **extra}
        self.invocations.append(event)
        context = LambdaContext(function_name=self.name, memory_limit_in_mb=512, timeout_s=self.timeout_s)
        return load(FUNCTION).lambda_handler(event, context)

    def rotate(self, secret_id: str, after: Callable[[str, dict[str, Any]], None] | None = None) -> str:
        """A whole rotation: stage, then the four steps in order, stopping at the first failure."""
        token = self.stage(secret_id)
        self.resume(secret_id, token, STEPS, after)
        return token

    def resume(
        self,
        secret_id: str,
        token: str,
        steps: tuple[str, ...] = STEPS,
        after: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        """Secrets Manager's retry of a failed rotation: the same token, the steps again."""
        for name in steps:
            result = self.step(secret_id, token, name)
            if after:
                after(name, result)

    def test_configuration(self, secret_id: str) -> dict[str, Any]:
        """RotateSecret with RotateImmediately=false: testSecret on a staged copy of the current value."""
        self._drop_finished_pending(secret_id)
        results: list[dict[str, Any]] = []

        def run(_fn: Any, body: str, *_: Any, **__: Any) -> bytes:
            event = json.loads(body)
            results.append(self.step(secret_id, event["ClientRequestToken"], event["Step"]))
            return json.dumps(results[-1]).encode()

        try:
            with mock.patch.object(LambdaFunction, "invoke", run):
                self.sm.rotate_secret(
                    SecretId=secret_id,
                    RotationLambdaARN=self.arn,
                    RotationRules={"AutomaticallyAfterDays": self.days},
                    RotateImmediately=False,
                )
        finally:
            self._drop_pending(secret_id, only_current=False)
        return results[-1]

    # -- helpers ---------------------------------------------------------------------------------
    def arn_of(self, secret_id: str) -> str:
        return self.sm.describe_secret(SecretId=secret_id)["ARN"]

    def stages(self, secret_id: str) -> dict[str, list[str]]:
        return self.sm.describe_secret(SecretId=secret_id)["VersionIdsToStages"]

    def value(self, secret_id: str, stage: str = CURRENT, version: str | None = None) -> dict[str, Any]:
        kwargs = {"VersionId": version} if version else {}
        return json.loads(self.sm.get_secret_value(SecretId=secret_id, VersionStage=stage, **kwargs)["SecretString"])

    def put_pending(self, secret_id: str, token: str, value: Any) -> None:
        """An operator (or a broken run) writing the AWSPENDING value under the token."""
        text = value if isinstance(value, str) else json.dumps(value)
        self.sm.put_secret_value(
            SecretId=secret_id, ClientRequestToken=token, SecretString=text, VersionStages=[PENDING]
        )

    def _drop_finished_pending(self, secret_id: str) -> None:
        self._drop_pending(secret_id, only_current=True)

    def _drop_pending(self, secret_id: str, only_current: bool) -> None:
        for version, stages in self.stages(secret_id).items():
            if PENDING in stages and (CURRENT in stages or not only_current):
                self.sm.update_secret_version_stage(
                    SecretId=secret_id, VersionStage=PENDING, RemoveFromVersionId=version
                )
