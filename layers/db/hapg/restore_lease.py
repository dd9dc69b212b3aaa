"""The restore-test lease: one restore test at a time.

Every live run holds the lease and every step renews it, so while a run holds it any other
restore-test cluster belongs to a dead run (execution stopped or timed out) and `sweep` may
delete it. One conditional item in the state table; its expiry is also its TTL.
"""

from __future__ import annotations

from typing import Any

from hapg import aws, errors
from hapg.history import StateTable
from hapg.names import Backup, Table
from hapg.notify import when
from hapg.restore_run import Deps, Request
from hapg.telemetry import child_logger

log = child_logger()


def _state(deps: Deps) -> StateTable:
    return StateTable(deps.settings.state_table or "", deps.settings.cluster_id, deps.dynamodb())


def _lease_key(deps: Deps) -> dict[str, Any]:
    return _state(deps).key(Table.RESTORE_PREFIX, Backup.LEASE_SK)


def hold_lease(request: Request, deps: Deps, *, take: bool = False) -> None:
    """Take (validate) or renew (every later step) the lease for Backup.LEASE_S. Taking fails with
    LockHeld while another run's lease is valid; renewing fails with BackupCheckFailed when ours was
    lost (expired and taken by another run)."""
    table = deps.settings.state_table
    if not table:
        log.warning("no state table configured: restore tests are not serialized")
        return
    now = deps.clock()
    names_ = {"#owner": Table.OWNER}
    values = {":me": {"S": request.execution}}
    condition = "#owner = :me"
    if take:
        condition = "attribute_not_exists(#pk) OR #exp < :now OR #owner = :me"
        names_ |= {"#pk": Table.PK, "#exp": Table.TTL}
        values[":now"] = {"N": str(int(now))}
    item = {
        **_lease_key(deps),
        Table.OWNER: {"S": request.execution},
        Table.TTL: {"N": str(int(now + Backup.LEASE_S))},
        "run_id": {"S": request.run_id},
    }
    try:
        with aws.call("dynamodb:PutItem"):
            deps.dynamodb().put_item(
                TableName=table,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames=names_,
                ExpressionAttributeValues=values,
            )
    except errors.AwsRequestFailed as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise
        holder, until = _lease_holder(deps)
        if take:
            raise errors.LockHeld(
                f"another restore test is running ({holder}); its lease lasts until {when(until)}"
            ) from exc
        raise errors.BackupCheckFailed(f"this restore test lost its lease to {holder or 'nobody'}") from exc


def _lease_holder(deps: Deps) -> tuple[str | None, float]:
    item = _state(deps).item(Table.RESTORE_PREFIX, Backup.LEASE_SK) or {}
    return item.get(Table.OWNER), float(item.get(Table.TTL) or 0)


def release_lease(request: Request, deps: Deps) -> None:
    """Give the lease back (record, at the end of every run); someone else's is left alone."""
    if not deps.settings.state_table:
        return
    try:
        with aws.call("dynamodb:DeleteItem"):
            deps.dynamodb().delete_item(
                TableName=deps.settings.state_table,
                Key=_lease_key(deps),
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": Table.OWNER},
                ExpressionAttributeValues={":me": {"S": request.execution}},
            )
    except errors.AwsRequestFailed as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise
