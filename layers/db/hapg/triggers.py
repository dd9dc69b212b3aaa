"""Execution input -> FailoverRequest: console/CLI/schedule inputs and RDS failover events."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from hapg.errors import InvalidInput
from hapg.models import FailoverRequest, reject_unknown, require_mapping
from hapg.names import Kind, RdsEvent

INSTANCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")
CONSOLE_KEYS = {"action", "target_instance", "reason", "force"}
MAX_REASON = 500


def parse_trigger(raw: Any, cluster_id: str) -> FailoverRequest:
    raw = require_mapping(raw, "execution input")
    if "detail-type" in raw or "source" in raw:
        return _from_event(raw, cluster_id)
    return _from_console(raw)


def _from_console(raw: dict[str, Any]) -> FailoverRequest:
    reject_unknown(raw, CONSOLE_KEYS, "the execution input")
    action = raw.get("action")
    if action not in Kind.MANUAL:
        raise InvalidInput(f"action must be one of {', '.join(Kind.MANUAL)}, got {action!r}")
    target = raw.get("target_instance")
    if target is not None and (not isinstance(target, str) or not INSTANCE_ID.match(target)):
        raise InvalidInput(f"target_instance {target!r} is not a DB instance identifier")
    reason = raw.get("reason", f"{action} requested")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise InvalidInput(f"reason must be a non-empty string of at most {MAX_REASON} characters")
    force = raw.get("force", False)
    if not isinstance(force, bool):
        raise InvalidInput("force must be true or false")
    return FailoverRequest(kind=action, reason=reason.strip(), target=target, force=force)


def _from_event(raw: dict[str, Any], cluster_id: str) -> FailoverRequest:
    from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

    event = EventBridgeEvent(raw)
    if event.source != RdsEvent.SOURCE or event.detail_type != RdsEvent.DETAIL_TYPE:
        raise InvalidInput(f"not an RDS cluster event: source={event.source!r} detail-type={event.detail_type!r}")
    detail = require_mapping(event.detail, "event detail")
    code = detail.get("EventID")
    if code not in RdsEvent.FAILOVER_IDS:
        raise InvalidInput(f"EventID {code!r} is not a failover event ({', '.join(RdsEvent.FAILOVER_IDS)})")
    source = str(detail.get("SourceIdentifier", "")).removeprefix("rds:")
    arns = [*(event.resources or []), str(detail.get("SourceArn", ""))]
    if source != cluster_id and not any(a.endswith(f":cluster:{cluster_id}") for a in arns):
        raise InvalidInput(f"event is for cluster {source or arns}, this workflow manages {cluster_id}")
    return FailoverRequest(
        kind=Kind.EVENT,
        reason=f"{code}: {detail.get('Message', 'RDS failover event')}",
        event_id=event.get_id,
        event_code=code,
        event_time=_epoch(event.time),
    )


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise InvalidInput(f"event time {value!r} is not ISO 8601") from exc
