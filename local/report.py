"""report.json and a PNG: commits per second over time, the outage window, the state transitions."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from local.executor import ExecutionResult
from local.workload import Ack, unavailability

BUCKET_S = 0.05


@dataclass
class ScenarioReport:
    scenario: str
    execution_status: str
    outcome: str | None
    states: list[dict[str, Any]]
    write_unavailable_ms: float
    orchestration_overhead_ms: float
    promote_primitive_ms: float
    execution_ms: float
    acked_commits: int
    lost_commits: int
    notifications: list[dict[str, Any]]
    promotes: int
    checks: dict[str, bool] = field(default_factory=dict)
    executions: list[dict[str, Any]] = field(default_factory=list)
    unavailable_from: float | None = None
    unavailable_to: float | None = None

    @property
    def passed(self) -> bool:
        return self.lost_commits == 0 and all(self.checks.values())


def states_of(result: ExecutionResult) -> list[dict[str, Any]]:
    return [{"name": s.name, "type": s.type, "start": s.entered_at, "end": s.exited_at} for s in result.states]


def build(
    *,
    scenario: str,
    main: ExecutionResult,
    others: list[ExecutionResult],
    acks: list[Ack],
    lost: int,
    primitive_ms: float,
    notifications: list[dict[str, Any]],
    promotes: int,
    checks: dict[str, bool],
) -> ScenarioReport:
    everything = [main, *others]
    start = min(r.started_at for r in everything)
    end = max(r.stopped_at or r.started_at for r in everything)
    gap_ms, gap_from, gap_to = unavailability(acks, start, end + 1.0)
    execution_ms = round(((main.stopped_at or main.started_at) - main.started_at) * 1000, 1)
    return ScenarioReport(
        scenario=scenario,
        execution_status=main.status,
        outcome=main.outcome,
        states=states_of(main),
        write_unavailable_ms=gap_ms,
        orchestration_overhead_ms=round(execution_ms - primitive_ms, 1),
        promote_primitive_ms=round(primitive_ms, 1),
        execution_ms=execution_ms,
        acked_commits=len(acks),
        lost_commits=lost,
        notifications=notifications,
        promotes=promotes,
        checks=checks,
        executions=[{"status": r.status, "output": r.output, "error": r.error} for r in everything],
        unavailable_from=gap_from if gap_ms else None,
        unavailable_to=gap_to if gap_ms else None,
    )


def write_json(reports: list[ScenarioReport], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [asdict(r) | {"passed": r.passed} for r in reports]
    path.write_text(json.dumps(body[0] if len(body) == 1 else body, indent=2, default=str) + "\n")


def plot(report: ScenarioReport, acks: list[Ack], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not acks or not report.states:
        return
    origin = report.states[0]["start"]
    first, last = acks[0].at, acks[-1].at
    n = int((last - first) / BUCKET_S) + 1
    counts = [0] * n
    for a in acks:
        counts[int((a.at - first) / BUCKET_S)] += 1
    xs = [first - origin + i * BUCKET_S for i in range(n)]
    rates = [c / BUCKET_S for c in counts]
    fig, ax = plt.subplots(figsize=(12, 5), dpi=110)
    ax.plot(xs, rates, lw=1, color="tab:blue", label=f"acknowledged commits/s ({BUCKET_S * 1000:.0f} ms buckets)")
    if report.unavailable_from is not None:
        ax.axvspan(
            report.unavailable_from - origin,
            report.unavailable_to - origin,
            color="tab:red",
            alpha=0.25,
            label=f"writes unavailable {report.write_unavailable_ms:.0f} ms",
        )
    top = max(rates) if rates else 1
    for i, s in enumerate(report.states):
        if s["type"] in ("Choice", "Pass", "Succeed"):
            continue
        x = s["start"] - origin
        ax.axvline(x, color="grey", lw=0.6, ls="--")
        ax.text(x, top * (0.98 - 0.07 * (i % 6)), s["name"], fontsize=7, rotation=0, ha="left", va="top")
    ax.set_xlabel("seconds since the execution started")
    ax.set_ylabel("commits per second")
    ax.set_title(
        f"{report.scenario}: {report.execution_status} ({report.outcome}); "
        f"{report.acked_commits} acked, {report.lost_commits} lost; overhead {report.orchestration_overhead_ms:.0f} ms"
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
