"""The baseline: Patroni 4.x + etcd managing two PostgreSQL 15 nodes on loopback -> build/bench/patroni.json.

Same binaries ($PG_BIN), same server settings as local/pgnode.py (TLS only, SCRAM, the same
postgresql.conf values), same 20-writer workload (local/workload.py, multi-host read-write endpoint),
synchronous replication (`synchronous_mode: true` + `synchronous_commit: remote_apply`, like our
pair). Patroni's `ttl`, `loop_wait` and `retry_timeout` are left at their defaults and read back
from its REST API for the report.

- planned: `patronictl switchover --leader A --candidate B --force`, back and forth on one cluster;
  the write-unavailability window is the longest gap between acknowledged commits around it.
- unplanned: a host crash of the leader (SIGSTOP then SIGKILL of its Patroni daemon, postmaster and
  every backend); the window runs from the last ack before the crash to the first write the new
  leader acknowledges. The crashed node's Patroni is then restarted (it rejoins, pg_rewind) before
  the next run.

Installs what it needs itself, never into the product: etcd from Debian's `etcd-server` and venv
support for /usr/bin/python3 (`python3-venv`) with apt through scripts/bootstrap.sh (sudo unless root),
and Patroni (pinned) into its own venv built from /usr/bin/python3 ($HAPG_PATRONI_VENV, default
/opt/hapg-bench/patroni-venv: the postgres OS user cannot run a Python that lives under /root).
Everything listens on 127.0.0.1; every process started here is stopped by its PID (try/finally).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hapg.names import DB_NAME, Rotation

from bench.results import summarize

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"
VENV = Path(os.environ.get("HAPG_PATRONI_VENV", "/opt/hapg-bench/patroni-venv"))
SYSTEM_PYTHON = "/usr/bin/python3"
PATRONI_VERSION = "4.1.5"  # the version behind the README's figures
PATRONI_PACKAGES = [f"patroni[etcd3]=={PATRONI_VERSION}", "psycopg2-binary"]
SCOPE = "hapg-bench"
NAMES = ("pg-a", "pg-b")
APP_USER = Rotation.APP_USER
PATRONI_DEFAULTS = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}  # Patroni's documented defaults
READY_TIMEOUT_S = 180.0
SWITCH_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
OUT = Path("build/bench/patroni.json")


def say(text: str) -> None:
    print(text, file=sys.__stdout__, flush=True)


# ---- installation (the bench's own, never the product's) -------------------------------------
def ensure_installed() -> dict[str, str]:
    """etcd and python3-venv from apt (scripts/bootstrap.sh: only what is missing, sudo unless root), then
    Patroni PATRONI_VERSION in its own venv unless it is there; returns their versions."""
    subprocess.run([str(BOOTSTRAP), "bench"], check=True)  # its errors go to our stderr
    if _patroni_version() != PATRONI_VERSION:
        say(f"   installing Patroni {PATRONI_VERSION} into {VENV} (first use)")
        VENV.parent.mkdir(parents=True, exist_ok=True)
        _run([SYSTEM_PYTHON, "-m", "venv", str(VENV)])
        _run([str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *PATRONI_PACKAGES])
    for path in (VENV.parent, VENV):  # the postgres OS user runs Patroni from here
        path.chmod(path.stat().st_mode | 0o755)
    etcd = _run(["etcd", "--version"])
    return {"patroni": _patroni_version(), "etcd": etcd.split("\n", 1)[0].split()[-1]}


def _patroni_version() -> str | None:
    patroni = VENV / "bin" / "patroni"
    return _run([str(patroni), "--version"]).split()[-1] if patroni.exists() else None


def _run(argv: list[str]) -> str:
    """Run an installer step; its stdout, or a RuntimeError carrying the end of its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()[-2000:]
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output}")
    return proc.stdout


# ---- the cluster ---------------------------------------------------------------------------------
@dataclass
class Member:
    name: str
    node: object  # local.pgnode.PgNode on the data dir Patroni manages (connect, pid, crash)
    rest_port: int
    config: Path
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


