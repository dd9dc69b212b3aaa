"""`make chaos`: the fault campaign -> build/chaos/results.json.

Each scenario runs N times (default 10), each run on a fresh LocalStack (a real PostgreSQL pair with
synchronous replication, moto, the committed ASL, our handlers) under a writer workload. After every
run the campaign checks what must always hold:

- every execution ends in a defined state: succeeded, verified, refused or skipped, or failed WITH a
  notification (none still running, timed out or aborted, except the one a scenario kills itself);
- the failover lock is released, or has expired;
- no acknowledged commit is missing on the final writer;
- never more than one promote per execution, and never two at once.

A run that breaks an invariant counts as `lost` (an acknowledged commit is missing) or `stuck`
(anything else), otherwise `survived`. `unplanned-async` repeats the crash with asynchronous
replication to show what synchronous replication buys: its losses are reported, not failed.
`--soak` runs 20 switchovers back and forth on one stack under load, then checks every acked row.

Everything runs on loopback; every wait is bounded; every process started is stopped by its PID
(the stack and the workload do that on exit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hapg.names import Action, Function, Kind, Outcome, RdsEvent, State
from hapg.notify import is_failure

from local import env

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "chaos"
DEFINED = {Outcome.SUCCEEDED, Outcome.VERIFIED, Outcome.REFUSED, Outcome.SKIPPED, Outcome.FAILED}
RUN_TIMEOUT_S = 120.0  # one execution
LOCK_TTL_S = 4  # the lock-holder scenario: short, so recovery through expiry is quick
SWITCHOVER = {"action": Kind.SWITCHOVER, "reason": "chaos"}


@dataclass
class RunResult:
    scenario: str
    verdict: str  # survived | lost | stuck
    outcomes: list[str]
    statuses: list[str]
    lost: int
    acked: int
    promotes: int
    notifications: int
    problems: list[str] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0


@dataclass
class Ctx:
    """What a scenario hands back: its executions and what else it knows."""

    executions: list = field(default_factory=list)
    killed: set[str] = field(default_factory=set)  # executions the scenario aborted on purpose
    max_promotes: int = 1
    expect_loss: bool = False  # async replication: losses are the finding, not a failure
    note: str = ""


# ---- scenarios: each acts on a running stack (st) under load ---------------------------------
def _crash_during(st, function_dir: str, action: str, victim: Callable, delay_s: float) -> Callable[[], None]:
    """When `function_dir` is invoked for `action`, crash `victim()` after `delay_s` (a timer thread,
    so the crash lands while the handler runs). Returns the fault's remover."""
    fired = threading.Event()

    def fault(event) -> None:
        if event.get("action") != action or fired.is_set():
            return
        fired.set()
        node = victim()
        threading.Timer(delay_s, node.crash).start()

    return st.executor.inject(function_dir, fault)


def primary_killed_mid_drain(st) -> Ctx:
    _crash_during(st, Function.CONNECTION_DRAINER, Action.DRAIN, st.writer, 0.01)
    return Ctx([st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)])


def primary_killed_mid_promote(st) -> Ctx:
    _crash_during(st, Function.FAILOVER_COORDINATOR, Action.PROMOTE, st.writer, 0.01)
    return Ctx([st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)])


def standby_killed_before_promote(st) -> Ctx:
    _crash_during(st, Function.FAILOVER_COORDINATOR, Action.PROMOTE, lambda: _other(st), 0.0)
    return Ctx([st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)])


def db_port_closed(st) -> Ctx:
    """The Lambdas lose their route to the writer instance (its endpoint answers connection refused)."""
    st.cluster.partitioned.add(st.writer().name)
    return Ctx([st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)])


def db_process_stopped(st) -> Ctx:
    """The writer stops answering (SIGSTOP) as the drain starts, for 3 s, then comes back."""
    writer = st.writer()

    def fault(event) -> None:
        if event.get("action") == Action.DRAIN:
            writer.freeze()
            threading.Timer(3.0, writer.thaw).start()

    st.executor.inject(Function.CONNECTION_DRAINER, fault)
    try:
        return Ctx([st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)])
    finally:
        writer.thaw()


def rds_throttling(st) -> Ctx:
    from local.faults import throttle

    # 4 throttled calls in a row: each fails one attempt of a step, the ASL Retry (4 retries) absorbs
    # them; a longer burst on one step ends `failed` with a notification (a defined state too)
    with throttle("rds", calls=4):
        return Ctx([st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)])


