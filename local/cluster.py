"""The local stand-in for Aurora behind the coordinator's ClusterPort.

Membership, promotion tiers and the writer flag live in moto's RDS (so the real AuroraCluster
code runs, throttling included); `failover()` really switches a PostgreSQL pair over; instance
status comes from the servers themselves. Like Aurora, a former writer comes back as a reader
on its own (pg_rewind, then streaming), and synchronous replication is re-armed once it does.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field

from hapg.aurora import AuroraCluster
from hapg.models import ClusterSnapshot, Endpoint, Member

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

    # -- ClusterPort ------------------------------------------------------------------------
    def snapshot(self, with_lag: bool = True) -> ClusterSnapshot:
        base = self.aurora.snapshot(with_lag)
        members = tuple(self._overlay(m) for m in base.members)
        return dataclasses.replace(base, members=members, status="available")

    def failover(self, target: str) -> None:
        with self._lock:
            old = self.writer_node()
            new = self.nodes[target]
            self.aurora.failover(target)  # the RDS API call first: a throttled call changes nothing
            prim = Primitive(target, time.time())
            self.primitives.append(prim)
            with closing(new.connect()) as conn, conn.cursor() as cur:  # one session for the whole switch
                if old is not None and old.is_running():
                    self._fence(old, cur, prim)
                else:
                    prim.planned = False
                    prim.notes.append(f"{old.name if old else '?'} was down: promoting without fencing")
                _promote(cur, new.name)
            prim.promoted = time.time()
            if old is not None and self.rejoin:
                self._start_rejoin(old, new, prim)

    # -- helpers -------------------------------------------------------------------------------
    def writer_node(self) -> PgNode | None:
        """The node moto says is the writer (the port's notion of truth)."""
        for m in self.aurora.snapshot(with_lag=False).members:
            if m.is_writer:
                return self.nodes[m.instance_id]
        return None

    def _overlay(self, m: Member) -> Member:
        node = self.nodes[m.instance_id]
        if m.instance_id in self._rejoining:
            status = "rebooting"
        elif node.is_running():
            status = "available"
        else:
            status = "failed"
        endpoint = (
            Endpoint(node.endpoint.host, UNREACHABLE_PORT) if m.instance_id in self.partitioned else node.endpoint
        )
        return dataclasses.replace(m, status=status, endpoint=endpoint)

    def _fence(self, old: PgNode, target, prim: Primitive) -> None:
        """Planned: checkpoint, stop the old writer fast, wait until the target (its cursor) replayed
        everything the old writer flushed."""
        with closing(old.connect()) as conn, conn.cursor() as cur:
            cur.execute("CHECKPOINT")  # cheap when the drainer already checkpointed
            cur.execute("SELECT pg_current_wal_flush_lsn()")
            final_lsn = cur.fetchone()[0]
        old.fence()
        prim.fenced = time.time()
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while True:
            target.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (final_lsn,))
            if target.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the target did not replay up to {final_lsn}")
            time.sleep(0.002)

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
            prim.rejoined = time.time()
        except Exception as exc:  # noqa: BLE001 - surfaced through notes; the member stays "failed"
            prim.notes.append(f"rejoin of {old.name} failed: {exc}")
        finally:
            self._rejoining.discard(old.name)

    def wait_rejoined(self, timeout: float = 60) -> None:
        for thread in self._threads:
            thread.join(timeout)


def _promote(cur, name: str, timeout: float = 30.0) -> None:
    """Promote, then clear synchronous_standby_names: with no standby left, commits would hang.

    pg_promote(wait => true) polls every 100 ms; polling pg_is_in_recovery() every 2 ms is faster."""
    cur.execute("SELECT pg_promote(wait => false)")
    deadline = time.monotonic() + timeout
    while True:
        cur.execute("SELECT pg_is_in_recovery()")
        if not cur.fetchone()[0]:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} still in recovery after {timeout}s")
        time.sleep(0.002)
    cur.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
    cur.execute("SELECT pg_reload_conf()")
