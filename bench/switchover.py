"""Our switchover, N times, each on a fresh pair with 20 writers -> build/bench/switchover.json.

The same code path as `make rehearse` (the committed ASL in moto's interpreter, real handlers,
real PostgreSQL pair with synchronous replication); this only repeats it and summarizes. The live
timeline is off: its history polling would share the GIL with the interpreter being measured.

Figures per run:
- write_unavailable_ms: the longest gap between acknowledged commits around the execution.
- promote_primitive_ms: the stand-in for Aurora's own failover (fence + catch-up + promote).
- window_overhead_ms: write_unavailable_ms - promote_primitive_ms, what the orchestration adds to the
  outage (drain, task transitions, the restore of the connection block).
- orchestration_overhead_ms: execution - primitive (as `make rehearse` prints it);
  replica_wait_ms, the wait for the old writer to rejoin as a reader (CheckReplicas, AreReplicasBack,
  WaitForReplicas: Aurora's own work, after writes are back); overhead_excl_replica_wait_ms, the
  overhead without it.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from hapg.names import State

from bench.results import summarize

OUT = Path("build/bench/switchover.json")
REPLICA_WAIT_STATES = (State.REPLICAS, State.REPLICAS_BACK, State.WAIT_REPLICAS)
SUMMARIZED = (  # median, min and max over the runs
    "write_unavailable_ms",
    "promote_primitive_ms",
    "window_overhead_ms",
    "orchestration_overhead_ms",
    "replica_wait_ms",
    "overhead_excl_replica_wait_ms",
    "execution_ms",
)


def figures(report) -> dict:
    """The per-run figures of one ScenarioReport (local/report.py)."""
    replica_wait = sum((s["end"] - s["start"]) * 1000 for s in report.states if s["name"] in REPLICA_WAIT_STATES)
    return {
        "write_unavailable_ms": report.write_unavailable_ms,
        "promote_primitive_ms": report.promote_primitive_ms,
        "window_overhead_ms": round(report.write_unavailable_ms - report.promote_primitive_ms, 1),
        "orchestration_overhead_ms": report.orchestration_overhead_ms,
        "replica_wait_ms": round(replica_wait, 1),
        "overhead_excl_replica_wait_ms": round(report.orchestration_overhead_ms - replica_wait, 1),
        "execution_ms": report.execution_ms,
        "acked_commits": report.acked_commits,
        "lost_commits": report.lost_commits,
        "promotes": report.promotes,
        "passed": report.passed,
        "outcome": report.outcome,
    }


def run(runs: int = 5, scenario: str = "planned", threads: int = 20, out: Path = OUT) -> dict:
    """`runs` measured runs. A run in which the workflow did not switch over (the planner refuses
    when, right after the pair started, the standby has not reported its lag yet) measures nothing:
    it is recorded under `not_measured` and another run is made, at most `runs` more in all."""
    from local.rehearse import rehearse

    reports, skipped = [], []
    for _ in range(2 * runs):
        if len(reports) == runs:
            break
        report = rehearse(scenario, threads, live=False)
        (reports if report.promotes else skipped).append(report)
    if not reports:
        raise RuntimeError(f"no {scenario} run switched over in {2 * runs} attempts: {skipped[-1].outcome}")
    per_run = [figures(r) for r in reports]
    result = {
        "scenario": scenario,
        "runs": len(reports),
        "not_measured": [{"outcome": r.outcome, "checks": r.checks} for r in skipped],
        "writers": threads,
        **{k: summarize([r[k] for r in per_run]) for k in SUMMARIZED},
        "acked_commits": sum(r["acked_commits"] for r in per_run),
        "lost_commits": sum(r["lost_commits"] for r in per_run),
        "max_promotes": max(r["promotes"] for r in per_run),
        "all_passed": all(r["passed"] for r in per_run) and len(reports) == runs,
        "per_run": per_run,
        "per_state_ms": per_state(reports),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def per_state(reports) -> dict[str, float]:
    """Median duration of each state across runs (first visit), in execution order."""
    spans: dict[str, list[float]] = {}
    for r in reports:
        seen = set()
        for s in r.states:
            if s["name"] in seen or s["end"] is None:
                continue
            seen.add(s["name"])
            spans.setdefault(s["name"], []).append((s["end"] - s["start"]) * 1000)
    return {name: round(statistics.median(v), 1) for name, v in spans.items()}
