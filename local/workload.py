"""An application under load: N writer threads committing numbered rows through the writer endpoint.

It runs in its own process (spawned), so its threads do not share a GIL with the orchestration
being measured. Every commit the server acknowledged is recorded with its wall-clock time;
afterwards `lost()` checks each acknowledged row exists on the final writer.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass

TABLE = "ledger_probe"
RECONNECT_PAUSE_S = 0.005


@dataclass(frozen=True)
class WorkloadConfig:
    host: str  # libpq multi-host list: the writer endpoint of the local cluster
    port: str
    user: str
    password: str
    ca_file: str
    dbname: str = "financialdb"
    threads: int = 20


@dataclass(frozen=True, order=True)
class Ack:
    at: float
    writer: int
    seq: int


SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
  writer int NOT NULL, seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (writer, seq))
"""


def _connect(cfg: WorkloadConfig):
    """Like an application: libpq's blocking mode (no wait callback), multi-host writer endpoint,
    read-write sessions only, TLS verify-full, short timeouts."""
    import psycopg2

    conn = psycopg2.connect(
        host=cfg.host,
        port=cfg.port,
        user=cfg.user,
        password=cfg.password,
        dbname=cfg.dbname,
        sslmode="verify-full",
        sslrootcert=cfg.ca_file,
        target_session_attrs="read-write",
        connect_timeout=2,
        application_name="workload",
        options="-c statement_timeout=2000",
    )
    conn.autocommit = True
    return conn


def _writer(cfg: WorkloadConfig, writer: int, stop: threading.Event, acks: list, errors: list) -> None:
    """One client thread: commit, record the ack, reconnect on any error."""
    conn, seq = None, 0
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = _connect(cfg)
            seq += 1  # a new number per attempt: an unacknowledged attempt may or may not exist
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (writer, seq) VALUES (%s, %s)", (writer, seq))  # noqa: S608
            acks.append((time.time(), writer, seq))
        except Exception as exc:  # noqa: BLE001 - any failure: count it, reconnect
            errors.append((time.time(), type(exc).__name__))
            _close(conn)
            conn = None
            time.sleep(RECONNECT_PAUSE_S)
    _close(conn)


def _close(conn) -> None:
    if conn is not None and not conn.closed:
        with contextlib.suppress(Exception):
            conn.close()


def _run(cfg: WorkloadConfig, stop_evt, out_q) -> None:
    stop = threading.Event()
    acks: list = []
    errs: list = []
    threads = [
        threading.Thread(target=_writer, args=(cfg, i, stop, acks, errs), daemon=True) for i in range(cfg.threads)
    ]
    for t in threads:
        t.start()
    stop_evt.wait()
    stop.set()
    for t in threads:
        t.join(10)
    out_q.put((acks, errs))


class Workload:
    """Start/stop the writer process; read back what it acknowledged."""

    def __init__(self, cfg: WorkloadConfig):
        self.cfg = cfg
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._queue = ctx.Queue()
        self._proc = ctx.Process(target=_run, args=(cfg, self._stop, self._queue), name="workload", daemon=True)
        self.acks: list[Ack] = []
        self.errors: list[tuple[float, str]] = []

    def start(self, warmup_s: float = 1.0) -> Workload:
        self._proc.start()
        time.sleep(warmup_s)
        return self

    def stop(self, timeout: float = 30) -> Workload:
        self._stop.set()
        acks, errs = self._queue.get(timeout=timeout)
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
        self.acks = sorted(Ack(*a) for a in acks)
        self.errors = errs
        return self

    def lost(self, conn) -> list[Ack]:
        """Acknowledged rows missing from the database behind `conn` (the final writer)."""
        with conn.cursor() as cur:
            cur.execute(f"SELECT writer, seq FROM {TABLE}")  # noqa: S608
            present = set(cur.fetchall())
        return [a for a in self.acks if (a.writer, a.seq) not in present]


def unavailability(acks: list[Ack], start: float, end: float) -> tuple[float, float, float]:
    """The longest gap between consecutive acknowledged commits within [start, end]: (ms, from, to)."""
    times = [a.at for a in acks]
    best = (0.0, start, start)
    prev = None
    for t in times:
        if prev is not None and t >= start and prev <= end:
            gap = t - prev
            if gap > best[0]:
                best = (gap, prev, t)
        prev = t
    return round(best[0] * 1000, 1), best[1], best[2]
