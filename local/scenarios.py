"""Rehearsal scenarios: each acts on a running LocalStack and returns what it expects to be true.

A scenario returns (main execution, other executions, checks). Lost commits are checked by the
runner for every scenario; checks here are about the workflow's behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import boto3
from hapg.errors import AwsThrottled
from hapg.names import Function, Kind, Mode, Outcome, RdsEvent, State

from local.executor import ExecutionResult
from local.faults import throttle
from local.pgpair import PgPair
from local.stack import NODES, LocalStack, rds_event

Result = tuple[ExecutionResult, list[ExecutionResult], dict[str, bool]]
SWITCHOVER = {"action": Kind.SWITCHOVER, "reason": "rehearsal"}


def _wait_for_state(st: LocalStack, arn: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = boto3.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
        if any(e.get("stateEnteredEventDetails", {}).get("name") == state for e in events):
            return
        time.sleep(0.01)
    raise TimeoutError(f"{arn} never entered {state}")


def planned(st: LocalStack) -> Result:
    r = st.run({**SWITCHOVER, "reason": "rehearsal: planned switchover"})
    return (
        r,
        [],
        {
            "execution succeeded": r.status == "SUCCEEDED" and r.outcome == Outcome.SUCCEEDED,
            "writer moved to the standby": st.writer().name == NODES[1],
        },
    )


def unplanned(st: LocalStack) -> Result:
    st.writer().crash()  # kill -9 of the postmaster and every backend, as a host crash
    r = st.run(rds_event(RdsEvent.STARTED_CROSS_AZ))
    return (
        r,
        [],
        {
            "execution succeeded": r.status == "SUCCEEDED" and r.outcome == Outcome.SUCCEEDED,
            "the workflow took over": (r.output or {}).get("mode") == Mode.TAKEOVER,
            "writer moved to the standby": st.writer().name == NODES[1],
        },
    )


def duplicate(st: LocalStack) -> Result:
    """Our own promote emits 0073 then 0071; EventBridge may deliver each twice, late."""
    arn = st.start({**SWITCHOVER, "reason": "rehearsal: duplicate events"})
    _wait_for_state(st, arn, State.PROMOTE)  # the lock is held from here to the end
    started = rds_event(RdsEvent.STARTED_CROSS_AZ)
    during = st.run(started)  # lock held: skipped
    main = st.executor.wait(arn)
    after = [st.run(rds_event(RdsEvent.COMPLETED, at=time.time() - 1)), st.run(started)]  # late + re-delivered
    others = [during, *after]
    return (
        main,
        others,
        {
            "switchover succeeded": main.outcome == Outcome.SUCCEEDED,
            "every event execution skipped": all(r.outcome == Outcome.SKIPPED for r in others),
        },
    )


def concurrent(st: LocalStack) -> Result:
    arns = [st.start({**SWITCHOVER, "reason": f"rehearsal: concurrent #{i}"}) for i in (1, 2)]
    results = [st.executor.wait(a) for a in arns]
    outcomes = sorted(r.outcome or "-" for r in results)
    main = next((r for r in results if r.outcome == Outcome.SUCCEEDED), results[0])
    return (
        main,
        [r for r in results if r is not main],
        {
            "one succeeded, one refused": outcomes == sorted([Outcome.SUCCEEDED, Outcome.REFUSED]),
        },
    )


def target_down(st: LocalStack) -> Result:
    standby = st.pair.standby
    standby.crash()
    r = st.run({**SWITCHOVER, "target_instance": NODES[1], "reason": "rehearsal: target down"})
    # Aurora restarts a failed reader by itself. Here the synchronous pair has no other standby, so
    # the writer's commits wait for this one: restart it, as Aurora would, and writes resume.
    standby.start()
    PgPair.wait_streaming(st.pair.primary, standby)
    return (
        r,
        [],
        {
            "refused": r.outcome == Outcome.REFUSED and "failed" in (r.output or {}).get("reason", ""),
            "writer unchanged": st.writer().name == NODES[0],
        },
    )


def throttling(st: LocalStack) -> Result:
    with throttle("rds", calls=3) as counter:
        r = st.run({**SWITCHOVER, "reason": "rehearsal: RDS API throttling"})
    retried = any(i.error == AwsThrottled.__name__ for i in st.executor.invocations())
    return (
        r,
        [],
        {
            "execution succeeded": r.outcome == Outcome.SUCCEEDED,
            "throttling reached the workflow and was retried": retried and counter["throttled"] == 3,
        },
    )


def drain_unreachable(st: LocalStack) -> Result:
    st.cluster.partitioned.add(NODES[0])  # the Lambdas lose their route to the writer instance
    r = st.run({**SWITCHOVER, "reason": "rehearsal: drain target unreachable"})
    drains = [i.result for i in st.executor.invocations() if i.function.endswith(Function.CONNECTION_DRAINER)]
    unreachable = any(isinstance(d, dict) and d.get("reachable") is False for d in drains)
    return (
        r,
        [],
        {
            "execution succeeded": r.outcome == Outcome.SUCCEEDED,
            "drain reported the writer unreachable": unreachable,
        },
    )


SCENARIOS: dict[str, Callable[[LocalStack], Result]] = {
    "planned": planned,
    "unplanned": unplanned,
    "duplicate": duplicate,
    "concurrent": concurrent,
    "target-down": target_down,
    "throttling": throttling,
    "drain-unreachable": drain_unreachable,
}