def lambda_errors(st) -> Ctx:
    from hapg.errors import DatabaseUnavailable

    from local.executor import FunctionError

    st.executor.fail_next(Function.CONNECTION_DRAINER, FunctionError("Lambda.ServiceException", "injected"))
    st.executor.fail_next(Function.FAILOVER_COORDINATOR, DatabaseUnavailable("injected: connection reset"), times=2)
    return Ctx([st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)])


def lambda_timeouts(st) -> Ctx:
    from local.executor import TaskTimedOut

    def on_promote(event) -> None:
        if event.get("action") == Action.PROMOTE:
            raise TaskTimedOut("injected: the promote Task's TimeoutSeconds fired")

    st.executor.timeout_next(Function.CONNECTION_DRAINER)  # Sandbox.Timedout on the drain
    st.executor.inject(Function.FAILOVER_COORDINATOR, on_promote)  # States.Timeout on the promote
    return Ctx([st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)])


def duplicate_events(st) -> Ctx:
    from local.scenarios import duplicate

    main, others, _ = duplicate(st)
    return Ctx([main, *others])


def out_of_order_events(st) -> Ctx:
    """Aurora's completion (0071) arrives before its start (0073), both after the failover they describe."""
    from local.stack import rds_event

    first = st.run(SWITCHOVER, timeout_s=RUN_TIMEOUT_S)
    happened = first.started_at
    late = [rds_event(RdsEvent.COMPLETED, at=happened + 0.5), rds_event(RdsEvent.STARTED_CROSS_AZ, at=happened)]
    return Ctx([first, *(st.run(e, timeout_s=RUN_TIMEOUT_S) for e in late)])


def concurrent_switchovers(st) -> Ctx:
    arns = [st.start({**SWITCHOVER, "reason": f"chaos: concurrent #{i}"}) for i in (1, 2)]
    return Ctx([st.executor.wait(a, RUN_TIMEOUT_S) for a in arns])


def lock_holder_crash(st) -> Ctx:
    """The execution holding the lock dies mid-drain (stopped: it never releases the lock). Another
    switchover is refused while the lock lives, and succeeds once its TTL has passed."""
    from local.scenarios import _wait_for_state

    st.configure(LOCK_TTL_S=str(LOCK_TTL_S))
    holder = st.start({**SWITCHOVER, "reason": "chaos: lock holder"})
    _wait_for_state(st, holder, State.DRAIN, timeout=30)
    st.executor._sfn.stop_execution(executionArn=holder, error="Chaos.Crash", cause="lock holder crashed")
    crashed = st.executor.wait(holder, RUN_TIMEOUT_S)
    during = st.run({**SWITCHOVER, "reason": "chaos: while the lock lives"}, timeout_s=RUN_TIMEOUT_S)
    deadline = time.monotonic() + LOCK_TTL_S + 5
    # a second of margin: the workflow's lock condition compares whole seconds
    while st.lock_owner(time.time() - 1) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    st.cluster.wait_rejoined(60)
    after = st.run({**SWITCHOVER, "reason": "chaos: after the lock expired", "force": True}, timeout_s=RUN_TIMEOUT_S)
    return Ctx([crashed, during, after], killed={crashed.execution_arn}, max_promotes=2)


def unplanned(st) -> Ctx:
    from local.stack import rds_event

    st.writer().crash()
    return Ctx([st.run(rds_event(RdsEvent.STARTED_CROSS_AZ), timeout_s=RUN_TIMEOUT_S)])


def unplanned_async(st) -> Ctx:
    ctx = unplanned(st)
    ctx.expect_loss, ctx.note = True, "asynchronous replication: acknowledged commits may be lost (the comparison)"
    return ctx


@dataclass(frozen=True)
class Scenario:
    run: Callable
    sync: bool = True


SCENARIOS: dict[str, Scenario] = {
    "primary-killed-mid-drain": Scenario(primary_killed_mid_drain),
    "primary-killed-mid-promote": Scenario(primary_killed_mid_promote),
    "standby-killed-before-promote": Scenario(standby_killed_before_promote),
    "db-port-closed": Scenario(db_port_closed),
    "db-process-stopped": Scenario(db_process_stopped),
    "rds-throttling": Scenario(rds_throttling),
    "lambda-errors": Scenario(lambda_errors),
    "lambda-timeouts": Scenario(lambda_timeouts),
    "duplicate-events": Scenario(duplicate_events),
    "out-of-order-events": Scenario(out_of_order_events),
    "concurrent-switchovers": Scenario(concurrent_switchovers),
    "lock-holder-crash": Scenario(lock_holder_crash),
    "unplanned-sync": Scenario(unplanned),
    "unplanned-async": Scenario(unplanned_async, sync=False),
}


