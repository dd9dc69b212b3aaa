"""LocalExecutor: real ASL in moto's interpreter, throwaway handlers in-process.

These tests also pin what moto 5.2.5's interpreter does (error names per Task style, output shapes,
history events), which local/executor.py's docstring relies on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

import local.executor
from local.executor import LocalExecutor, TaskTimedOut, render_definition

SERVICE, LEGACY = "service", "legacy"
ENV_KEY = "HAPG_TEST_EXECUTOR_VALUE"
TABLE = "hapg-test-locks"

HANDLER = '''
import os
import time


class DatabaseUnavailable(Exception):
    """Transient: the ASL retries it."""


class FatalError(Exception):
    """Permanent: the ASL catches it."""


def lambda_handler(event, context):
    time.sleep(event.get("sleep", 0))
    if "raise" in event:
        raise {"DatabaseUnavailable": DatabaseUnavailable, "FatalError": FatalError}[event["raise"]]("boom")
    return {
        "echo": event,
        "env": os.environ.get("HAPG_TEST_EXECUTOR_VALUE"),
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
'''


class DatabaseUnavailable(Exception):
    """Only the class name reaches the ASL, as on AWS."""


@pytest.fixture(scope="module")
def functions_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("functions")
    for name in ("echo", "slow"):
        (root / name).mkdir()
        (root / name / "index.py").write_text(HANDLER)
    return root


@pytest.fixture
def executor(functions_root):
    with LocalExecutor(functions_root=functions_root) as ex:
        ex.add_function("EchoFunction", "echo", timeout_s=5, env={ENV_KEY: "from-executor"})
        yield ex


def machine(ex: LocalExecutor, tmp_path: Path, states: dict, start: str | None = None, **subs: str) -> str:
    """Write a throwaway ASL file and create it; `${EchoArn}`, where used, is the echo function."""
    path = tmp_path / f"sm-{time.time_ns()}.asl.json"
    path.write_text(json.dumps({"StartAt": start or next(iter(states)), "States": states}))
    if "${EchoArn}" in path.read_text():
        subs.setdefault("EchoArn", ex.function_arns["EchoFunction"])
    return ex.create_state_machine(path.stem.replace(".", "-"), path, subs)


class _SleepRecorder:
    """Stands in for local.executor's `time` module and records the sleeps asked of it off the main
    thread: the interpreter's (the scaled Retry back-off), not the test's own polling."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.slept.append(seconds)
        time.sleep(seconds)

    def __getattr__(self, name: str):
        return getattr(time, name)


def record_backoff(monkeypatch) -> list[float]:
    recorder = _SleepRecorder()
    monkeypatch.setattr(local.executor, "time", recorder)
    return recorder.slept


class _RecordingEnv:
    """A Wait state's environment whose wake-up event records every timeout it is waited on with."""

    def __init__(self, env, waited: list[float]) -> None:
        self._env, self._waited = env, waited

    def __getattr__(self, name: str):
        return getattr(self._env, name)

    @property
    def program_state_event(self):
        event, waited = self._env.program_state_event, self._waited

        class Recording:
            def wait(self, timeout=None):
                waited.append(timeout)
                return event.wait(timeout)

        return Recording()


def record_waits(monkeypatch) -> tuple[list[float], list[float]]:
    """(declared Wait seconds, real timeouts waited on) of every Wait state, through the executor's wait."""
    executors_wait = WaitFunction._wait_interval  # what the active executor installed
    declared: list[float] = []
    waited: list[float] = []

    def spy(self, env, wait_seconds):
        declared.append(wait_seconds)
        return executors_wait(self, _RecordingEnv(env, waited), wait_seconds)

    monkeypatch.setattr(WaitFunction, "_wait_interval", spy)
    return declared, waited


def lambda_task(style: str, function: str = "${EchoArn}", **fields) -> dict:
    """A Lambda Task in either style: the service integration the product uses, or the legacy ARN."""
    if style == SERVICE:
        task = {
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": function, "Payload.$": "$"},
        }
    else:
        task = {"Resource": function}
    return {"Type": "Task", **task, **fields}


