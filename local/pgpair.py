"""A primary and a streaming standby on loopback, with synchronous replication.

`remote_apply` + `synchronous_standby_names='*'` mirrors what Aurora's quorum storage gives:
a commit acknowledged to a client is on the standby too, so a crash of the primary loses none.
"""

from __future__ import annotations

import time

from hapg.names import DB_NAME

from local.pgnode import REPL_USER, PgNode, Sandbox, teardown

SYNC = {"synchronous_commit": "remote_apply", "synchronous_standby_names": "*"}
ASYNC = {"synchronous_commit": "on", "synchronous_standby_names": ""}


class PgPair:
    def __init__(self, names: tuple[str, str] = ("writer", "reader-1"), sync: bool = True, prefix: str = "hapg-"):
        self.sandbox = Sandbox(prefix)
        self.sync = sync
        self.nodes = [PgNode(name, self.sandbox) for name in names]

    @property
    def primary(self) -> PgNode:
        return self.nodes[0]

    @property
    def standby(self) -> PgNode:
        return self.nodes[1]

    def start(self, dbname: str = DB_NAME) -> PgPair:
        primary, standby = self.nodes
        primary.initdb(ASYNC)  # sync only once a standby exists, or every commit waits forever
        primary.start()
        primary.psql(f"CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{self.sandbox.repl_password}'")
        primary.psql(f"CREATE DATABASE {dbname}")
        standby.clone_from(primary)
        standby.start()
        self.wait_streaming(primary, standby)
        if self.sync:
            set_sync(primary, True)
        return self

    @staticmethod
    def wait_streaming(primary: PgNode, standby: PgNode, timeout: float = 30) -> None:
        """Until `standby` streams `primary`'s current timeline (a walreceiver can look "streaming"
        for a moment while it fails to follow a fork, so the timeline is checked too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                tli = primary.sql("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
                rows = standby.sql("SELECT status, received_tli FROM pg_stat_wal_receiver")
            except Exception:  # noqa: BLE001 - a node still starting up
                rows, tli = [], None
            if rows and rows[0][0] == "streaming" and rows[0][1] == tli[0][0]:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{standby.name} is not streaming from {primary.name} after {timeout}s")

    def stop(self) -> None:
        teardown(self.nodes, self.sandbox)


def set_sync(node: PgNode, on: bool) -> None:
    """Turn synchronous replication on/off on a running primary (ALTER SYSTEM + reload)."""
    for key, value in (SYNC if on else ASYNC).items():
        node.psql(f"ALTER SYSTEM SET {key} = '{value}'")
    node.psql("SELECT pg_reload_conf()")
