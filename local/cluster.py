"""The local stand-in for Aurora behind the coordinator's ClusterPort.

Membership, promotion tiers and the writer flag live in moto's RDS (so the real AuroraCluster
code runs, throttling included); `failover()` really switches a PostgreSQL pair over; instance
status comes from the servers themselves. Like Aurora, a former writer comes back as a reader
on its own (pg_rewind, then streaming), and synchronous replication is re-armed once it does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import threading
import time
from dataclasses import dataclass, field

import psycopg2
from hapg import aws, errors
from hapg.aurora import AuroraCluster
from hapg.models import ClusterSnapshot, Endpoint, Member
from hapg.names import AVAILABLE

from local.pgnode import PgNode
from local.pgpair import PgPair, set_sync

CATCH_UP_TIMEOUT_S = 10.0
UNREACHABLE_PORT = 1  # nothing listens there: connection refused, as through a dropped route


@dataclass
class Primitive:
    """Timing of one real switchover, for the report (orchestration overhead excludes it)."""

    target: str
    started: float
    fenced: float | None = None
    promoted: float | None = None
    rejoined: float | None = None
    planned: bool = True
    notes: list[str] = field(default_factory=list)


class LocalCluster:
    def __init__(self, pair: PgPair, aurora: AuroraCluster, rejoin: bool = True):
        self.cluster_id = aurora.cluster_id
        self.pair = pair
        self.aurora = aurora
        self.rejoin = rejoin
        self.nodes = {n.name: n for n in pair.nodes}
        self.primitives: list[Primitive] = []
        self._lock = threading.Lock()
        self._rejoining: set[str] = set()
        self._threads: list[threading.Thread] = []
        self.partitioned: set[str] = set()  # instances the Lambdas cannot reach (chaos, rehearsal)
        # Aurora's control plane does not log in to fail over: the stand-in keeps one warm admin
        # session per node (opened now and after a rejoin) instead of a TLS + SCRAM login per step
        self._admin: dict[str, object] = {}
        for node in pair.nodes:
            self._warm(node)

    # -- ClusterPort ------------------------------------------------------------------------
    def snapshot(self, with_lag: bool = True) -> ClusterSnapshot:
        base = self.aurora.snapshot(with_lag)
        members = tuple(self._overlay(m) for m in base.members)
        return dataclasses.replace(base, members=members, status=AVAILABLE)

    def failover(self, target: str) -> None:
        with self._lock:
            old = self.writer_node()
            new = self.nodes[target]
            if not new.is_running():  # as RDS answers InvalidDBInstanceState: nothing is touched
                raise errors.NotReady(f"Aurora cannot fail over now: target {target} is not available")
            self.aurora.failover(target)  # the RDS API call first: a throttled call changes nothing
            prim = Primitive(target, time.time())
            self.primitives.append(prim)
            try:
                if old is not None and old.is_running():
                    self._fence(old, new, prim)
                else:
                    prim.planned = False
                    prim.notes.append(f"{old.name if old else '?'} was down: promoting without fencing")
                self._promote(new)
            except Exception as exc:
                if new.is_running() or old is None or prim.fenced is None:
                    raise
                self._roll_back(old, new, prim)
                raise errors.NotReady(
                    f"failover to {target} failed: it went down; {old.name} is the writer again"
                ) from exc
            prim.promoted = time.time()
            if old is not None and self.rejoin:
                self._start_rejoin(old, new, prim)

    # -- helpers -------------------------------------------------------------------------------
    def writer_node(self) -> PgNode | None:
        """The node moto says is the writer (the port's notion of truth): one DescribeDBClusters."""
        with aws.call("rds:DescribeDBClusters"):
            cluster = self.aurora.rds.describe_db_clusters(DBClusterIdentifier=self.cluster_id)["DBClusters"][0]
        for m in cluster.get("DBClusterMembers", []):
            if m.get("IsClusterWriter"):
                return self.nodes[m["DBInstanceIdentifier"]]
        return None

    def close(self) -> None:
        """Close the warm admin sessions (the stack calls this on exit)."""
        with self._lock:
            for conn in self._admin.values():
                _close(conn)
            self._admin.clear()

    def _overlay(self, m: Member) -> Member:
        node = self.nodes[m.instance_id]
        if m.instance_id in self._rejoining:
            status = "rebooting"
        elif node.is_running():
            status = AVAILABLE
        else:
            status = "failed"
        endpoint = (
            Endpoint(node.endpoint.host, UNREACHABLE_PORT) if m.instance_id in self.partitioned else node.endpoint
        )
        return dataclasses.replace(m, status=status, endpoint=endpoint)

    def _fence(self, old: PgNode, target: PgNode, prim: Primitive) -> None:
        """Planned: checkpoint, stop the old writer fast, wait until the target replayed everything
        the old writer had flushed."""
        try:  # one round trip; the CHECKPOINT is cheap when the drainer already checkpointed
            final_lsn = self._sql(old, "CHECKPOINT; SELECT pg_current_wal_flush_lsn()")[0]
        except (psycopg2.Error, errors.HapgError):
            if old.is_running():
                raise
            # it died under us: like Aurora, carry on as a crash (synchronous replication: every
            # acknowledged commit is already on the target)
            self._forget(old)
            prim.planned = False
            prim.notes.append(f"{old.name} died while being fenced: promoting without fencing")
            return
        old.fence()
        self._forget(old)
        prim.fenced = time.time()
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while not self._sql(target, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (final_lsn,))[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the target did not replay up to {final_lsn}")
            time.sleep(0.002)

    def _roll_back(self, old: PgNode, new: PgNode, prim: Primitive) -> None:
        """The target died after the old writer was fenced: like Aurora (RDS-EVENT-0070, promoting the
        previous primary again), restart the old writer as the writer, without waiting for a standby."""
        old.start()
        self._sql(old, "ALTER SYSTEM SET synchronous_standby_names = ''")
        self._sql(old, "SELECT pg_reload_conf()")
        self.aurora.failover(old.name)
        prim.notes.append(f"{new.name} went down during the failover: {old.name} restarted as the writer")

    def _promote(self, node: PgNode, timeout: float = 30.0) -> None:
        """Promote, then clear synchronous_standby_names: with no standby left, commits would hang.

        pg_promote(wait => true) polls every 100 ms; polling pg_is_in_recovery() every 2 ms is faster."""
        if self._sql(node, "SELECT pg_is_in_recovery()")[0]:
            self._sql(node, "SELECT pg_promote(wait => false)")
        deadline = time.monotonic() + timeout
        while self._sql(node, "SELECT pg_is_in_recovery()")[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} still in recovery after {timeout}s")
            time.sleep(0.002)
        self._sql(node, "ALTER SYSTEM SET synchronous_standby_names = ''")
        self._sql(node, "SELECT pg_reload_conf()")

    # -- warm admin sessions ------------------------------------------------------------------------
    def _sql(self, node: PgNode, statement: str, params: tuple | None = None) -> tuple | None:
        """One statement on the node's warm admin session. A session found dead (the server restarted
        since) is replaced once; every statement sent through here is safe to send twice."""
        for attempt in (1, 2):
            conn = self._admin.get(node.name)
            if conn is None or conn.closed:
                conn = self._admin[node.name] = node.connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(statement, params)
                    return cur.fetchone() if cur.description else None
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if not conn.closed and attempt == 1:  # a live session: a real error, not a stale one
                    raise
                self._forget(node)
                if attempt == 2:
                    raise
        return None

    def _warm(self, node: PgNode) -> None:
        with contextlib.suppress(Exception):  # best effort: _sql reconnects when needed
            self._forget(node)
            self._admin[node.name] = node.connect()

    def _forget(self, node: PgNode) -> None:
        _close(self._admin.pop(node.name, None))

    def _start_rejoin(self, old: PgNode, new: PgNode, prim: Primitive) -> None:
        self._rejoining.add(old.name)
        thread = threading.Thread(target=self._rejoin, args=(old, new, prim), name=f"rejoin-{old.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _rejoin(self, old: PgNode, new: PgNode, prim: Primitive) -> None:
        try:
            if old.is_running():
                old.fence()
            new.sql("CHECKPOINT")  # pg_rewind reads the timeline from the control file: make it current
            try:
                old.rewind_from(new)
            except RuntimeError as exc:  # e.g. a crash left it unrewindable: rebuild from scratch
                prim.notes.append(f"pg_rewind failed ({str(exc)[:120]}); re-cloning")
                shutil.rmtree(old.data, ignore_errors=True)
                old.clone_from(new)
            old.configure({"port": old.port, "cluster_name": old.name})
            old.follow(new)
            old.start()
            PgPair.wait_streaming(new, old)
            set_sync(new, self.pair.sync)
            with self._lock:
                self._warm(old)
            prim.rejoined = time.time()
        except Exception as exc:  # noqa: BLE001 - surfaced through notes; the member stays "failed"
            prim.notes.append(f"rejoin of {old.name} failed: {exc}")
        finally:
            self._rejoining.discard(old.name)

    def wait_rejoined(self, timeout: float = 60) -> None:
        for thread in self._threads:
            thread.join(timeout)


def _close(conn) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
