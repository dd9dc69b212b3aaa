"""Backup verification on this machine: a seeded source server, "restored clusters" made from it with
pg_basebackup, and the local restore port.

`RestoreLab` runs a real PostgreSQL 15 source (`financialdb` with a few schemas, tables and rows)
and makes stand-ins for restored clusters: a pg_basebackup of the source, started and promoted, so
it holds exactly what the source held at that moment, roles and passwords included (as a snapshot
does). `LocalRestore` is the product's `AuroraRestore` (every RDS call goes to moto) with the two
things moto cannot do: the restored cluster's endpoint is the stand-in, and resetting the master
password really alters the role there.
"""

from __future__ import annotations

import threading
from typing import Any

from hapg.models import Endpoint
from hapg.names import DB_NAME
from hapg.restore_port import AuroraRestore, RestoreSpec
from psycopg2 import sql

from local.pgnode import REPL_USER, PgNode, Sandbox, teardown

MASTER_USER = "hapg_master"  # the "Aurora master user" of the source (and so of every restore)
KEY_TABLES = (("ledger", "accounts"), ("ledger", "entries"), ("audit", "events"))

# About 20 MB of rows, so that an empty database (~7.5 MB) is far below half the source's size.
SEED_SQL = f"""
CREATE SCHEMA ledger;
CREATE SCHEMA audit;
CREATE TABLE ledger.accounts (id int PRIMARY KEY, owner text NOT NULL, opened_at timestamptz NOT NULL);
CREATE TABLE ledger.entries (id bigint PRIMARY KEY, account_id int NOT NULL,
                             amount numeric(18, 2) NOT NULL, memo text NOT NULL);
CREATE TABLE ledger.pending (id bigserial PRIMARY KEY, payload text);
CREATE TABLE audit.events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text NOT NULL);
CREATE TABLE public.settings (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO ledger.accounts SELECT g, 'owner-' || g, now() - g * interval '1 hour' FROM generate_series(1, 1000) g;
INSERT INTO ledger.entries SELECT g, 1 + g % 1000, (g % 9973) / 100.0, repeat(md5(g::text), 3)
  FROM generate_series(1, 100000) g;
INSERT INTO audit.events (what) SELECT 'event ' || g FROM generate_series(1, 5000) g;
INSERT INTO public.settings VALUES ('currency', 'EUR'), ('region', 'eu-west-1');
GRANT pg_read_all_data TO {MASTER_USER};
"""


class RestoreLab:
    """A seeded source server and promoted pg_basebackup copies of it."""

    def __init__(self, prefix: str = "hapg-restore-"):
        self.sandbox = Sandbox(prefix)
        self.source = PgNode("source", self.sandbox)
        self.master_password = "snapshot-time-" + self.sandbox.repl_password[:12]  # the source's, "at backup"
        self.clones: list[PgNode] = []

    def start(self) -> RestoreLab:
        src = self.source
        src.initdb({"synchronous_commit": "on"})
        src.start()
        src.psql(f"CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{self.sandbox.repl_password}'")
        src.sql(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(MASTER_USER)), (self.master_password,)
        )
        src.psql(f"CREATE DATABASE {DB_NAME}")
        src.sql(SEED_SQL, dbname=DB_NAME)
        src.sql("VACUUM ANALYZE", dbname=DB_NAME)
        return self

    def clone(self, name: str | None = None) -> PgNode:
        """A stand-in restored cluster: pg_basebackup of the source, started, promoted."""
        node = PgNode(name or f"restored-{len(self.clones) + 1}", self.sandbox)
        self.clones.append(node)
        node.clone_from(self.source)
        node.start()
        node.sql("SELECT pg_promote(wait => true)")
        return node

    def stop(self) -> None:
        teardown([*self.clones, self.source], self.sandbox)


class LocalRestore(AuroraRestore):
    """AuroraRestore on moto whose restored cluster is a real server (`stand_in`, swappable per test).

    `calls` lists the RDS writes in order ((operation, identifier)); `passwords` the master passwords
    set, so tests can prove none of them reached the workflow state or the logs.
    """

    def __init__(self, cluster_id: str, prefix: str, stand_in: PgNode | None = None):
        super().__init__(cluster_id, prefix)
        self.stand_in = stand_in
        self.calls: list[tuple[str, str]] = []
        self.passwords: list[str] = []
        self._lock = threading.Lock()

    def _log(self, op: str, ident: str) -> None:
        with self._lock:
            self.calls.append((op, ident))

    def restore_cluster(self, spec: RestoreSpec) -> None:
        self._log("restore", spec.cluster_id)
        super().restore_cluster(spec)

    def create_instance(self, instance_id: str, cluster_id: str, instance_class: str, tags: tuple) -> None:
        self._log("create_instance", instance_id)
        super().create_instance(instance_id, cluster_id, instance_class, tags)

    def delete_instance(self, instance_id: str) -> None:
        self._log("delete_instance", instance_id)
        super().delete_instance(instance_id)

    def delete_cluster(self, cluster_id: str) -> None:
        self._log("delete_cluster", cluster_id)
        super().delete_cluster(cluster_id)

    def set_master_password(self, cluster_id: str, username: str, password: str) -> None:
        super().set_master_password(cluster_id, username, password)  # moto: the call RDS would get
        self._log("set_master_password", cluster_id)
        with self._lock:
            self.passwords.append(password)
        statement = sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(username))
        self._node().sql(statement, (password,))  # what RDS does on the restored cluster

    def endpoint(self, cluster: dict[str, Any]) -> Endpoint:
        super().endpoint(cluster)  # moto reports one, as RDS would
        return self._node().endpoint

    def _node(self) -> PgNode:
        if self.stand_in is None:
            raise RuntimeError("LocalRestore has no stand-in server for the restored cluster")
        return self.stand_in