def caught(style: str, function: str = "${EchoArn}") -> dict:
    """Call the function; any error goes to $.error and on to Recovered."""
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recovered"}]
    return {
        "Call": lambda_task(style, function, Catch=catch, End=True),
        "Recovered": {"Type": "Pass", "End": True},
    }


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (SERVICE, lambda payload: {"StatusCode": 200, "Payload": payload}),
        (LEGACY, lambda payload: payload),
    ],
)
def test_success_output_shape_per_task_style(executor, tmp_path, style, expected):
    sm = machine(executor, tmp_path, {"Call": lambda_task(style, End=True)})

    result = executor.run(sm, {"n": 1})

    assert result.status == "SUCCEEDED", result.timeline()
    payload = result.output["Payload"] if style == SERVICE else result.output
    assert result.output == expected(payload)
    assert payload["echo"] == {"n": 1}
    assert payload["function"] == "hapg-local-echo"
    assert 0 < payload["remaining_ms"] <= 5000
    [call] = executor.invocations()
    assert (call.function, call.event, call.result, call.error) == ("echo", {"n": 1}, payload, None)
    assert call.started <= call.finished
    assert call.thread != threading.current_thread().name
    assert [(s.name, s.type) for s in result.states] == [("Call", "Task")]


def test_result_selector_on_payload_with_result_path(executor, tmp_path):
    task = lambda_task(SERVICE, ResultSelector={"seen.$": "$.Payload.echo"}, ResultPath="$.check", End=True)
    sm = machine(executor, tmp_path, {"Call": task})

    assert executor.run(sm, {"n": 2}).output == {"n": 2, "check": {"seen": {"n": 2}}}


def test_env_is_set_only_while_the_handler_runs(executor, tmp_path):
    sm = machine(executor, tmp_path, {"Call": lambda_task(LEGACY, End=True)})

    assert executor.run(sm, {}).output["env"] == "from-executor"
    assert ENV_KEY not in os.environ


