"""Frozen value types shared by the core, the handlers and the local harness."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hapg.errors import InvalidInput
from hapg.names import AVAILABLE


@dataclass(frozen=True)
class Endpoint:
    """A libpq host/port. `host` may list several hosts ("h1,h2") with matching ports."""

    host: str
    port: int | str = 5432

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, value: str, default_port: int | str = 5432) -> Endpoint:
        host, sep, port = value.rpartition(":")
        if not (sep and port.replace(",", "").isdigit()):
            host, port = value, str(default_port)
        return cls(host, int(port) if port.isdigit() else port)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    @classmethod
    def from_secret(cls, secret: dict[str, Any]) -> Credentials:
        try:
            return cls(str(secret["username"]), str(secret["password"]))
        except (KeyError, TypeError) as exc:
            raise InvalidInput("secret lacks username/password") from exc


def to_dict(obj: Any) -> dict[str, Any]:
    """JSON-able dict of a dataclass (tuples become lists)."""
    return asdict(obj)


def from_fields(cls: type, data: dict[str, Any]) -> Any:
    """The dataclass `cls` from the keys of `data` it declares (to_dict's inverse; extra keys ignored)."""
    return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# -- health ---------------------------------------------------------------------------------
def max_known_lag(replicas: tuple[ReplicaLag, ...] | list[ReplicaLag]) -> float | None:
    lags = [r.lag_ms for r in replicas if r.lag_ms is not None]
    return max(lags) if lags else None


@dataclass(frozen=True)
class ReplicaLag:
    instance_id: str
    lag_ms: float | None  # None: unknown (no replay yet)
    state: str  # streaming / catchup / aurora / ...


@dataclass(frozen=True)
class ConnectionStats:
    active: int
    idle: int
    idle_in_transaction: int
    other: int
    max_connections: int

    @property
    def total(self) -> int:
        return self.active + self.idle + self.idle_in_transaction + self.other

    @property
    def percent_of_max(self) -> float:
        return round(100.0 * self.total / self.max_connections, 2) if self.max_connections else 0.0


@dataclass(frozen=True)
class HealthReport:
    mode: str
    healthy: bool
    reason: str
    writer_ok: bool
    writer_instance: str | None
    write_latency_ms: float | None
    reader_ok: bool
    reader_instance: str | None
    writer_stale: bool = False  # the writer endpoint does not (yet) reach the expected writer
    replicas: tuple[ReplicaLag, ...] = ()
    connections: ConnectionStats | None = None
    tps: float | None = None
    proxy_ok: bool | None = None  # None: no RDS Proxy configured
    proxy_latency_ms: float | None = None
    blocked_roles: tuple[str, ...] = ()  # application roles a drain left blocked on the writer
    elapsed_ms: float = 0.0

    @property
    def max_lag_ms(self) -> float | None:
        """The largest known replica lag (None: no replica, or none with a known lag)."""
        return max_known_lag(self.replicas)

    def to_dict(self) -> dict[str, Any]:
        out = to_dict(self)
        out["max_lag_ms"] = self.max_lag_ms
        if self.connections:
            out["connections"]["total"] = self.connections.total
            out["connections"]["percent_of_max"] = self.connections.percent_of_max
        return out


def require_mapping(event: Any, what: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(event).__name__}")
    return event


def reject_unknown(event: dict[str, Any], allowed: set[str] | frozenset[str], what: str) -> None:
    """Typos in operator input must fail loudly, not be ignored."""
    unknown = set(event) - set(allowed)
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(sorted(unknown))} in {what}; allowed: {', '.join(sorted(allowed))}"
        )


@dataclass(frozen=True)
class HealthRequest:
    """health_checker input: the schedule's {"mode": "scheduled"} or the workflow's verify."""

    mode: str
    expected_writer: str | None = None
    expected_replicas: int | None = None

    @classmethod
    def parse(cls, event: Any) -> HealthRequest:
        from hapg.names import HealthMode

        event = require_mapping(event, "health_checker event")
        if event.get("detail-type") == "Scheduled Event" and event.get("source") == "aws.events":
            return cls(HealthMode.SCHEDULED)
        reject_unknown(event, {"mode", "expected_writer", "expected_replicas"}, "health_checker event")
        mode = event.get("mode")
        if mode not in HealthMode.ALL:
            raise InvalidInput(f"unknown mode {mode!r}; expected one of {', '.join(HealthMode.ALL)}")
        writer = event.get("expected_writer")
        replicas = event.get("expected_replicas")
        if writer is not None and (not isinstance(writer, str) or not writer):
            raise InvalidInput("expected_writer must be a non-empty string")
        if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0):
            raise InvalidInput("expected_replicas must be a non-negative integer")
        return cls(mode, writer, replicas)


# -- cluster and failover -------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    instance_id: str
    is_writer: bool
    status: str
    promotion_tier: int = 1
    az: str | None = None
    endpoint: Endpoint | None = None
    lag_ms: float | None = None  # None: unknown

    @property
    def available(self) -> bool:
        return self.status == AVAILABLE


@dataclass(frozen=True)
class ClusterSnapshot:
    """What RDS (and the writer's replication view) said at `taken_at` (epoch seconds)."""

    cluster_id: str
    status: str
    members: tuple[Member, ...]
    taken_at: float

    @property
    def writer(self) -> Member | None:
        return next((m for m in self.members if m.is_writer), None)

    @property
    def readers(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if not m.is_writer)

    def member(self, instance_id: str) -> Member | None:
        return next((m for m in self.members if m.instance_id == instance_id), None)

    @property
    def all_available(self) -> bool:
        return self.status == AVAILABLE and all(m.available for m in self.members)


@dataclass(frozen=True)
class FailoverRequest:
    """A validated trigger: console/CLI/schedule input or an RDS failover event."""

    kind: str
    reason: str
    target: str | None = None
    force: bool = False
    event_id: str | None = None
    event_code: str | None = None
    event_time: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailoverRequest:
        return from_fields(cls, data)


@dataclass(frozen=True)
class Plan:
    decision: str
    mode: str
    reason: str
    old_writer: str | None = None
    target: str | None = None
    old_writer_endpoint: str | None = None


@dataclass(frozen=True)
class HistoryRecord:
    execution: str
    kind: str
    mode: str
    outcome: str
    reason: str
    started_at: float
    finished_at: float
    old_writer: str | None = None
    new_writer: str | None = None
    event_id: str | None = None
    event_code: str | None = None
    event_time: float | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryRecord:
        return from_fields(cls, data)
