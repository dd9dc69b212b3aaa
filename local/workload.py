"""An application under load: N writer threads committing numbered rows through the writer endpoint.

It runs in its own process (spawned), so its threads do not share a GIL with the orchestration
being measured. Every commit the server acknowledged is recorded with its wall-clock time;
afterwards `lost()` checks each acknowledged row exists on the final writer.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass

from hapg.names import DB_NAME

from local.pgnode import DATA_PLANE_NICE

TABLE = "ledger_probe"
RECONNECT_PAUSE_S = 0.005
STOP_GRACE_S = 5.0  # total, for all writer threads to finish their last statement


@dataclass(frozen=True)
class WorkloadConfig:
    host: str  # libpq multi-host list: the writer endpoint of the local cluster
    port: str
    user: str
    password: str
    ca_file: str
    dbname: str = DB_NAME
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


def bootstrap(node, user: str, password: str, dbname: str = DB_NAME) -> None:
    """On the primary `node` (a PgNode; the database exists): the workload's login and its table."""
    node.sql(f"CREATE ROLE {user} LOGIN PASSWORD %s", (password,))
    node.sql(SCHEMA_SQL, dbname=dbname)
    node.sql(f"GRANT SELECT, INSERT ON {TABLE} TO {user}", dbname=dbname)


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


def _writer(cfg: WorkloadConfig, writer: int, stop: threading.Event, acks: list, errors: list, *, last=None) -> None:
    """One client thread: commit, record the ack, reconnect on any error."""
    # numbers unique across runs on one database (soak, a reused cluster): start at the epoch in µs
    conn, seq = None, int(time.time() * 1_000_000)
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = _connect(cfg)
            seq += 1  # a new number per attempt: an unacknowledged attempt may or may not exist
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (writer, seq) VALUES (%s, %s)", (writer, seq))  # noqa: S608
            now = time.time()
            acks.append((now, writer, seq))
            if last is not None:
                last.value = now  # readable by the parent while running (Workload.last_ack)
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


def _run(cfg: WorkloadConfig, stop_evt, out_q, last=None) -> None:
    if nice := os.environ.get(DATA_PLANE_NICE):  # benchmarks: see local/pgnode.py
        os.nice(int(nice))
    stop = threading.Event()
    acks: list = []
    errs: list = []
    threads = [
        threading.Thread(target=_writer, args=(cfg, i, stop, acks, errs), kwargs={"last": last}, daemon=True)
        for i in range(cfg.threads)
    ]
    for t in threads:
        t.start()
    stop_evt.wait()
    stop.set()
    deadline = time.monotonic() + STOP_GRACE_S
    for t in threads:  # a thread stuck in a commit (e.g. waiting for a dead sync standby) is left behind
        t.join(max(0.0, deadline - time.monotonic()))
    out_q.put((list(acks), list(errs)))


class Workload:
    """Start/stop the writer process; read back what it acknowledged."""

    def __init__(self, cfg: WorkloadConfig):
        self.cfg = cfg
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._queue = ctx.Queue()
        self._last = ctx.Value("d", 0.0, lock=False)
        self._proc = ctx.Process(
            target=_run, args=(cfg, self._stop, self._queue, self._last), name="workload", daemon=True
        )
        self.acks: list[Ack] = []
        self.errors: list[tuple[float, str]] = []

    def start(self, warmup_s: float = 1.0) -> Workload:
        self._proc.start()
        time.sleep(warmup_s)
        return self

    def last_ack(self) -> float:
        """Wall-clock time of the latest acknowledged commit so far (0 before the first), while running."""
        return self._last.value

    def wait_ack_after(self, at: float, timeout: float) -> bool:
        """Until a commit is acknowledged after `at` (writes flow again); False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self._last.value <= at:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

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


def lost_commits(workload: Workload, writer, dbname: str = DB_NAME) -> list[Ack] | None:
    """The commits `workload` saw acknowledged that are missing on `writer` (the final writer's PgNode);
    None when there is no running writer to ask."""
    if writer is None or not writer.is_running():
        return None
    with contextlib.closing(writer.connect(dbname)) as conn:
        return workload.lost(conn)


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
