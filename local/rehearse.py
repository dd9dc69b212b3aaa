"""`make rehearse SCENARIO=...` and `make run-local INPUT=...`: the whole failover on this machine.

Real PostgreSQL 15 pair (synchronous replication), moto for AWS, the committed ASL in moto's
interpreter, our handlers in-process, 20 writer threads in a separate process. Writes
build/rehearsal/report.json and a PNG per scenario; exits non-zero if any acknowledged commit
was lost or a scenario's expectation failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

from local import env

OUT = Path("build/rehearsal")


def say(text: str) -> None:
    print(text, file=sys.__stdout__, flush=True)


def follow(arn: str, stop: threading.Event) -> None:
    """Print each state as the execution enters it (the live timeline)."""
    import boto3

    sfn, seen, origin = boto3.client("stepfunctions"), 0, None
    while not stop.is_set():
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        for e in events[seen:]:
            origin = origin or e["timestamp"].timestamp()
            entered = e.get("stateEnteredEventDetails")
            if entered:
                say(f"    {(e['timestamp'].timestamp() - origin) * 1000:7.0f} ms  > {entered['name']}")
        seen = len(events)
        stop.wait(0.05)


def rehearse(name: str, threads: int = 20, live: bool = True):
    """One scenario on a fresh stack; returns its ScenarioReport. `live=False` (benchmarks) skips the
    live timeline, whose history polling shares the GIL with the interpreter being measured."""
    from local import report
    from local.scenarios import SCENARIOS
    from local.stack import LocalStack, StackOptions, promotes
    from local.workload import Workload, lost_commits

    say(f"\n== {name}: starting a PostgreSQL 15 pair (sync replication), moto and the workflow")
    with LocalStack(StackOptions(fast=False)) as st:
        wl = Workload(st.workload_config(threads)).start()
        try:
            st.wait_lag_measured()  # a standby under load reports its lag after a feedback round or two
            say(f"   {threads} writers running; executing the scenario")
            stop = threading.Event()
            watcher = threading.Thread(target=_watch_new, args=(stop,), daemon=True)
            if live:
                watcher.start()
            try:
                main, others, checks = SCENARIOS[name](st)
            finally:
                stop.set()
                if live:
                    watcher.join(5)
        finally:
            wl.stop()
        st.cluster.wait_rejoined(60)
        lost = lost_commits(wl, st.writer())
        if lost is None:
            raise RuntimeError(f"{name}: no running writer to check the acknowledged commits against")
        prims = [p for p in st.cluster.primitives if p.promoted]
        primitive_ms = sum((p.promoted - p.started) * 1000 for p in prims)
        rep = report.build(
            scenario=name,
            main=main,
            others=others,
            acks=wl.acks,
            lost=len(lost),
            primitive_ms=primitive_ms,
            notifications=st.notifications(),
            promotes=len(promotes(st.executor)),
            checks=checks,
        )
        report.plot(rep, wl.acks, OUT / f"{name}.png")
        say(main.timeline())
        _summary(rep, len(wl.errors))
        return rep


def _watch_new(stop: threading.Event) -> None:
    """Follow every execution the scenario starts, as it starts them."""
    import boto3

    sfn, followed = boto3.client("stepfunctions"), set()
    while not stop.is_set():
        for sm in sfn.list_state_machines()["stateMachines"]:
            for ex in sfn.list_executions(stateMachineArn=sm["stateMachineArn"])["executions"]:
                if ex["executionArn"] not in followed:
                    followed.add(ex["executionArn"])
                    say(f"   execution {ex['name']}")
                    threading.Thread(target=follow, args=(ex["executionArn"], stop), daemon=True).start()
        stop.wait(0.05)


def _summary(rep, errors: int) -> None:
    say(f"   status {rep.execution_status}, outcome {rep.outcome}")
    say(
        f"   write unavailability {rep.write_unavailable_ms:.0f} ms; orchestration overhead "
        f"{rep.orchestration_overhead_ms:.0f} ms (execution {rep.execution_ms:.0f} ms - promote "
        f"{rep.promote_primitive_ms:.0f} ms)"
    )
    say(
        f"   commits acked {rep.acked_commits}, lost {rep.lost_commits}; "
        f"client errors {errors}; promotes {rep.promotes}"
    )
    for check, ok in rep.checks.items():
        say(f"   [{'ok' if ok else 'FAILED'}] {check}")
    for n in rep.notifications:
        say(f"   notification: {n.get('Subject')}")


def run_input(path: Path, keep_time: bool = False) -> int:
    """Any state machine input on a fresh local pair; prints status, output, notifications.

    An RDS event fixture is re-timed to now (else the workflow would rightly skip it as stale)
    unless `keep_time`."""
    from hapg.names import RdsEvent

    from local.stack import LocalStack, StackOptions

    execution_input = json.loads(path.read_text())
    if not keep_time and isinstance(execution_input, dict) and execution_input.get("source") == RdsEvent.SOURCE:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        execution_input["time"] = now
        execution_input.setdefault("detail", {})["Date"] = now
        say(f"(event re-timed to {now}; pass --keep-time to run it as written)")
    with LocalStack(StackOptions(fast=False)) as st:
        result = st.run(execution_input)
        out = {
            "status": result.status,
            "error": result.error,
            "cause": result.cause,
            "output": result.output,
            "notifications": st.notifications(),
            "states": [s.name for s in result.states],
        }
    say(json.dumps(out, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    env.prepare("local", "WARNING", ignore_warnings="No application metrics", metrics=True)
    from local import report
    from local.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="planned", choices=[*SCENARIOS, "all"])
    parser.add_argument("--input", type=Path, help="run this execution input instead of a scenario")
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--keep-time", action="store_true", help="run an RDS event with its original time")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "functions.log", "w") as logs, contextlib.redirect_stdout(logs):
        if args.input:
            return run_input(args.input, args.keep_time)
        names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
        started = time.time()
        reports = [rehearse(n, args.threads) for n in names]
    report.write_json(reports, OUT / "report.json")
    failed = [r.scenario for r in reports if not r.passed]
    say(
        f"\n{len(reports) - len(failed)}/{len(reports)} scenario(s) passed in {time.time() - started:.0f} s; "
        f"report: {OUT / 'report.json'}, plots: {OUT}/<scenario>.png, function logs: {OUT / 'functions.log'}"
    )
    if failed:
        say(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
