"""Our planned switchover, N times, each on a fresh pair with 20 writers -> build/bench/switchover.json.

The same code path as `make rehearse` (the committed ASL in moto's interpreter, real handlers,
real PostgreSQL pair with synchronous replication); this only repeats it and summarizes.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

OUT = Path("build/bench/switchover.json")


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def run(runs: int = 5, scenario: str = "planned", threads: int = 20) -> dict:
    from local.rehearse import rehearse

    reports = [rehearse(scenario, threads) for _ in range(runs)]
    result = {
        "scenario": scenario,
        "runs": runs,
        "writers": threads,
        "write_unavailable_ms": summarize([r.write_unavailable_ms for r in reports]),
        "orchestration_overhead_ms": summarize([r.orchestration_overhead_ms for r in reports]),
        "promote_primitive_ms": summarize([r.promote_primitive_ms for r in reports]),
        "execution_ms": summarize([r.execution_ms for r in reports]),
        "acked_commits": sum(r.acked_commits for r in reports),
        "lost_commits": sum(r.lost_commits for r in reports),
        "all_passed": all(r.passed for r in reports),
        "per_run": [
            {
                k: getattr(r, k)
                for k in (
                    "write_unavailable_ms",
                    "orchestration_overhead_ms",
                    "promote_primitive_ms",
                    "execution_ms",
                    "acked_commits",
                    "lost_commits",
                )
            }
            for r in reports
        ],
        "per_state_ms": _per_state(reports),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _per_state(reports) -> dict[str, float]:
    """Median duration of each state across runs (first visit)."""
    spans: dict[str, list[float]] = {}
    for r in reports:
        seen = set()
        for s in r.states:
            if s["name"] in seen or s["end"] is None:
                continue
            seen.add(s["name"])
            spans.setdefault(s["name"], []).append((s["end"] - s["start"]) * 1000)
    return {name: round(statistics.median(v), 1) for name, v in spans.items()}
