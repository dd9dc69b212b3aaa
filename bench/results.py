"""build/bench/results.json -> build/bench/results.md: the tables the README quotes. Pure: dict in, text out."""

from __future__ import annotations

import statistics
from typing import Any

from local.workload import RECONNECT_PAUSE_S

CASES = {"planned": "Planned switchover", "unplanned": "Unplanned: kill -9 of the primary"}
HOW = {
    ("ours", "planned"): "ours: drain → promote → restore (full ASL, real handlers)",
    ("patroni", "planned"): "Patroni: `patronictl switchover --force`",
    ("ours", "unplanned"): "ours: RDS event → takeover",
    ("patroni", "unplanned"): "Patroni: leader key expires (ttl)",
}


def summarize(values: list[float]) -> dict[str, float]:
    """Median, min and max of per-run figures, rounded to 0.1."""
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def ratio(ours: dict | None, patroni: dict | None) -> float | None:
    """ours / Patroni, median windows; None when either is missing or Patroni's is zero."""
    if not ours or not patroni or not patroni["window"]["median"]:
        return None
    return round(ours["window"]["median"] / patroni["window"]["median"], 2)


def render(results: dict[str, Any]) -> str:
    rows = results["rows"]
    settings = results.get("patroni_settings", {})
    versions = results.get("versions", {})
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['date']} on {results['machine']} by `make bench` (RUNS={results['runs']}).",
        "",
        f"- Load: {results['writers']} writer threads in one process, autocommit INSERTs through the multi-host "
        f"read-write endpoint (TLS verify-full, SCRAM), reconnecting {RECONNECT_PAUSE_S * 1000:.0f} ms after any "
        "error; synchronous "
        "replication (`synchronous_commit = remote_apply`) on both systems, the same PostgreSQL 15 binaries "
        "and server settings.",
        f"- Patroni {versions.get('patroni', '?')} + etcd {versions.get('etcd', '?')}: "
        f"ttl {settings.get('ttl')} s, loop_wait {settings.get('loop_wait')} s, "
        f"retry_timeout {settings.get('retry_timeout')} s (Patroni's defaults), "
        f"synchronous_mode: {str(settings.get('synchronous_mode')).lower()}.",
        "- CPU: **shared** = every process at the default priority, as on one 2-core box; "
        f"**data plane nice {results.get('data_plane_nice')}** = PostgreSQL and the load generator at that "
        "nice level for both systems, the control planes (ours: Step Functions + Lambdas + the Aurora "
        "stand-in; Patroni: its daemons, etcd, patronictl) at the default, as separate hosts keep them apart.",
        "- Window = the longest gap between two acknowledged commits around the switchover or crash. "
        "Lost = acknowledged commits missing on the new writer afterwards.",
        "",
        "| Case | CPU | System | Runs | Writes unavailable (median) | min | max | Ours / Patroni | Acked | Lost |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mate = next(
            (r for r in rows if r["case"] == row["case"] and r["cpu"] == row["cpu"] and r["system"] != row["system"]),
            None,
        )
        pair = (row, mate) if row["system"] == "ours" else (mate, row)
        r = ratio(*pair)
        cell = "baseline" if row["system"] == "patroni" else ("–" if r is None else f"{r:.2f}×")
        lines.append(
            f"| {CASES[row['case']]} | {row['cpu']} | {HOW[(row['system'], row['case'])]} | {row['runs']} "
            f"| **{_ms(row['window']['median'])}** | {_ms(row['window']['min'])} | {_ms(row['window']['max'])} "
            f"| {cell} | {row['acked']:,} | {row['lost']} |"
        )
    if note := results.get("unplanned_note"):
        lines += ["", note]
    detail = results.get("ours_detail") or {}
    if detail:
        lines += [
            "",
            f"## Our planned switchover in detail ({detail.get('cpu', 'shared')} CPU, {results['runs']} runs)",
            "",
            "| Figure | median | min | max |",
            "|---|---:|---:|---:|",
        ]
        for key, label in (
            ("write_unavailable_ms", "Writes unavailable"),
            ("promote_primitive_ms", "Promote primitive (the stand-in for Aurora's failover)"),
            ("window_overhead_ms", "Outage added by the orchestration (window − primitive)"),
            ("execution_ms", "Execution, start to end"),
            ("orchestration_overhead_ms", "Orchestration overhead (execution − primitive)"),
            ("replica_wait_ms", "… of which waiting for the old writer to rejoin as a reader"),
            ("overhead_excl_replica_wait_ms", "… without waiting for the old writer to rejoin as a reader"),
        ):
            s = detail.get(key)
            if s:
                lines.append(f"| {label} | {_ms(s['median'])} | {_ms(s['min'])} | {_ms(s['max'])} |")
        lines += ["", "| State | median |", "|---|---:|"]
        lines += [f"| {name} | {_ms(ms)} |" for name, ms in (detail.get("per_state_ms") or {}).items()]
    foundation = results.get("foundation") or {}
    if foundation:
        runs = foundation.get("cold_import_runs")
        median = f"median of {runs}" if runs else "median"
        lines += ["", "## Lambda package", "", f"| Handler | cold import ({median}) |", "|---|---:|"]
        lines += [f"| {fn} | {_ms(ms)} |" for fn, ms in (foundation.get("cold_import_ms") or {}).items()]
        lines += ["", f"Layer, unzipped: **{foundation.get('layer_unzipped_mb')} MB**."]
    return "\n".join(lines) + "\n"
