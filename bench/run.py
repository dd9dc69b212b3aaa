"""`make bench`: our switchover side by side with Patroni, in one go -> build/bench/results.{json,md}.

1. foundation: cold imports, layer size, sam build, health check (bench/foundation.py).
2. planned switchover, RUNS times each, ours (bench/switchover.py) and Patroni (bench/patroni.py),
   with every process at the default CPU priority ("shared"), then again with the data plane
   (PostgreSQL and the load generator) at nice DATA_PLANE_NICE for both systems.
3. unplanned (kill -9 of the primary), UNPLANNED_RUNS times each, shared CPU.
Patroni and etcd are installed by bench/patroni.py itself (its own venv, apt), never by the product.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from local import env

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
DATA_PLANE_NICE = 19
SHARED = "shared"


@contextlib.contextmanager
def data_plane_nice(nice: int | None):
    from local.pgnode import DATA_PLANE_NICE as VAR

    saved = os.environ.pop(VAR, None)
    if nice is not None:
        os.environ[VAR] = str(nice)
    try:
        yield
    finally:
        os.environ.pop(VAR, None)
        if saved is not None:
            os.environ[VAR] = saved


def _row(system: str, case: str, cpu: str, *, runs: int, window: dict, acked: int, lost: int) -> dict:
    return {"system": system, "case": case, "cpu": cpu, "runs": runs, "window": window, "acked": acked, "lost": lost}


def _ours(case: str, cpu: str, runs: int, threads: int, logs) -> tuple[dict, dict]:
    from bench import switchover

    print(f"\n== ours, {case}, {cpu} CPU: {runs} run(s)", flush=True)
    with contextlib.redirect_stdout(logs):
        res = switchover.run(runs, case, threads, out=OUT / f"ours-{case}-{cpu.replace(' ', '-')}.json")
    print(f"   writes unavailable {res['write_unavailable_ms']}, lost {res['lost_commits']}", flush=True)
    row = _row(
        "ours",
        case,
        cpu,
        runs=res["runs"],
        window=res["write_unavailable_ms"],
        acked=res["acked_commits"],
        lost=res["lost_commits"],
    )
    return row, res


def _patroni(cpu: str, runs: int, unplanned: int, threads: int) -> tuple[list[dict], dict]:
    from bench import patroni

    res = patroni.measure(runs, unplanned, threads, out=OUT / f"patroni-{cpu.replace(' ', '-')}.json")
    rows = [
        _row(
            "patroni",
            case,
            cpu,
            runs=res[case]["runs"],
            window=res[case]["write_unavailable_ms"],
            acked=res[case]["acked_commits"],
            lost=res[case]["lost_commits"],
        )
        for case in ("planned", "unplanned")
        if case in res
    ]
    return rows, res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="planned switchovers per system and CPU setting")
    parser.add_argument("--unplanned-runs", type=int, default=3, help="crashes per system")
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--nice", type=int, default=DATA_PLANE_NICE, help="the data plane's nice level")
    parser.add_argument("--skip-foundation", action="store_true", help="reuse build/bench/foundation.json")
    args = parser.parse_args(argv)
    env.prepare("bench", "WARNING", ignore_warnings="No application metrics")
    from bench import foundation, results

    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load = os.getloadavg()[0]
    found = (
        json.loads((OUT / "foundation.json").read_text())
        if args.skip_foundation and (OUT / "foundation.json").exists()
        else foundation.main()
    )
    rows, passed = [], True
    niced = f"data plane nice {args.nice}"
    with open(OUT / "functions.log", "w") as logs:
        for cpu, nice in ((SHARED, None), (niced, args.nice)):
            with data_plane_nice(nice):
                row, detail = _ours("planned", cpu, args.runs, args.threads, logs)
                rows.append(row)
                passed &= detail["all_passed"]
                if cpu == SHARED:
                    shared_detail = detail
                else:
                    niced_detail = detail
                unplanned = args.unplanned_runs if cpu == SHARED else 0
                if unplanned:
                    row, detail = _ours("unplanned", cpu, unplanned, args.threads, logs)
                    rows.append(row)
                    passed &= detail["all_passed"]
                p_rows, p_res = _patroni(cpu, args.runs, unplanned, args.threads)
                rows += p_rows
    order = {("planned", SHARED): 0, ("planned", niced): 1, ("unplanned", SHARED): 2}
    rows.sort(key=lambda r: (order[(r["case"], r["cpu"])], r["system"] != "ours"))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} "
            f"(load average {load:.1f} when the bench started)"
        ),
        "runs": args.runs,
        "writers": args.threads,
        "data_plane_nice": args.nice,
        "versions": p_res["versions"],
        "patroni_settings": p_res["settings"],
        "rows": rows,
        "ratios": {
            f"{case} ({cpu})": results.ratio(*_mates(rows, case, cpu)) for case, cpu in order if _mates(rows, case, cpu)
        },
        "unplanned_note": (
            "Unplanned: ours receives the RDS failover event the moment the primary dies and takes over; "
            "on AWS, Aurora detects the failure and fails over by itself first (not measured here: AWS documents "
            "that its failover typically restores service in under 60 s, often under 30 s). "
            "Patroni notices through its leader key expiring (ttl)."
        ),
        "ours_detail": {**shared_detail, "cpu": SHARED},
        "ours_detail_niced": {**niced_detail, "cpu": niced},
        "foundation": found,
        "all_passed": bool(passed),
        "bench_seconds": round(time.time() - started),
    }
    (OUT / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "results.md").write_text(results.render(result))
    print((OUT / "results.md").read_text())
    return 0 if passed else 1


def _mates(rows: list[dict], case: str, cpu: str) -> tuple[dict, dict] | None:
    ours = next((r for r in rows if r["system"] == "ours" and r["case"] == case and r["cpu"] == cpu), None)
    theirs = next((r for r in rows if r["system"] == "patroni" and r["case"] == case and r["cpu"] == cpu), None)
    return (ours, theirs) if ours and theirs else None


if __name__ == "__main__":
    sys.exit(main())
