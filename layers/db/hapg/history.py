"""The state table: failover history, the failover lock (read side) and control flags.

One DynamoDB table, composite key (pk, sk), TTL on `expires_at`:
  HISTORY#<cluster> / <started iso>#<execution>    one item per recorded execution
  LOCK#<cluster>    / lock                         written by the state machine (conditional put)
  CONTROL#<cluster> / maintenance                  set by operators (runbook)
  RESTORE#<cluster> / <started iso>#<execution>    restore-test results (hapg.restore_report)
  RESTORE#<cluster> / lease                        one restore test at a time (hapg.restore_lease)
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any

from hapg import aws, errors
from hapg.models import HistoryRecord, to_dict
from hapg.names import Table

HISTORY_RETENTION_S = 400 * 86400


def _to_ddb(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {str(k): _to_ddb(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_ddb(v) for v in value]
    return value


def _from_ddb(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, dict):
        return {k: _from_ddb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_ddb(v) for v in value]
    return value


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    """A plain dict as DynamoDB attribute values (floats as Decimal, None left out)."""
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer()
    return {k: ser.serialize(v) for k, v in _to_ddb(item).items()}


def sort_key(at: float, execution: str) -> str:
    """`<iso time>#<execution name>`: a history partition sorts by time, one item per execution."""
    stamp = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp}#{execution.rsplit(':', 1)[-1]}"


class StateTable:
    def __init__(self, table_name: str, cluster_id: str, client: Any = None):
        self.table_name = table_name
        self.cluster_id = cluster_id
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("dynamodb")

    def key(self, prefix: str, sk: str) -> dict[str, Any]:
        return {Table.PK: {"S": f"{prefix}{self.cluster_id}"}, Table.SK: {"S": sk}}

    @staticmethod
    def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeDeserializer

        de = TypeDeserializer()
        return _from_ddb({k: de.deserialize(v) for k, v in item.items()})

    # -- history ------------------------------------------------------------------------
    def recent(self, limit: int = 10) -> tuple[HistoryRecord, ...]:
        """Newest first."""
        with aws.call("dynamodb:Query"):
            resp = self.client.query(
                TableName=self.table_name,
                KeyConditionExpression="#pk = :pk",
                ExpressionAttributeNames={"#pk": Table.PK},
                ExpressionAttributeValues={":pk": {"S": f"{Table.HISTORY_PREFIX}{self.cluster_id}"}},
                ScanIndexForward=False,
                Limit=limit,
                ConsistentRead=True,
            )
        return tuple(HistoryRecord.from_dict(self._deserialize(i)) for i in resp.get("Items", []))

    def put(self, record: HistoryRecord) -> bool:
        """Write once per execution; a retried `record` step finds it there and returns False."""
        return self.put_once(
            Table.HISTORY_PREFIX,
            record.started_at,
            record.execution,
            {Table.TTL: int(record.finished_at + HISTORY_RETENTION_S), **to_dict(record)},
        )

    def put_once(self, prefix: str, started_at: float, execution: str, item: dict[str, Any]) -> bool:
        """Put `item` at (prefix+cluster, <started_at>#<execution>) unless it is there already. Both
        parts of the key are fixed when the execution starts, so every retry targets the same item."""
        key = {Table.PK: f"{prefix}{self.cluster_id}", Table.SK: sort_key(started_at, execution)}
        try:
            with aws.call("dynamodb:PutItem"):
                self.client.put_item(
                    TableName=self.table_name,
                    Item=serialize({**key, **item}),
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": Table.PK},
                )
        except errors.AwsRequestFailed as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- lock and control -----------------------------------------------------------------
    def lock_owner(self, now: float | None = None) -> str | None:
        """The execution holding the failover lock, or None when free or expired."""
        item = self.item(Table.LOCK_PREFIX, Table.LOCK_SK)
        if not item:
            return None
        expires = float(item.get(Table.TTL, 0))
        return item.get(Table.OWNER) if expires > (now or time.time()) else None

    def maintenance(self) -> bool:
        item = self.item(Table.CONTROL_PREFIX, Table.MAINTENANCE_SK)
        return bool(item and item.get("enabled"))

    def item(self, prefix: str, sk: str) -> dict[str, Any] | None:
        with aws.call("dynamodb:GetItem"):
            resp = self.client.get_item(TableName=self.table_name, Key=self.key(prefix, sk), ConsistentRead=True)
        return self._deserialize(resp["Item"]) if "Item" in resp else None
