"""Real PostgreSQL 15 servers on loopback for tests, the rehearsal and the benchmarks.

PostgreSQL refuses to run as root, so when we are root every server command runs as the
`postgres` OS user in a sandbox directory that user owns. TLS is on (verify-full with a
throwaway CA) and plain TCP is rejected, like `rds.force_ssl=1` on Aurora.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hapg.models import Endpoint

from local.tls import TlsFiles, make_tls

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
ADMIN_USER = "hapg_admin"
REPL_USER = "hapg_repl"
HOST = "127.0.0.1"
# Benchmarks only: run PostgreSQL (and local/workload.py) at this nice level, the data plane below
# the orchestration, as separate hosts would keep them apart. Unset: everything at the default priority.
DATA_PLANE_NICE = "HAPG_DATA_PLANE_NICE"


def _pg_uid() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def as_server_user(argv: list[str]) -> list[str]:
    if nice := os.environ.get(DATA_PLANE_NICE):
        argv = ["nice", "-n", str(int(nice)), *argv]
    return ["runuser", "-u", "postgres", "--", *argv] if _pg_uid() else argv


def run(argv: list[str], timeout: float = 60, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        as_server_user(argv),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def child_pids(pid: int) -> list[int]:
    """The child processes of `pid`, from /proc (no procps needed); [] once it is gone. A kernel without
    /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN) is answered from every /proc/<n>/stat."""
    tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if tasks:
        out = []
        for task in tasks:
            with contextlib.suppress(OSError):
                out += [int(p) for p in task.read_text().split()]
        return out
    if not Path(f"/proc/{pid}").exists():
        return []
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after "(comm)"
                out.append(int(stat.parent.name))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Sandbox:
    """A temp dir owned by the server user, with TLS files and passwords inside."""

    def __init__(self, prefix: str = "hapg-"):
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.root.chmod(0o755)
        self.tls: TlsFiles = make_tls(self.root)
        self.admin_password = os.urandom(12).hex()
        self.repl_password = os.urandom(12).hex()
        self.chown(self.root)

    def chown(self, path: Path) -> None:
        ids = _pg_uid()
        if ids is None:
            return
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            os.chown(p, *ids)

    def write(self, path: Path, text: str, mode: int = 0o600) -> Path:
        path.write_text(text)
        path.chmod(mode)
        self.chown(path)
        return path

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PgNode:
    name: str
    sandbox: Sandbox
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.sandbox.root / self.name

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(HOST, self.port)

    @property
    def log_file(self) -> Path:
        return self.sandbox.root / f"{self.name}.log"

    # -- lifecycle ------------------------------------------------------------------------
    def initdb(self, settings: dict[str, object] | None = None) -> None:
        pwfile = self.sandbox.write(self.sandbox.root / f"{self.name}.pw", self.sandbox.admin_password)
        run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ADMIN_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        self.sandbox.write(self.data / "pg_hba.conf", _HBA)
        self.configure({**_BASE_CONF, **tls_settings(self.sandbox), **self._identity(), **(settings or {})})

    def _identity(self) -> dict[str, object]:
        return {"port": self.port, "cluster_name": self.name}

    def configure(self, settings: dict[str, object]) -> None:
        """Append settings to postgresql.conf (later lines win). Takes effect on (re)start/reload."""
        lines = [f"{k} = {_quote(v)}" for k, v in settings.items()]
        with (self.data / "postgresql.conf").open("a") as fh:
            fh.write("\n# hapg\n" + "\n".join(lines) + "\n")

    def clone_from(self, primary: PgNode, settings: dict[str, object] | None = None) -> None:
        """pg_basebackup from `primary`, then configure this node as its streaming standby."""
        conninfo = primary.conninfo(REPL_USER, self.sandbox.repl_password)
        run(
            [
                str(PG_BIN / "pg_basebackup"),
                "-D",
                str(self.data),
                "-d",
                conninfo,
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
            timeout=120,
        )
        self.configure({**self._identity(), **(settings or {})})
        self.follow(primary)

    def follow(self, primary: PgNode) -> None:
        """Point this (stopped or running) standby at `primary`."""
        conninfo = primary.conninfo(REPL_USER, self.sandbox.repl_password, application_name=self.name)
        self.sandbox.write(self.data / "standby.signal", "")
        self.sandbox.write(self.data / "postgresql.auto.conf", f"primary_conninfo = {_quote(conninfo)}\n")

    def conninfo(self, user: str, password: str, **extra: str) -> str:
        parts = {
            "host": HOST,
            "port": self.port,
            "user": user,
            "password": password,
            "sslmode": "verify-full",
            "sslrootcert": str(self.sandbox.tls.ca_cert),
            **extra,
        }
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def start(self, timeout: float = 60) -> None:
        run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 5,
        )

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def fence(self, timeout: float = 10.0) -> None:
        """Stop fast, watching postmaster.pid every 2 ms (pg_ctl -w polls every 100 ms)."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown: abort transactions, disconnect clients
        deadline = time.monotonic() + timeout
        while (self.data / "postmaster.pid").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not stop within {timeout}s")
            time.sleep(0.002)

    def children(self) -> list[int]:
        pid = self.pid()
        return [] if pid is None else child_pids(pid)

    def crash(self, also: Iterable[int] = ()) -> None:
        """Simulate a host crash: freeze, then SIGKILL the postmaster and every child (and the processes
        `also`, e.g. the HA daemon of that host, frozen first with them)."""
        pid = self.pid()
        victims = [*also, *([] if pid is None else [pid, *child_pids(pid)])]
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for p in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
        # PID 1 may reap late; the pid file tells whether the server is down for PostgreSQL
        (self.data / "postmaster.pid").unlink(missing_ok=True)

    def freeze(self) -> None:
        for p in [self.pid(), *self.children()]:
            if p:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGSTOP)

    def thaw(self) -> None:
        for p in [self.pid(), *self.children()]:
            if p:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGCONT)

    def connect(self, dbname: str = "postgres", timeout: int = 5):
        """An autocommit admin connection over TLS (harness control, not product code)."""
        import psycopg2

        conn = psycopg2.connect(
            self.conninfo(ADMIN_USER, self.sandbox.admin_password, dbname=dbname, connect_timeout=str(timeout))
        )
        conn.autocommit = True
        return conn

    def sql(self, statement: str, params: object = None, dbname: str = "postgres") -> list[tuple]:
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def rewind_from(self, source: PgNode) -> None:
        """pg_rewind this stopped ex-primary onto `source`'s timeline (needs wal_log_hints)."""
        conninfo = source.conninfo(ADMIN_USER, self.sandbox.admin_password, dbname="postgres")
        run([str(PG_BIN / "pg_rewind"), "-D", str(self.data), f"--source-server={conninfo}", "--no-sync"], timeout=120)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the admin over TLS (setup and assertions, not product code)."""
        conn = self.conninfo(ADMIN_USER, self.sandbox.admin_password, dbname=dbname)
        return run([str(PG_BIN / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conn, "-c", sql]).strip()


def teardown(nodes: Iterable[PgNode], sandbox: Sandbox) -> None:
    """Best effort: stop every node at once (thawed first: a fault may have frozen it; crashed when the
    stop fails), then remove the sandbox."""
    for node in nodes:
        try:
            node.thaw()
            node.stop("immediate")
        except Exception:  # noqa: BLE001 - best effort teardown
            node.crash()
    sandbox.cleanup()


def _quote(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


_HBA = """# hapg local: TLS only, SCRAM only, loopback only (mirrors rds.force_ssl=1)
local   all             all                                     scram-sha-256
hostssl all             all             127.0.0.1/32            scram-sha-256
hostssl replication     all             127.0.0.1/32            scram-sha-256
hostnossl all           all             0.0.0.0/0               reject
"""

_BASE_CONF: dict[str, object] = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "ssl": True,
    "max_connections": 100,
    "shared_buffers": "32MB",
    "wal_level": "replica",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "256MB",
    "hot_standby": True,
    "hot_standby_feedback": True,
    "wal_receiver_status_interval": "1s",
    "wal_retrieve_retry_interval": "50ms",  # a promotion right after losing the primary stalls 5 s otherwise
    "wal_log_hints": True,  # lets pg_rewind bring a fenced primary back as a standby
    "log_line_prefix": "%m [%p] %a ",
    "log_connections": False,
}


def tls_settings(sandbox: Sandbox) -> dict[str, object]:
    return {
        "ssl_cert_file": str(sandbox.tls.server_cert),
        "ssl_key_file": str(sandbox.tls.server_key),
        "ssl_ca_file": str(sandbox.tls.ca_cert),
    }
