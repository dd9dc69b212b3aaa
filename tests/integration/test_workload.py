"""The chaos campaign's lost-commit check (`Workload.lost`) against a real PostgreSQL writer: the
commits a writer thread saw acknowledged are all found, and a missing one is reported exactly."""

from __future__ import annotations

import contextlib
import threading
import time

from hapg.names import DB_NAME

from local.pgnode import ADMIN_USER, HOST
from local.workload import SCHEMA_SQL, TABLE, Ack, Workload, WorkloadConfig, _writer

ACKS = 3


def test_lost_finds_exactly_the_acknowledged_row_missing_on_the_writer(pg_pair):
    primary = pg_pair.primary
    primary.sql(SCHEMA_SQL, dbname=DB_NAME)
    try:
        cfg = WorkloadConfig(
            HOST, str(primary.port), ADMIN_USER, pg_pair.sandbox.admin_password, str(pg_pair.sandbox.tls.ca_cert)
        )
        stop, acks, errs = threading.Event(), [], []
        writer = threading.Thread(target=_writer, args=(cfg, 7, stop, acks, errs), daemon=True)
        writer.start()
        deadline = time.monotonic() + 30
        while len(acks) < ACKS and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        writer.join(30)
        assert not writer.is_alive() and len(acks) >= ACKS, (len(acks), errs)

        wl = Workload(cfg)  # never started: only its bookkeeping of what was acknowledged
        wl.acks = sorted(Ack(*a) for a in acks)
        with contextlib.closing(primary.connect(DB_NAME)) as conn:
            assert wl.lost(conn) == [], "every acknowledged commit is on the writer"
            victim = wl.acks[1]
            with conn.cursor() as cur:
                cur.execute(f"DELETE FROM {TABLE} WHERE writer = %s AND seq = %s", (victim.writer, victim.seq))  # noqa: S608
                assert cur.rowcount == 1
            assert wl.lost(conn) == [victim]
    finally:
        primary.sql(f"DROP TABLE IF EXISTS {TABLE}", dbname=DB_NAME)
