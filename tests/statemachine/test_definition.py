"""The committed ASL is what the Python definition renders, and it speaks our names."""

import json
import re

import pytest
from hapg import errors
from hapg.names import Action, State, Sub

from statemachines import render

NAMES = sorted(render.WORKFLOWS)


@pytest.mark.parametrize("name", NAMES)
def test_committed_asl_is_current(name):
    assert render.path(name).read_text() == render.render(name), f"run `make render` and commit {name}.asl.json"


def load(name):
    return json.loads(render.path(name).read_text())


def states(definition):
    return definition["States"]


def test_failover_state_names_come_from_names_module():
    known = {v for k, v in vars(State).items() if k.isupper()}
    assert set(states(load("failover"))) <= known


def test_every_error_the_asl_matches_is_ours_or_aws():
    ours = set(errors.retryable_names() + errors.fatal_names())
    for name in NAMES:
        for state in states(load(name)).values():
            for rule in state.get("Retry", []) + state.get("Catch", []):
                for err in rule["ErrorEquals"]:
                    assert err in ours or err.startswith(("States.", "Lambda.", "DynamoDB.")), err


def test_every_retryable_error_is_retried_by_every_lambda_task():
    tasks = [
        (f"{name}.{sid}", state)
        for name in NAMES
        for sid, state in states(load(name)).items()
        if state["Type"] == "Task" and state["Resource"].startswith("${")
    ]
    assert tasks, "no Lambda task found: the filter no longer matches the ASL"
    for sid, state in tasks:
        retried = {e for rule in state.get("Retry", []) for e in rule["ErrorEquals"]}
        assert set(errors.retryable_names()) <= retried, sid


def test_placeholders_and_actions_use_shared_names():
    subs = {v for k, v in vars(Sub).items() if k.isupper()}
    actions = {v for k, v in vars(Action).items() if k.isupper()}
    used = []
    for name in NAMES:
        text = render.path(name).read_text()
        assert set(re.findall(r"\$\{(\w+)\}", text)) <= subs
        used += [a for s in states(load(name)).values() if (a := (s.get("Parameters") or {}).get("action"))]
    assert used, "no task passes an action: the lookup no longer matches the ASL"
    assert set(used) <= actions, set(used) - actions


def test_polling_loop_waits_at_most_two_seconds():
    waits = [s for s in states(load("failover")).values() if s["Type"] == "Wait"]
    assert waits and all(0 < s["Seconds"] <= 2 for s in waits)
