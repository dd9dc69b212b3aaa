"""One restore-test run: its identity, derived from the execution, its input, and what its steps use.

Ids are derived from the execution ARN, never chosen: a retried or re-delivered step finds the same
temporary cluster, and a request that was tampered with in the workflow state is refused.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hapg import aws, errors
from hapg.backups import BackupSettings
from hapg.config import DbSettings
from hapg.models import require_mapping
from hapg.pg import Database
from hapg.restore_port import RestorePort

INPUT_FIELDS = ("reason", "snapshot_id")


@dataclass(frozen=True)
class Deps:
    port: RestorePort
    settings: BackupSettings
    source_db: Callable[[], Database]  # sessions to the source cluster (master secret)
    db_settings: Callable[[], DbSettings]  # TLS and timeouts for sessions to the restored cluster
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    dynamodb: Callable[[], Any] = lambda: aws.client("dynamodb")


@dataclass(frozen=True)
class Request:
    """One restore test, as `validate` returned it. Ids are derived from the execution, never chosen."""

    run_id: str
    cluster_id: str
    instance_id: str
    execution: str
    reason: str
    started_at: float
    snapshot_id: str | None = None

    @classmethod
    def new(cls, execution: str, prefix: str, reason: str, started_at: float, snapshot_id: str | None) -> Request:
        run_id = hashlib.sha256(execution.encode()).hexdigest()[:10]
        return cls(run_id, f"{prefix}-{run_id}", f"{prefix}-{run_id}-1", execution, reason, started_at, snapshot_id)

    @classmethod
    def from_dict(cls, data: Any, prefix: str) -> Request:
        data = require_mapping(data, "request")
        try:
            req = cls(
                run_id=str(data["run_id"]),
                cluster_id=str(data["cluster_id"]),
                instance_id=str(data["instance_id"]),
                execution=str(data["execution"]),
                reason=str(data.get("reason") or ""),
                started_at=float(data["started_at"]),
                snapshot_id=data.get("snapshot_id"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.InvalidInput(f"request is malformed: {type(exc).__name__}: {exc}") from exc
        expected = cls.new(req.execution, prefix, req.reason, req.started_at, req.snapshot_id)
        if (req.run_id, req.cluster_id, req.instance_id) != (
            expected.run_id,
            expected.cluster_id,
            expected.instance_id,
        ):
            raise errors.InvalidInput("request identifiers do not belong to its execution")
        return req

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "cluster_id": self.cluster_id,
            "instance_id": self.instance_id,
            "execution": self.execution,
            "reason": self.reason,
            "started_at": self.started_at,
            "snapshot_id": self.snapshot_id,
        }


def parse_input(raw: Any) -> tuple[str, str | None]:
    """Pure: the execution input -> (reason, snapshot id or None). `{}`, `{"reason"}`,
    `{"reason", "snapshot_id"}`, or an EventBridge scheduled event."""
    event = require_mapping({} if raw is None else raw, "restore test input")
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return "scheduled restore test", None
    unknown = sorted(set(event) - set(INPUT_FIELDS))
    if unknown:
        raise errors.InvalidInput(
            f"unknown field(s) {', '.join(unknown)} in the restore test input; expected {', '.join(INPUT_FIELDS)}"
        )
    reason = event.get("reason", "restore test")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise errors.InvalidInput("reason must be a non-empty string of at most 500 characters")
    snapshot_id = event.get("snapshot_id")
    if snapshot_id is not None and (not isinstance(snapshot_id, str) or not snapshot_id):
        raise errors.InvalidInput("snapshot_id must be a non-empty string")
    return reason.strip(), snapshot_id