@pytest.mark.parametrize("style", [SERVICE, LEGACY])
def test_custom_error_name_is_retried_then_succeeds(executor, tmp_path, style, monkeypatch):
    retry = [{"ErrorEquals": ["DatabaseUnavailable"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2}]
    sm = machine(executor, tmp_path, {"Call": lambda_task(style, Retry=retry, End=True)})
    executor.fail_next("echo", DatabaseUnavailable("primary unreachable"), times=2)
    backoff = record_backoff(monkeypatch)

    result = executor.run(sm, {})

    assert result.status == "SUCCEEDED", result.timeline()
    assert backoff == pytest.approx([1 * 0.01, 2 * 0.01]), "1 s then 2 s of back-off, each scaled by 0.01"
    calls = executor.invocations()
    assert [c.error for c in calls] == ["DatabaseUnavailable", "DatabaseUnavailable", None]
    assert calls[0].error_message == "primary unreachable"


@pytest.mark.parametrize("style", [SERVICE, LEGACY])
def test_fatal_handler_error_is_caught_with_result_path(executor, tmp_path, style):
    states = caught(style)
    states["Call"]["Retry"] = [{"ErrorEquals": ["DatabaseUnavailable"], "MaxAttempts": 5}]
    sm = machine(executor, tmp_path, states)

    result = executor.run(sm, {"raise": "FatalError"})

    assert result.status == "SUCCEEDED"
    assert result.state_names == ["Call", "Recovered"]
    error = result.output["error"]
    assert error["Error"] == "FatalError"
    cause = json.loads(error["Cause"])
    assert (cause["errorType"], cause["errorMessage"]) == ("FatalError", "boom")
    assert any("lambda_handler" in line for line in cause["stackTrace"])
    assert len(executor.invocations()) == 1, "a fatal error is not retried"


@pytest.mark.parametrize("style", [SERVICE, LEGACY])
@pytest.mark.parametrize(
    ("fault", "error"),
    [("lambda_timeout", "Sandbox.Timedout"), ("task_timeout", "States.Timeout"), ("overrun", "Sandbox.Timedout")],
)
def test_timeouts_surface_as_on_aws(executor, tmp_path, style, fault, error):
    if fault == "overrun":  # the handler itself outlives its 50 ms function timeout
        slow = executor.add_function("SlowFunction", "slow", timeout_s=0.05)
        sm = machine(executor, tmp_path, caught(style, "${SlowArn}"), SlowArn=slow)
    else:
        sm = machine(executor, tmp_path, caught(style))
    if fault == "lambda_timeout":
        executor.timeout_next("echo")
    elif fault == "task_timeout":
        executor.fail_next("echo", TaskTimedOut("TimeoutSeconds elapsed"))

    result = executor.run(sm, {"sleep": 0.1} if fault == "overrun" else {})

    assert result.output["error"]["Error"] == error, result.timeline()
    assert result.state_names == ["Call", "Recovered"]
    assert [c.error for c in executor.invocations()] == [error]


def test_inject_sees_the_event_and_can_be_removed(executor, tmp_path):
    sm = machine(executor, tmp_path, caught(LEGACY))
    seen = []

    def fault(event):
        seen.append(event)
        if event.get("poison"):
            raise DatabaseUnavailable("poisoned input")

    remove = executor.inject("echo", fault)
    assert executor.run(sm, {"poison": True}).output["error"]["Error"] == "DatabaseUnavailable"
    remove()
    assert "error" not in executor.run(sm, {"poison": True}).output
    assert seen == [{"poison": True}]
    assert [c.error for c in executor.invocations()] == ["DatabaseUnavailable", None]


def test_redefining_a_state_machine_takes_the_new_definition(executor, tmp_path):
    path = tmp_path / "same.asl.json"
    for result in ("old", "new"):
        path.write_text(json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": result, "End": True}}}))
        sm = executor.create_state_machine("hapg-test-same", path, {})
    assert executor.run(sm, {}).output == "new", "moto alone would keep the old definition"


def test_dynamodb_condition_failure_is_caught_in_a_joined_mock(functions_root, tmp_path):
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": "failover"}})
        with LocalExecutor(functions_root=functions_root) as ex:
            ex.add_function("EchoFunction", "echo")
            put = {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {
                    "TableName": TABLE,
                    "Item": {"pk": {"S": "failover"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                },
                "Catch": [
                    {
                        "ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"],
                        "ResultPath": "$.lock",
                        "Next": "Held",
                    }
                ],
                "End": True,
            }
            sm = machine(ex, tmp_path, {"Acquire": put, "Held": {"Type": "Pass", "End": True}})

            result = ex.run(sm, {})

        assert result.output["lock"]["Error"] == "DynamoDB.ConditionalCheckFailedException"
        assert result.state_names == ["Acquire", "Held"]
        assert "Item" in ddb.get_item(TableName=TABLE, Key={"pk": {"S": "failover"}}), "outer mock kept its data"


def test_sns_publish_is_captured(executor, tmp_path):
    topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="hapg-test-notify")["TopicArn"]
    notifications = executor.capture_topic(topic)
    publish = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {"TopicArn": topic, "Subject": "Failover done", "Message.$": "States.JsonToString($)"},
        "End": True,
    }
    sm = machine(executor, tmp_path, {"Notify": publish})

    executor.run(sm, {"writer": "b"})
    executor.run(sm, {"writer": "a"})

    assert notifications() == [
        {"Subject": "Failover done", "Message": '{"writer":"b"}'},
        {"Subject": "Failover done", "Message": '{"writer":"a"}'},
    ]
    assert len(notifications()) == 2, "captured messages are kept, not received twice"


def test_wait_is_scaled_but_kept_in_an_ordered_timeline(executor, tmp_path, monkeypatch):
    states = {
        "Before": {"Type": "Pass", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 3, "Next": "Call"},
        "Call": lambda_task(LEGACY, Next="Done"),
        "Done": {"Type": "Fail", "Error": "Finished", "Cause": "on purpose"},
    }
    sm = machine(executor, tmp_path, states)
    declared, waited = record_waits(monkeypatch)

    result = executor.run(sm, {})

    assert (result.status, result.error, result.cause) == ("FAILED", "Finished", "on purpose")
    assert result.state_names == ["Before", "Pause", "Call", "Done"]
    assert declared == [3]
    assert waited and all(0 < w <= 3 * 0.01 for w in waited), ("3 s scaled by 0.01", waited)
    pause = result.states[1]
    assert pause.duration_ms >= 20, "it really waited (ms-resolution timestamps)"
    assert all(s.duration_ms >= 0 and s.entered_at >= result.started_at for s in result.states)
    assert [s.entered_at for s in result.states] == sorted(s.entered_at for s in result.states)
    assert [s.closed for s in result.states] == [True, True, True, False], "a Fail state never exits"
    lines = result.timeline().splitlines()
    assert lines[0].startswith("FAILED in ")
    assert [line.split()[-1] for line in lines[1:4]] == ["Before", "Pause", "Call"]
    assert "Done" in lines[4]


def test_wait_timeout_stops_the_execution(executor, tmp_path):
    sm = machine(executor, tmp_path, {"Pause": {"Type": "Wait", "Seconds": 3600, "End": True}})
    arn = executor.start(sm, {}, name="long-wait")

    with pytest.raises(TimeoutError, match="Pause"):
        executor.wait(arn, timeout_s=0.2)

    result = executor.wait(arn, timeout_s=5)
    assert result.status == "ABORTED"
    assert arn.endswith(":long-wait")
    assert [(s.name, s.closed) for s in result.states] == [("Pause", False)]


def test_state_machine_timeout_is_real_time(executor, tmp_path):
    path = tmp_path / "timeout.asl.json"
    pause = {"Type": "Wait", "Seconds": 3600, "End": True}
    path.write_text(json.dumps({"TimeoutSeconds": 1, "StartAt": "Pause", "States": {"Pause": pause}}))
    sm = executor.create_state_machine("hapg-test-timeout", path, {})

    result = executor.run(sm, {})

    assert (result.status, result.output) == ("TIMED_OUT", None)
    assert [(s.name, s.closed) for s in result.states] == [("Pause", False)], "stopped in the Wait (36 s scaled)"
    assert (result.stopped_at - result.started_at) * 1000 >= 900, "TimeoutSeconds is not scaled"


def test_exit_stops_running_executions(functions_root, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=local.executor.__name__)
    ex = LocalExecutor(functions_root=functions_root)
    ex.__enter__()
    try:
        ex.add_function("EchoFunction", "echo")
        sm = machine(ex, tmp_path, {"Pause": {"Type": "Wait", "Seconds": 360_000, "End": True}})  # 1 h scaled
        arn = ex.start(sm, {})
        deadline = time.monotonic() + 30
        while not any("StateEntered" in e["type"] for e in ex._history(arn)):
            assert time.monotonic() < deadline, "the execution never entered its Wait"
            time.sleep(0.02)
    finally:
        exiting = threading.Thread(target=ex.__exit__, args=(None, None, None), daemon=True)
        exiting.start()
        exiting.join(60)  # a deadline against hanging, not a speed claim
    assert not exiting.is_alive(), "exit hung on a running execution"
    assert "still running" not in caplog.text, "exit gave up waiting instead of stopping the execution"
    assert LocalExecutor._active is None


def test_placeholders_must_match_substitutions_exactly(executor, tmp_path):
    text = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "${Known}", "End": True}}})
    assert json.loads(render_definition(text, {"Known": "x"}))["States"]["A"]["Result"] == "x"
    with pytest.raises(ValueError, match="unreplaced \\['Known'\\]"):
        render_definition(text, {})
    with pytest.raises(ValueError, match="unused \\['Extra'\\]"):
        render_definition(text, {"Known": "x", "Extra": "y"})
    with pytest.raises(ValueError, match="Missing"):
        machine(executor, tmp_path, {"Call": lambda_task(LEGACY, Parameters={"x": "${Missing}"}, End=True)})


def test_concurrent_executions_run_in_parallel(executor, tmp_path):
    sm = machine(executor, tmp_path, {"Call": lambda_task(SERVICE, OutputPath="$.Payload", End=True)})

    arns = [executor.start(sm, {"sleep": 0.3, "i": i}) for i in range(2)]
    results = [executor.wait(arn) for arn in arns]

    assert [r.output["echo"]["i"] for r in results] == [0, 1]
    first, second = executor.invocations()
    assert max(first.started, second.started) < min(first.finished, second.finished), "they overlapped"
    assert first.thread != second.thread


def test_one_executor_at_a_time(executor, tmp_path):
    other = LocalExecutor()
    with pytest.raises(RuntimeError, match="another LocalExecutor"), other:
        pass
    other.__exit__(None, None, None)  # exiting one that never entered leaves the active one alone

    sm = machine(executor, tmp_path, {"P": {"Type": "Pass", "End": True}})
    assert executor.run(sm, {"still": "active"}).output == {"still": "active"}