@dataclass
class PatroniCluster:
    """etcd + two Patroni nodes in a Sandbox; a context manager that stops all it started."""

    sandbox: object = None
    members: dict[str, Member] = field(default_factory=dict)
    etcd: subprocess.Popen | None = None
    etcd_port: int = 0
    app_password: str = field(default_factory=lambda: os.urandom(12).hex())
    started: list[subprocess.Popen] = field(default_factory=list)

    def __enter__(self) -> PatroniCluster:
        from local.pgnode import PgNode, Sandbox, free_port

        self.sandbox = Sandbox(prefix="hapg-patroni-")
        try:
            self._start_etcd(free_port(), free_port())
            for name in NAMES:
                node = PgNode(name, self.sandbox)
                member = Member(name, node, free_port(), self.sandbox.root / f"{name}.yml")
                self.sandbox.write(member.config, json.dumps(self._config(member)), mode=0o644)
                self.members[name] = member
            self.start(NAMES[0])
            self.wait_leader(NAMES[0])
            self._bootstrap_app()
            self.start(NAMES[1])
            self.wait_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for member in self.members.values():
                self._stop_member(member)
        finally:
            if self.etcd is not None:
                _stop_pid(self.etcd)
            for proc in self.started:  # anything left (a crashed node's restarted daemon, ...)
                _stop_pid(proc)
            if self.sandbox is not None:
                self.sandbox.cleanup()

    # -- processes --------------------------------------------------------------------------------
    def _start_etcd(self, client: int, peer: int) -> None:
        data = self.sandbox.root / "etcd"
        url_c, url_p = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        argv = [
            "etcd",
            "--name=bench",
            f"--data-dir={data}",
            f"--listen-client-urls={url_c}",
            f"--advertise-client-urls={url_c}",
            f"--listen-peer-urls={url_p}",
            f"--initial-advertise-peer-urls={url_p}",
            f"--initial-cluster=bench={url_p}",
            "--initial-cluster-state=new",
            "--log-level=warn",
            "--logger=zap",
        ]
        log = (self.sandbox.root / "etcd.log").open("w")
        self.etcd = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.etcd_port = client
        _until(lambda: _get_json(f"{url_c}/health").get("health") == "true", 30, "etcd did not become healthy")

    def start(self, name: str) -> None:
        """Start (or restart) the Patroni daemon of `name` as the postgres OS user."""
        member = self.members[name]
        member.log = self.sandbox.root / f"{name}.patroni.log"
        log = member.log.open("a")
        kwargs = {}
        if os.geteuid() == 0:
            kwargs = {"user": "postgres", "group": "postgres", "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.sandbox.root), "LANG": "C.UTF-8"}
        member.proc = subprocess.Popen(
            [str(VENV / "bin" / "patroni"), str(member.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.sandbox.root,
            env=env,
            start_new_session=True,
            **kwargs,
        )
        self.started.append(member.proc)

    def _stop_member(self, member: Member) -> None:
        """SIGTERM to Patroni (it stops PostgreSQL), then make sure the postmaster is gone too."""
        if member.proc is not None:
            _stop_pid(member.proc)
        node = member.node
        node.thaw()
        pid = node.pid()
        if pid is not None and node.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
            _until(lambda: not node.is_running(), 10, None)
            if node.is_running():
                node.crash()

    def crash(self, name: str) -> None:
        """A host crash: freeze then kill Patroni, the postmaster and every backend, by PID."""
        member = self.members[name]
        member.node.crash(also=[member.proc.pid] if member.proc else [])
        if member.proc is not None:
            member.proc.wait(10)

    # -- state --------------------------------------------------------------------------------------
    def cluster(self) -> dict:
        for member in self.members.values():
            with contextlib.suppress(OSError, ValueError):
                return _get_json(f"{member.rest}/cluster")
        return {}

    def leader(self) -> str | None:
        for m in self.cluster().get("members", []):
            if m.get("role") == "leader" and m.get("state") == "running":
                return m["name"]
        return None

    def healthy(self) -> bool:
        """A running leader and a streaming synchronous standby."""
        roles = {(m.get("role"), m.get("state")) for m in self.cluster().get("members", [])}
        return ("leader", "running") in roles and ("sync_standby", "streaming") in roles

    def wait_leader(self, name: str, timeout: float = READY_TIMEOUT_S) -> None:
        _until(lambda: self.leader() == name, timeout, f"{name} did not become the Patroni leader")

    def wait_healthy(self, timeout: float = READY_TIMEOUT_S) -> None:
        _until(self.healthy, timeout, "Patroni cluster not healthy (leader + streaming sync standby)")

    def dcs_config(self) -> dict:
        member = next(iter(self.members.values()))
        with contextlib.suppress(OSError, ValueError):
            return _get_json(f"{member.rest}/config")
        return {}

    def patronictl(self, *args: str) -> subprocess.CompletedProcess:
        config = next(iter(self.members.values())).config
        return subprocess.run(
            [str(VENV / "bin" / "patronictl"), "-c", str(config), *args],
            capture_output=True,
            text=True,
            timeout=SWITCH_TIMEOUT_S,
            check=False,
        )

    def workload_config(self, threads: int):
        from local.workload import WorkloadConfig

        nodes = [m.node for m in self.members.values()]
        return WorkloadConfig(
            ",".join(n.endpoint.host for n in nodes),
            ",".join(str(n.port) for n in nodes),
            APP_USER,
            self.app_password,
            str(self.sandbox.tls.ca_cert),
            DB_NAME,
            threads,
        )

    def node(self, name: str):
        return self.members[name].node

    # -- setup ----------------------------------------------------------------------------------------
    def _bootstrap_app(self) -> None:
        from local.workload import bootstrap

        leader = self.members[NAMES[0]].node
        leader.sql(f"CREATE DATABASE {DB_NAME}")
        bootstrap(leader, APP_USER, self.app_password, DB_NAME)

    def _bin_dir(self, pg_bin: Path) -> Path:
        """PG_BIN itself, or with HAPG_DATA_PLANE_NICE a copy of it whose `postgres` starts at that nice
        level (Patroni execs `postgres` itself; our pair gets the same through local/pgnode.py)."""
        from local.pgnode import DATA_PLANE_NICE

        nice = os.environ.get(DATA_PLANE_NICE)
        if not nice:
            return pg_bin
        bin_dir = self.sandbox.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        for tool in pg_bin.iterdir():
            if tool.name != "postgres" and not (bin_dir / tool.name).is_symlink():
                (bin_dir / tool.name).symlink_to(tool)  # never chown these: it would follow the link
        wrapper = f'#!/bin/sh\nexec nice -n {int(nice)} {pg_bin / "postgres"} "$@"\n'
        self.sandbox.write(bin_dir / "postgres", wrapper, mode=0o755)
        return bin_dir

    def _config(self, member: Member) -> dict:
        from local.pgnode import _BASE_CONF, ADMIN_USER, PG_BIN, REPL_USER, tls_settings

        sandbox, node = self.sandbox, member.node
        tls = {"sslmode": "verify-full", "sslrootcert": str(sandbox.tls.ca_cert)}
        # the same server settings as our pair; Patroni owns listen/port and synchronous_standby_names
        managed = {"listen_addresses", "port", "cluster_name", "synchronous_standby_names"}
        parameters = {k: v for k, v in _BASE_CONF.items() if k not in managed}
        parameters = {**parameters, **tls_settings(sandbox), "synchronous_commit": "remote_apply"}
        parameters = {k: ("on" if v is True else "off" if v is False else v) for k, v in parameters.items()}
        return {
            "scope": SCOPE,
            "name": member.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{member.rest_port}", "connect_address": f"127.0.0.1:{member.rest_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                # ttl, loop_wait, retry_timeout: Patroni's defaults (not set)
                "dcs": {
                    "synchronous_mode": True,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": parameters},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, {"auth": "scram-sha-256"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.port}",
                "connect_address": f"127.0.0.1:{node.port}",
                "data_dir": str(node.data),
                "bin_dir": str(self._bin_dir(PG_BIN)),
                "pgpass": str(sandbox.root / f"{member.name}.pgpass"),
                "basebackup": [{"checkpoint": "fast"}],  # as our pair's pg_basebackup -c fast
                "authentication": {
                    "superuser": {"username": ADMIN_USER, "password": sandbox.admin_password, **tls},
                    "replication": {"username": REPL_USER, "password": sandbox.repl_password, **tls},
                    "rewind": {"username": ADMIN_USER, "password": sandbox.admin_password, **tls},
                },
                "pg_hba": [
                    "hostssl all all 127.0.0.1/32 scram-sha-256",
                    "hostssl replication all 127.0.0.1/32 scram-sha-256",
                    "hostnossl all all 0.0.0.0/0 reject",
                ],
                "parameters": {"unix_socket_directories": ""},
            },
        }


# ---- measurements ---------------------------------------------------------------------------------
@dataclass
class Run:
    window_ms: float
    acked: int
    lost: int
    new_leader: str
    seconds: float
    errors: int
    note: str = ""

    def __str__(self) -> str:
        return f"writes unavailable {self.window_ms:.0f} ms, acked {self.acked}, lost {self.lost}"


def planned_run(cluster: PatroniCluster, threads: int) -> Run:
    from local.workload import Workload, unavailability

    old = cluster.leader()
    new = next(n for n in NAMES if n != old)
    wl = Workload(cluster.workload_config(threads)).start()
    started = time.time()
    try:
        out = cluster.patronictl("switchover", "--leader", old, "--candidate", new, "--force")
        if out.returncode != 0:
            raise RuntimeError(f"patronictl switchover failed: {out.stdout[-500:]} {out.stderr[-500:]}")
        cluster.wait_leader(new, SWITCH_TIMEOUT_S)
        _writes_flow(wl, new)
        ended = time.time()
    finally:
        wl.stop()
    return _finish(cluster, wl, unavailability(wl.acks, started, ended + 1.0), new, ended - started)


def unplanned_run(cluster: PatroniCluster, threads: int) -> Run:
    from local.workload import Workload, unavailability

    old = cluster.leader()
    new = next(n for n in NAMES if n != old)
    wl = Workload(cluster.workload_config(threads)).start()
    try:
        crashed = time.time()
        cluster.crash(old)
        cluster.wait_leader(new, PATRONI_DEFAULTS["ttl"] * 3 + SWITCH_TIMEOUT_S)
        _writes_flow(wl, new)
        ended = time.time()
    finally:
        wl.stop()
    run = _finish(cluster, wl, unavailability(wl.acks, crashed, ended + 1.0), new, ended - crashed)
    cluster.start(old)  # the crashed host comes back: Patroni rejoins it (pg_rewind) as a standby
    return run


def _writes_flow(wl, leader: str) -> None:
    """Until a commit is acknowledged after the leader change was seen, then 1 s more of load."""
    if not wl.wait_ack_after(time.time(), SWITCH_TIMEOUT_S):
        raise TimeoutError(f"no commit acknowledged on {leader} within {SWITCH_TIMEOUT_S:.0f} s")
    time.sleep(1.0)


def _finish(cluster: PatroniCluster, wl, gap, new: str, seconds: float) -> Run:
    from local.workload import lost_commits

    lost = lost_commits(wl, cluster.node(new))
    if lost is None:
        raise RuntimeError(f"{new} is not running: no writer to check the acknowledged commits against")
    return Run(gap[0], len(wl.acks), len(lost), new, round(seconds, 2), len(wl.errors))


def _repeat(times: int, what: str, one: Callable[[], Run], cluster: PatroniCluster) -> list[Run]:
    """`times` runs, each from a healthy cluster."""
    rows = []
    for i in range(times):
        cluster.wait_healthy()
        rows.append(one())
        say(f"   {what} {i + 1}/{times}: {rows[-1]}")
    return rows


def measure(runs: int = 5, unplanned_runs: int = 3, threads: int = 20, out: Path = OUT) -> dict:
    versions = ensure_installed()
    result: dict = {"versions": versions, "writers": threads}
    say(f"\n== Patroni {versions['patroni']} + etcd {versions['etcd']}: two PostgreSQL 15 nodes on loopback")
    with PatroniCluster() as cluster:
        config = cluster.dcs_config()
        result["settings"] = {
            **{k: config.get(k, v) for k, v in PATRONI_DEFAULTS.items()},
            "synchronous_mode": config.get("synchronous_mode"),
            "synchronous_commit": config.get("postgresql", {}).get("parameters", {}).get("synchronous_commit"),
        }
        planned = _repeat(runs, "switchover", lambda: planned_run(cluster, threads), cluster)
        unplanned = _repeat(unplanned_runs, "crash", lambda: unplanned_run(cluster, threads), cluster)
        cluster.wait_healthy()
    for label, rows in (("planned", planned), ("unplanned", unplanned)):
        if rows:
            result[label] = {
                "runs": len(rows),
                "write_unavailable_ms": summarize([r.window_ms for r in rows]),
                "acked_commits": sum(r.acked for r in rows),
                "lost_commits": sum(r.lost for r in rows),
                "per_run": [r.__dict__ for r in rows],
            }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---- helpers ------------------------------------------------------------------------------------------
def _get_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http://127.0.0.1 only
        return json.loads(resp.read() or b"{}")


def _until(predicate, timeout: float, error: str | None, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(every)
    if error:
        raise TimeoutError(f"{error} within {timeout:.0f} s")
    return False


def _stop_pid(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGCONT (it may be frozen), SIGTERM, then SIGKILL after `timeout`: this process, by its PID."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGCONT, signal.SIGTERM):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