# ---- one run and its invariants --------------------------------------------------------------
def run_once(name: str, threads: int = 8, fast: bool = True) -> RunResult:
    """One run of scenario `name` on a fresh stack; never raises for a scenario failure (it is a
    `stuck` verdict with the traceback in `problems`)."""
    from local.stack import LocalStack, StackOptions
    from local.workload import Workload

    scenario = SCENARIOS[name]
    started = time.time()
    with LocalStack(StackOptions(fast=fast, sync=scenario.sync)) as st:
        wl = Workload(st.workload_config(threads)).start(warmup_s=0.5)
        try:
            ctx = scenario.run(st)
        except Exception:  # noqa: BLE001 - a scenario that cannot finish is a finding
            ctx = Ctx(note="scenario raised")
            crash = traceback.format_exc(limit=8)
        else:
            crash = None
        finally:
            time.sleep(0.5)  # some commits on the final writer
            wl.stop()
        _settle(st)
        result = judge(name, st, wl, ctx)
    if crash:
        result.verdict = "stuck"
        result.problems.append(crash)
    result.seconds = round(time.time() - started, 1)
    return result


def _settle(st) -> None:
    """Bring every node back (a chaos kill leaves one down; Aurora would replace it)."""
    for node in st.pair.nodes:
        node.thaw()
    st.cluster.wait_rejoined(60)


def _other(st):
    writer = st.writer()
    return next(n for n in st.pair.nodes if n is not writer)


def judge(name: str, st, wl, ctx: Ctx) -> RunResult:
    problems: list[str] = []
    outcomes, statuses = [], []
    notes = st.notifications()
    for r in ctx.executions:
        outcome = r.outcome
        if r.status == "FAILED" and r.error == State.FAILED_ERROR:
            outcome = Outcome.FAILED  # the Fail state: record and notify ran before it
        outcomes.append(outcome or r.status.lower())
        statuses.append(r.status)
        if r.execution_arn in ctx.killed:
            continue
        if r.status not in ("SUCCEEDED", "FAILED") or outcome not in DEFINED:
            problems.append(f"{_short(r)} ended {r.status} ({r.error}: {str(r.cause)[:200]}), outcome {outcome}")
    failed = sum(1 for o in outcomes if o == Outcome.FAILED)
    failure_notes = sum(1 for n in notes if is_failure(n.get("Subject") or ""))
    if failed > failure_notes:
        problems.append(f"{failed} failed execution(s) but {failure_notes} failure notification(s)")
    if (owner := st.lock_owner()) is not None:
        problems.append(f"the lock is still held by {owner}")
    prims = promote_problems(st, ctx, problems)
    lost = _lost(st, wl)
    if lost is None:
        problems.append("no running writer to check the acknowledged commits against")
        lost = 0
    if lost and not ctx.expect_loss:
        verdict = "lost"
    elif problems:
        verdict = "stuck"
    else:
        verdict = "survived"
    return RunResult(name, verdict, outcomes, statuses, lost, len(wl.acks), len(prims), len(notes), problems, ctx.note)


def promote_problems(st, ctx: Ctx, problems: list[str]) -> list:
    """Never more promotes than the scenario allows, never two at once. Returns the primitives."""
    from local.stack import promotes

    called = promotes(st.executor)
    if len(called) > ctx.max_promotes:
        problems.append(f"{len(called)} promotes (at most {ctx.max_promotes})")
    prims = sorted(st.cluster.primitives, key=lambda p: p.started)
    for a, b in zip(prims, prims[1:], strict=False):
        if a.promoted is None or b.started < a.promoted:
            problems.append("two promotes overlapped")
    return prims


def _lost(st, wl) -> int | None:
    """How many acknowledged commits are missing on the final writer; None when there is no writer to ask."""
    from local.workload import lost_commits

    lost = lost_commits(wl, st.writer())
    return None if lost is None else len(lost)


def _short(r) -> str:
    return r.execution_arn.rsplit(":", 1)[-1]


