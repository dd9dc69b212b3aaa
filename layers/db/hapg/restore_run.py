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

    execution: str
    prefix: str
    reason: str
    started_at: float
    snapshot_id: str | None = None

    @property
    def run_id(self) -> str:
        return hashlib.sha256(self.execution.encode()).hexdigest()[:10]

    @property
    def cluster_id(self) -> str:
        return f"{self.prefix}-{self.run_id}"

    @property
    def instance_id(self) -> str:
        return f"{self.cluster_id}-1"

    @classmethod
    def from_dict(cls, data: Any, prefix: str) -> Request:
        """The ids in `data` are for people reading the execution; they must match the derived ones."""
        data = require_mapping(data, "request")
        try:
            req = cls(
                execution=str(data["execution"]),
                prefix=prefix,
                reason=str(data.get("reason") or ""),
                started_at=float(data["started_at"]),
                snapshot_id=data.get("snapshot_id"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.InvalidInput(f"request is malformed: {type(exc).__name__}: {exc}") from exc
        derived = req.to_dict()
        if any(data.get(k, derived[k]) != derived[k] for k in _DERIVED):
            raise errors.InvalidInput("request identifiers do not belong to its execution")
        return req

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in _DERIVED},
            "execution": self.execution,
            "reason": self.reason,
            "started_at": self.started_at,
            "snapshot_id": self.snapshot_id,
        }


_DERIVED = ("run_id", "cluster_id", "instance_id")


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
