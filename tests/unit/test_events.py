"""Every fixture in events/ is valid for the function (or state machine) it is meant for."""

import json
from pathlib import Path

import pytest
from hapg import coordinator, drain
from hapg.models import HealthRequest
from hapg.steps import Step
from hapg.triggers import parse_trigger

EVENTS = Path(__file__).resolve().parents[2] / "events"
CLUSTER = "hapg-dev-cluster"


def fixtures(folder):
    return sorted((EVENTS / folder).glob("*.json"))


@pytest.mark.parametrize("path", fixtures("health_checker"), ids=lambda p: p.name)
def test_health_checker_fixtures(path):
    HealthRequest.parse(json.loads(path.read_text()))


@pytest.mark.parametrize("path", fixtures("console") + fixtures("rds"), ids=lambda p: p.name)
def test_state_machine_inputs(path):
    request = parse_trigger(json.loads(path.read_text()), CLUSTER)
    assert request.reason


@pytest.mark.parametrize("path", fixtures("failover_coordinator"), ids=lambda p: p.name)
def test_coordinator_fixtures(path):
    step = Step.parse(json.loads(path.read_text()), coordinator.ACTIONS, "failover_coordinator")
    if step.action == "validate":
        parse_trigger(step.payload["input"], CLUSTER)


@pytest.mark.parametrize("path", fixtures("connection_drainer"), ids=lambda p: p.name)
def test_drainer_fixtures(path):
    Step.parse(json.loads(path.read_text()), drain.ACTIONS, "connection_drainer")


@pytest.mark.parametrize("path", fixtures("backup_verifier"), ids=lambda p: p.name)
def test_backup_verifier_fixtures(path):
    from hapg import restore_run, verifier

    step = Step.parse(json.loads(path.read_text()), verifier.ACTIONS, "backup_verifier")
    if step.action == "validate":
        restore_run.parse_input(step.payload["input"])
    if "request" in step.payload:
        restore_run.Request.from_dict(step.payload["request"], "hapg-dev-restore")


@pytest.mark.parametrize("path", fixtures("backup_verification"), ids=lambda p: p.name)
def test_restore_test_inputs(path):
    from hapg import restore_run

    reason, _ = restore_run.parse_input(json.loads(path.read_text()))
    assert reason


@pytest.mark.parametrize("path", fixtures("secret_rotation"), ids=lambda p: p.name)
def test_secret_rotation_fixtures(path):
    from hapg.rotation import RotationRequest

    RotationRequest.parse(json.loads(path.read_text()))


def test_every_folder_is_covered():
    covered = {"health_checker", "console", "rds", "failover_coordinator", "connection_drainer"}
    covered |= {"backup_verifier", "backup_verification"}
    covered |= {"secret_rotation"}
    assert {p.name for p in EVENTS.iterdir() if p.is_dir()} <= covered