# ---- campaign and soak -------------------------------------------------------------------------
def campaign(names: list[str], runs: int, threads: int, say=print) -> dict:
    per_scenario: dict[str, dict] = {}
    for name in names:
        results = []
        for i in range(runs):
            res = run_once(name, threads)
            results.append(res)
            say(f"   {name} {i + 1}/{runs}: {res.verdict} {res.outcomes} lost {res.lost} ({res.seconds} s)")
            for p in res.problems:
                say(f"      ! {p.strip().splitlines()[-1][:300]}")
        expect_loss = SCENARIOS[name].sync is False
        per_scenario[name] = {
            "runs": runs,
            "survived": sum(r.verdict == "survived" for r in results),
            "lost": sum(r.verdict == "lost" for r in results),
            "stuck": sum(r.verdict == "stuck" for r in results),
            "acked_commits": sum(r.acked for r in results),
            "lost_commits": sum(r.lost for r in results),
            "outcomes": _count(o for r in results for o in r.outcomes),
            "comparison_only": expect_loss,
            "per_run": [asdict(r) for r in results],
        }
    return per_scenario


def soak(switchovers: int = 20, threads: int = 8, say=print) -> dict:
    """`switchovers` planned switchovers back and forth on one stack under load; every acked row checked."""
    from local.stack import LocalStack, StackOptions
    from local.workload import Workload

    rows = []
    with LocalStack(StackOptions(fast=True)) as st:
        wl = Workload(st.workload_config(threads)).start(warmup_s=0.5)
        try:
            for i in range(switchovers):
                st.cluster.wait_rejoined(60)  # the previous old writer is a reader again
                before = st.writer().name
                r = st.run({**SWITCHOVER, "reason": f"soak #{i + 1}"}, timeout_s=RUN_TIMEOUT_S)
                outcome = r.outcome or r.status
                rows.append(
                    {"n": i + 1, "from": before, "to": st.writer().name, "status": r.status, "outcome": outcome}
                )
                say(f"   soak {i + 1}/{switchovers}: {before} -> {st.writer().name}: {outcome}")
        finally:
            time.sleep(0.5)
            wl.stop()
        st.cluster.wait_rejoined(60)
        lost = _lost(st, wl)
        lost = len(wl.acks) if lost is None else lost
        moved = sum(1 for row in rows if row["from"] != row["to"])
    return {
        "switchovers": switchovers,
        "succeeded": sum(1 for row in rows if row["outcome"] == Outcome.SUCCEEDED),
        "writer_moved": moved,
        "acked_commits": len(wl.acks),
        "lost_commits": lost,
        "passed": lost == 0 and moved == switchovers,
        "per_switchover": rows,
    }


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per scenario")
    parser.add_argument("--threads", type=int, default=8, help="writer threads of the workload")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="only these (repeatable)")
    parser.add_argument("--soak", type=int, default=20, help="switchovers in the soak (0: no soak)")
    args = parser.parse_args(argv)
    env.prepare("chaos", "CRITICAL")
    OUT.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        print(text, file=sys.__stdout__, flush=True)

    started = time.time()
    with open(OUT / "functions.log", "w") as logs, contextlib.redirect_stdout(logs):
        scenarios = campaign(args.scenario or list(SCENARIOS), args.runs, args.threads, say)
        soaked = soak(args.soak, args.threads, say) if args.soak else None
    failing = [n for n, s in scenarios.items() if not s["comparison_only"] and s["survived"] != s["runs"]]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "runs_per_scenario": args.runs,
        "writers": args.threads,
        "scenarios": scenarios,
        "soak": soaked,
        "passed": not failing and (soaked is None or soaked["passed"]),
        "seconds": round(time.time() - started),
    }
    (OUT / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    say("\nscenario                        survived  lost  stuck  lost commits")
    for name, s in scenarios.items():
        tag = "  (comparison: async replication)" if s["comparison_only"] else ""
        say(f"{name:<32}{s['survived']:>6}{s['lost']:>6}{s['stuck']:>7}{s['lost_commits']:>14}{tag}")
    if soaked:
        say(f"soak: {soaked['writer_moved']}/{soaked['switchovers']} switchovers, lost {soaked['lost_commits']}")
    say(f"results: {OUT / 'results.json'}" + ("" if result["passed"] else f"; FAILING: {', '.join(failing)}"))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
