"""Execute a real rendered ASL definition in moto's Step Functions interpreter, Lambdas in-process.

    with LocalExecutor() as ex:                      # fast: Wait/Retry sleeps scaled by 0.01
        arn = ex.add_function("HealthCheckerFunction", "health_checker", timeout_s=30)
        sm = ex.create_state_machine("failover", "statemachines/failover.asl.json", {"HealthCheckerArn": arn})
        result = ex.run(sm, {"mode": "planned"})
        print(result.timeline())

Facts this relies on, verified on moto 5.2.5 (tests/statemachine/test_executor.py pins them):

* Real execution needs `mock_aws(config={"stepfunctions": {"execute_state_machine": True}})`; the
  interpreter (LocalStack's, ported to moto.stepfunctions.parser) runs each execution in daemon threads.
* Lambda tasks reach `moto.awslambda.models.LambdaFunction.invoke(self, body, request_headers,
  response_headers)` with `body` the JSON payload as a str. We patch it to call functions/<dir>/index.py.
  A function error is `x-amz-function-error: Unhandled` plus `{"errorMessage", "errorType", "stackTrace"}`;
  in BOTH task styles the ASL error name is that `errorType` and the Cause is the error payload as JSON:
  - `"Resource": "arn:aws:states:::lambda:invoke"`: output `{"StatusCode": 200, "Payload": <result>}`
    (select it with ResultSelector `{"x.$": "$.Payload"}` or OutputPath `$.Payload`); history events
    Task{Scheduled,Started,Succeeded,Failed,TimedOut}.
  - legacy `"Resource": "<function arn>"`: output is the bare result; events LambdaFunction*.
* Timeouts, as Step Functions sees them on AWS:
  - a Lambda runtime timeout is a function error with errorType `Sandbox.Timedout` (payload
    `{"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: … Error: Task timed out after N.00
    seconds"}`); older runtimes sent no errorType and Step Functions reported `Lambda.Unknown`.
    `timeout_next()` injects it; a handler that overruns its `timeout_s` is reported the same way.
  - a Task's own TimeoutSeconds/HeartbeatSeconds firing is `States.Timeout`. Raise `TaskTimedOut` from a
    fault (`fail_next(dir, TaskTimedOut())`): it propagates out of the patched invoke as a Python
    TimeoutError, which the interpreter maps to `States.Timeout` at once (TaskTimedOut /
    LambdaFunctionTimedOut event) instead of after TimeoutSeconds of real waiting.
* `get_execution_history` holds `<Type>StateEntered/Exited` events with millisecond timestamps while
  and after an execution runs; `ExecutionResult.states` is built from them. A Fail state has no Exited
  event, and neither has a state the execution was stopped in.
* Quirks handled here: create_state_machine with an existing name returns the old machine unchanged
  (we then update it); describe_execution returns a string output unencoded (we read the
  ExecutionSucceeded event); TIMED_OUT executions have no stopDate (we use the last event).
* stop_execution ends a Wait at once, but the execution stays RUNNING until a Lambda Task in progress
  returns (threads cannot be interrupted); a Task past its TimeoutSeconds leaves its handler running
  in a daemon thread. Exit therefore also waits (at most EXIT_GRACE_S) for in-flight handlers.
* Parallel branches and inline Map iterations really run concurrently, each Task attempt in its own
  thread (`Invocation.thread`).
* Wait states block on `env.program_state_event.wait(seconds)` in
  moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function.WaitFunction, and Retry
  back-off calls `time.sleep` in moto.stepfunctions.parser.asl.component.common.retry.retrier_decl.

Time scaling: with `time_scale` s != 1 (fast mode, default 0.01) every Wait and Retry interval lasts
s × its declared length, in the same order and count. Only simulated time is scaled: handler work, Task
TimeoutSeconds, the state machine's TimeoutSeconds and wall-clock deadlines in handler code are not.
So a Wait→status→Choice polling loop that gives up at a wall-clock deadline D polls about 1/s times
more often before D: pass deadlines through `scaled(seconds)` to keep the real number of polls.
Retry back-off sleeps are not interruptible (in moto too), so with time_scale 1 an exit may wait for one.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import math
import os
import re
import threading
import time
import traceback
import uuid
import zipfile
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar
from unittest import mock

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.core.config import default_user_config
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_dynamodb,
    state_task_service_sns,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.utils import boto_client

from local.handlers import FUNCTIONS, LambdaContext, load

LOG = logging.getLogger(__name__)

FAST_TIME_SCALE = 0.01
NAME_PREFIX = "hapg-local-"
LAMBDA_RUNTIME = "python3.11"
LAMBDA_HANDLER = "index.lambda_handler"
LAMBDA_ROLE = f"{NAME_PREFIX}lambda"
STATES_ROLE = f"{NAME_PREFIX}states"
EXECUTE_STATE_MACHINE = {"stepfunctions": {"execute_state_machine": True}}
SFN_LOGGER = "moto.stepfunctions.parser"

FUNCTION_ERROR_HEADER = "x-amz-function-error"
UNHANDLED = "Unhandled"
LAMBDA_TIMEOUT_ERROR = "Sandbox.Timedout"
MARSHAL_ERROR = "Runtime.MarshalError"
STATES_TIMEOUT = "States.Timeout"

RUNNING = "RUNNING"
POLL_INTERVAL_S = 0.02  # wait(): each poll is a moto call that shares the GIL with the interpreter
# the interpreter's modules that build an SDK client per Task (Lambda invoke, DynamoDB, SNS)
_CLIENT_PER_TASK = (lambda_eval_utils, state_task_service_dynamodb, state_task_service_sns)
EXIT_GRACE_S = 10.0
STATE_ENTERED = "StateEntered"
STATE_EXITED = "StateExited"
SUCCEEDED_DETAILS = "executionSucceededEventDetails"
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")

Fault = Callable[[Any], None]
Notification = dict[str, str | None]


class FunctionError(Exception):
    """A function error with an explicit errorType, for Lambda runtime errors whose names hold dots."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class TaskTimedOut(TimeoutError):
    """Raised by a fault: the Task's TimeoutSeconds fired (`States.Timeout`), not a function error."""


@dataclass(frozen=True)
class StateSpan:
    """One visit of one state. `closed` is False when no Exited event came (a Fail state, or the
    execution ended inside it); `exited_at` is then the execution's stop time."""

    name: str
    type: str
    entered_at: float
    exited_at: float
    closed: bool = True

    @property
    def duration_ms(self) -> float:
        return (self.exited_at - self.entered_at) * 1000


@dataclass(frozen=True)
class ExecutionResult:
    execution_arn: str
    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    output: Any
    error: str | None
    cause: str | None
    started_at: float
    stopped_at: float
    states: list[StateSpan]
    history: list[dict[str, Any]] = field(repr=False)

    @property
    def state_names(self) -> list[str]:
        return [span.name for span in self.states]

    @property
    def outcome(self) -> str | None:
        """The workflow's `outcome` (names.Outcome) from its output; None when it returned no report."""
        return self.output.get("outcome") if isinstance(self.output, dict) else None

    def timeline(self) -> str:
        """One line per state visit: offset from the start and duration, both in ms."""
        total_ms = (self.stopped_at - self.started_at) * 1000
        head = f"{self.status} in {total_ms:.0f} ms" + (f" ({self.error}: {self.cause})" if self.error else "")
        return "\n".join([head, *(_timeline_line(span, self.started_at) for span in self.states)])


@dataclass(frozen=True)
class Invocation:
    """One in-process Lambda call. `error` is the errorType Step Functions saw (None on success)."""

    function: str
    event: Any
    result: Any
    error: str | None
    error_message: str | None
    started: float
    finished: float
    thread: str


@dataclass(frozen=True)
class _Function:
    logical_name: str
    function_dir: str
    name: str
    arn: str
    timeout_s: float
    env: dict[str, str]


@dataclass
class _InvocationContext(LambdaContext):
    """The shared fake context, with a remaining time that counts down like the real one."""

    deadline: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


class LocalExecutor:
    """A context manager running state machines in moto with our handlers in-process.

    Entering starts `mock_aws()` or, if the caller already started one, joins it (moto nests mocks
    without resetting), so RDS, DynamoDB or Secrets Manager resources the caller creates before or
    after are shared with the handlers and the interpreter; only the outermost mock wipes data on exit.
    Either way execute_state_machine is switched on for the executor's lifetime. One executor may be
    active at a time (the Lambda patch is process-wide). Exiting stops executions still running and
    waits for them and for in-flight handlers, so nothing outlives the mock.
    """

    _active: ClassVar[LocalExecutor | None] = None
    _active_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        fast: bool = True,
        time_scale: float | None = None,
        region: str = "us-east-1",
        functions_root: str | Path | None = None,
    ) -> None:
        self.time_scale = (FAST_TIME_SCALE if fast else 1.0) if time_scale is None else time_scale
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {self.time_scale}")
        self.region = region
        self._functions_root = Path(functions_root) if functions_root else FUNCTIONS
        self._stack = contextlib.ExitStack()
        self._clients: dict[str, Any] = {}
        self._functions: dict[str, _Function] = {}  # by moto function name
        self._faults: dict[str, list[Fault]] = defaultdict(list)  # by function dir
        self._invocations: list[Invocation] = []
        self._executions: list[str] = []
        self._env = _EnvOverlay()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._closing = threading.Event()

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalExecutor:
        with LocalExecutor._active_lock:
            if LocalExecutor._active is not None:
                raise RuntimeError("another LocalExecutor is active: the Lambda patch is process-wide")
            LocalExecutor._active = self
        try:
            self._install()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if LocalExecutor._active is not self:  # never entered, or entering failed: nothing to undo
            return
        self._closing.set()  # wakes injected sleeps
        try:
            self._drain()
        finally:
            self._release()

    def _install(self) -> None:
        stack = self._stack
        stack.enter_context(mock_aws())
        stack.enter_context(mock.patch.dict(default_user_config, EXECUTE_STATE_MACHINE))
        stack.enter_context(mock.patch.object(LambdaFunction, "invoke", self._lambda_patch()))
        sfn_logger = logging.getLogger(SFN_LOGGER)
        stack.callback(sfn_logger.setLevel, sfn_logger.level)
        sfn_logger.setLevel(logging.CRITICAL)  # it logs every States error at ERROR
        # Step Functions does not build an SDK client for every Task; moto's interpreter does (loading
        # the service model, ~2 ms, far more on a loaded machine): one client per service and region
        clients = _TaskClients()
        for module in _CLIENT_PER_TASK:
            stack.enter_context(mock.patch.object(module, "boto_client_for", clients.get))
        if self.time_scale != 1.0:
            stack.enter_context(mock.patch.object(WaitFunction, "_wait_interval", _scaled_wait(self.time_scale)))
            stack.enter_context(mock.patch.object(retrier_decl, "time", _ScaledSleep(self.time_scale)))

    def _release(self) -> None:
        try:
            self._stack.close()
        finally:
            self._clients.clear()
            with LocalExecutor._active_lock:
                if LocalExecutor._active is self:
                    LocalExecutor._active = None

    def _drain(self) -> None:
        """Stop our running executions, then wait (bounded) until they and every handler have ended."""
        deadline = time.monotonic() + EXIT_GRACE_S
        running = [arn for arn in self._executions if self._status(arn) == RUNNING]
        for arn in running:
            self._sfn.stop_execution(executionArn=arn, error="LocalExecutor.Exit", cause="executor closed")
        while running and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
            running = [arn for arn in running if self._status(arn) == RUNNING]
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=max(0.0, deadline - time.monotonic()))
            in_flight = self._in_flight
        if running or in_flight:
            LOG.warning("still running after %ss: %s executions, %s handlers", EXIT_GRACE_S, running, in_flight)

    # ---- resources -----------------------------------------------------------------------------
    def add_function(
        self, logical_name: str, function_dir: str, *, timeout_s: float = 30, env: dict[str, str] | None = None
    ) -> str:
        """Create Lambda `hapg-local-<function_dir>` in moto, served by functions/<function_dir>/index.py.

        The module is imported now (a broken handler fails here, not mid-execution). `env` is set in
        os.environ only while this function's handler runs: os.environ is process-wide, so when
        invocations with different values for one key overlap, both see the later one's value (values
        are restored exactly once they have all returned). Returns the function ARN.
        """
        name = f"{NAME_PREFIX}{function_dir}"
        if name in self._functions:
            raise ValueError(f"function {function_dir!r} was already added")
        load(function_dir, root=self._functions_root)
        env = dict(env or {})
        arn = self._create_function(name, timeout_s, env)
        self._functions[name] = _Function(logical_name, function_dir, name, arn, timeout_s, env)
        return arn

    @property
    def function_arns(self) -> dict[str, str]:
        """ARN of every added function by logical name (what DefinitionSubstitutions usually map)."""
        return {fn.logical_name: fn.arn for fn in self._functions.values()}

    def create_state_machine(self, name: str, asl_path: str | Path, substitutions: Mapping[str, str]) -> str:
        """Create (or redefine) state machine `name` from the ASL file with `${Key}` substituted."""
        definition = render_definition(Path(asl_path).read_text(), substitutions)
        role = self._role(STATES_ROLE, "states.amazonaws.com")
        arn = self._sfn.create_state_machine(name=name, definition=definition, roleArn=role)["stateMachineArn"]
        # moto returns an existing machine of that name unchanged, whatever the new definition says.
        if self._sfn.describe_state_machine(stateMachineArn=arn)["definition"] != definition:
            self._sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
        return arn

    def capture_topic(self, topic_arn: str) -> Callable[[], list[Notification]]:
        """Subscribe a fresh SQS queue to the topic; the returned callable gives every
        {"Subject", "Message"} published so far, in order of receipt."""
        url = self._client("sqs").create_queue(QueueName=f"{NAME_PREFIX}capture-{uuid.uuid4().hex[:12]}")["QueueUrl"]
        queue_arn = self._client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        self._client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
        captured: list[Notification] = []
        lock = threading.Lock()

        def notifications() -> list[Notification]:
            with lock:
                captured.extend(self._drain_queue(url))
                return list(captured)

        return notifications

    # ---- executions ----------------------------------------------------------------------------
    def start(self, state_machine_arn: str, input: dict[str, Any], name: str | None = None) -> str:
        """Start an execution (always named: moto's ARN would end in `:None` otherwise)."""
        name = name or f"exec-{uuid.uuid4().hex}"
        arn = self._sfn.start_execution(stateMachineArn=state_machine_arn, input=json.dumps(input), name=name)[
            "executionArn"
        ]
        with self._lock:
            self._executions.append(arn)
        return arn

    def wait(self, execution_arn: str, timeout_s: float = 120) -> ExecutionResult:
        """Poll until the execution ends; past `timeout_s`, stop it and raise TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while (described := self._sfn.describe_execution(executionArn=execution_arn))["status"] == RUNNING:
            if time.monotonic() >= deadline:
                self._sfn.stop_execution(executionArn=execution_arn, error="LocalExecutor.Timeout")
                origin = _epoch(described["startDate"])
                progress = "\n".join(
                    _timeline_line(s, origin) for s in _spans(self._history(execution_arn), time.time())
                )
                raise TimeoutError(f"{execution_arn} still RUNNING after {timeout_s}s (stopped):\n{progress}")
            time.sleep(POLL_INTERVAL_S)
        return _result(described, self._history(execution_arn))

    def run(
        self,
        state_machine_arn: str,
        input: dict[str, Any],
        name: str | None = None,
        timeout_s: float = 120,
    ) -> ExecutionResult:
        return self.wait(self.start(state_machine_arn, input, name), timeout_s)

    def invocations(self) -> list[Invocation]:
        """Every in-process Lambda call so far, in order of completion."""
        with self._lock:
            return list(self._invocations)

    def scaled(self, seconds: float) -> float:
        """`seconds` of simulated time in this executor's clock (for deadlines handed to handlers)."""
        return seconds * self.time_scale

    # ---- faults --------------------------------------------------------------------------------
    def inject(self, function_dir: str, fault: Fault) -> Callable[[], None]:
        """Run `fault(event)` before each call of the handler; if it raises, the handler is skipped and
        the exception becomes the function error (TaskTimedOut: States.Timeout). Returns a remover."""
        self._function_by_dir(function_dir)
        with self._lock:
            self._faults[function_dir].append(fault)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._faults[function_dir].remove(fault)

        return remove

    def fail_next(self, function_dir: str, exc: Exception | type[Exception], times: int = 1) -> Callable[[], None]:
        """The next `times` calls raise `exc` (an instance, or a class instantiated per call)."""

        def fail() -> None:
            raise exc() if isinstance(exc, type) else exc

        return self.inject(function_dir, _first(times, fail))

    def timeout_next(self, function_dir: str, times: int = 1) -> Callable[[], None]:
        """The next `times` calls time out as a Lambda does: after the function's timeout (scaled),
        a `Sandbox.Timedout` function error; the handler never runs."""
        timeout_s = self._function_by_dir(function_dir).timeout_s

        def time_out() -> None:
            self._closing.wait(self.scaled(timeout_s))
            raise _lambda_timeout(timeout_s, str(uuid.uuid4()))

        return self.inject(function_dir, _first(times, time_out))

    # ---- the in-process Lambda -----------------------------------------------------------------
    def _lambda_patch(self) -> Callable[..., bytes]:
        original = LambdaFunction.invoke
        executor = self

        def invoke(fn: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> bytes:
            spec = executor._functions.get(fn.function_name)
            if spec is None:  # not ours: moto's own behaviour
                return original(fn, body, request_headers, response_headers)
            return executor._invoke(spec, body, response_headers)

        return invoke

    def _invoke(self, fn: _Function, body: str, response_headers: dict[str, str]) -> bytes:
        event = _decode(body)  # recorded separately: a handler may mutate its own copy
        started = time.time()
        with self._tracking():
            try:
                result = self._call(fn, _decode(body), started)
                payload = _encode(result)
            except TaskTimedOut as exc:
                self._record(fn, event, started, error=(STATES_TIMEOUT, str(exc)))
                raise  # a Python TimeoutError reaching the interpreter is States.Timeout
            except Exception as exc:
                error = _error_body(exc)
                response_headers[FUNCTION_ERROR_HEADER] = UNHANDLED
                self._record(fn, event, started, error=(error["errorType"], error["errorMessage"]))
                return json.dumps(error).encode()
            self._record(fn, event, started, result=result)
            return payload

    def _call(self, fn: _Function, event: Any, started: float) -> Any:
        for fault in self._faults_of(fn.function_dir):
            fault(event)
        context = _InvocationContext(function_name=fn.name, timeout_s=fn.timeout_s, deadline=started + fn.timeout_s)
        with self._env.applied(fn.env):
            result = load(fn.function_dir, root=self._functions_root).lambda_handler(event, context)
        # A thread cannot be killed: an overrun is detected afterwards and its result dropped, as AWS would.
        if time.time() - started > fn.timeout_s:
            raise _lambda_timeout(fn.timeout_s, context.aws_request_id)
        return result

    def _record(
        self, fn: _Function, event: Any, started: float, *, result: Any = None, error: tuple[str, str] | None = None
    ) -> None:
        error_type, message = error or (None, None)
        invocation = Invocation(
            fn.function_dir, event, result, error_type, message, started, time.time(), threading.current_thread().name
        )
        with self._lock:
            self._invocations.append(invocation)

    @contextlib.contextmanager
    def _tracking(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    # ---- helpers -------------------------------------------------------------------------------
    @property
    def _sfn(self) -> Any:
        return self._client("stepfunctions")

    def _client(self, service: str) -> Any:
        if LocalExecutor._active is not self:
            raise RuntimeError("LocalExecutor is not active: use it as a context manager")
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=self.region)
        return self._clients[service]

    def _status(self, execution_arn: str) -> str:
        return self._sfn.describe_execution(executionArn=execution_arn)["status"]

    def _history(self, execution_arn: str) -> list[dict[str, Any]]:
        pages = self._sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        return [event for page in pages for event in page["events"]]

    def _faults_of(self, function_dir: str) -> list[Fault]:
        with self._lock:
            return list(self._faults[function_dir])

    def _function_by_dir(self, function_dir: str) -> _Function:
        fn = self._functions.get(f"{NAME_PREFIX}{function_dir}")
        if fn is None:
            raise KeyError(f"function {function_dir!r} was not added")
        return fn

    def _role(self, name: str, principal: str) -> str:
        return service_role(self._client("iam"), name, principal)

    def _create_function(self, name: str, timeout_s: float, env: dict[str, str]) -> str:
        return placeholder_function(self._client("lambda"), self._client("iam"), name, timeout_s, env)

    def _drain_queue(self, url: str) -> list[Notification]:
        sqs, out = self._client("sqs"), []
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            out.extend(_notification(json.loads(m["Body"])) for m in messages)
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        return out


def render_definition(text: str, substitutions: Mapping[str, str]) -> str:
    """Replace every `${Key}` as SAM's DefinitionSubstitutions would; any placeholder left unreplaced or
    substitution left unused is an error, and the result must be JSON."""
    found = set(PLACEHOLDER.findall(text))
    missing, unused = found - substitutions.keys(), substitutions.keys() - found
    if missing or unused:
        raise ValueError(f"ASL substitutions: unreplaced {sorted(missing)}, unused {sorted(unused)}")
    rendered = PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], text)
    json.loads(rendered)
    return rendered


# ---- pure helpers ------------------------------------------------------------------------------
def _result(described: dict[str, Any], history: list[dict[str, Any]]) -> ExecutionResult:
    # moto gives no stopDate for TIMED_OUT; the last event (ExecutionTimedOut) is the stop.
    stopped_at = _epoch(described.get("stopDate")) or _epoch(history[-1]["timestamp"])
    return ExecutionResult(
        execution_arn=described["executionArn"],
        status=described["status"],
        output=_output(history),
        error=described.get("error"),
        cause=described.get("cause"),
        started_at=_epoch(described["startDate"]),
        stopped_at=stopped_at,
        states=_spans(history, stopped_at),
        history=history,
    )


def _output(history: list[dict[str, Any]]) -> Any:
    """The output of the ExecutionSucceeded event, not of describe_execution: moto returns a string
    output there unencoded (`done` for "done")."""
    for event in reversed(history):
        if details := event.get(SUCCEEDED_DETAILS):
            return json.loads(details["output"])
    return None


def _spans(history: list[dict[str, Any]], stopped_at: float) -> list[StateSpan]:
    """Pair <Type>StateEntered/Exited events by state name, first in first out (ambiguous only for
    concurrent Map iterations of one state), in order of entry."""
    entered: list[tuple[str, str, float]] = []
    exited: dict[int, float] = {}
    open_by_name: dict[str, deque[int]] = defaultdict(deque)
    for event in history:
        kind, at = event["type"], _epoch(event["timestamp"])
        if kind.endswith(STATE_ENTERED):
            name = event["stateEnteredEventDetails"]["name"]
            open_by_name[name].append(len(entered))
            entered.append((name, kind.removesuffix(STATE_ENTERED), at))
        elif kind.endswith(STATE_EXITED):
            visits = open_by_name[event["stateExitedEventDetails"]["name"]]
            if visits:
                exited[visits.popleft()] = at
    return [
        StateSpan(name, typ, at, exited.get(i, max(at, stopped_at)), closed=i in exited)
        for i, (name, typ, at) in enumerate(entered)
    ]


def _timeline_line(span: StateSpan, origin: float) -> str:
    offset_ms = (span.entered_at - origin) * 1000
    note = "" if span.closed else "  (no exit event)"
    return f"{offset_ms:>+10.0f} ms {span.duration_ms:>8.0f} ms  {span.type:<9} {span.name}{note}"


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _decode(body: str | bytes | None) -> Any:
    return json.loads(body) if body else {}


def _encode(result: Any) -> bytes:
    try:
        return json.dumps(result).encode()
    except (TypeError, ValueError) as exc:
        raise FunctionError(MARSHAL_ERROR, f"Unable to marshal response: {exc}") from exc


def _error_body(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, FunctionError):  # a runtime error: no handler stack
        return {"errorMessage": str(exc), "errorType": exc.error_type}
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        # Like the Lambda runtime: the handler's frames, not the harness's.
        "stackTrace": traceback.format_list(
            [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename != __file__]
        ),
    }


def _lambda_timeout(timeout_s: float, request_id: str) -> FunctionError:
    return FunctionError(
        LAMBDA_TIMEOUT_ERROR, f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
    )


def _first(times: int, action: Callable[[], None]) -> Fault:
    """A fault doing `action` on its first `times` calls, then nothing."""
    tokens = deque(range(times))  # popleft is atomic: safe across concurrent invocations

    def fault(_event: Any) -> None:
        try:
            tokens.popleft()
        except IndexError:
            return
        action()

    return fault


def _notification(envelope: dict[str, Any]) -> Notification:
    return {"Subject": envelope.get("Subject"), "Message": envelope.get("Message")}


def _scaled_wait(scale: float) -> Callable[[WaitFunction, Any, float], None]:
    """WaitFunction._wait_interval for scaled time: still interrupted when the execution stops.
    (moto's own re-enters on fractional seconds, since it rounds the time waited down to an int.)"""

    def wait_interval(self: WaitFunction, env: Any, wait_seconds: float) -> None:
        deadline = time.monotonic() + max(wait_seconds, 0) * scale
        while env.is_running() and (remaining := deadline - time.monotonic()) > 0:
            env.program_state_event.wait(remaining)

    return wait_interval


class _ScaledSleep:
    """Stands in for the `time` module inside moto's retrier, which only calls time.sleep."""

    def __init__(self, scale: float) -> None:
        self._scale = scale

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self._scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _TaskClients:
    """moto's `boto_client_for`, one client per (region, service) for the executor's lifetime (boto3
    clients are thread-safe). Credentials are the interpreter's fixed dummies, so they are no key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}

    def get(self, region: str, service: str, state_credentials: Any = None) -> Any:
        with self._lock:
            key = (region, service)
            if key not in self._clients:
                self._clients[key] = boto_client.boto_client_for(region, service, state_credentials)
            return self._clients[key]


class _EnvOverlay:
    """Per-invocation os.environ overrides that never leak, even when invocations overlap: each key
    shows the value of the most recent invocation still running that sets it, else its original."""

    _MISSING: ClassVar[object] = object()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._layers: dict[int, dict[str, str]] = {}  # insertion order = start order
        self._originals: dict[str, str | None] = {}
        self._tokens = itertools.count()

    @contextlib.contextmanager
    def applied(self, env: dict[str, str]) -> Iterator[None]:
        if not env:
            yield
            return
        with self._lock:
            token = next(self._tokens)
            for key in env:
                self._originals.setdefault(key, os.environ.get(key))
            self._layers[token] = env
            self._sync(env)
        try:
            yield
        finally:
            with self._lock:
                del self._layers[token]
                self._sync(env)

    def _sync(self, keys: Iterable[str]) -> None:
        for key in keys:
            value = next((layer[key] for layer in reversed(self._layers.values()) if key in layer), self._MISSING)
            if value is not self._MISSING:
                os.environ[key] = value
            elif (original := self._originals.pop(key)) is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = original


def service_role(iam: Any, name: str, principal: str) -> str:
    """ARN of IAM role `name` that `principal` (e.g. lambda.amazonaws.com) may assume; created if missing."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": principal}, "Action": "sts:AssumeRole"}],
    }
    try:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:  # a joined mock from an earlier executor
        return iam.get_role(RoleName=name)["Role"]["Arn"]


def placeholder_function(
    lambda_client: Any, iam: Any, name: str, timeout_s: float = 3, env: dict[str, str] | None = None
) -> str:
    """ARN of moto Lambda function `name` (created if missing) whose code never runs: a patched
    LambdaFunction.invoke calls our handler in-process instead."""
    try:
        return lambda_client.create_function(
            FunctionName=name,
            Runtime=LAMBDA_RUNTIME,
            Role=service_role(iam, LAMBDA_ROLE, "lambda.amazonaws.com"),
            Handler=LAMBDA_HANDLER,
            Code={"ZipFile": _DUMMY_ZIP},
            Timeout=max(1, math.ceil(timeout_s)),
            Environment={"Variables": env or {}},
        )["FunctionArn"]
    except ClientError as exc:  # a joined mock from an earlier executor
        if exc.response["Error"]["Code"] != "ResourceConflictException":
            raise
        return lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]


def _dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "index.py",
            "def lambda_handler(event, context):\n"
            "    raise RuntimeError('placeholder: the local harness runs functions/<name>/index.py in-process')\n",
        )
    return buffer.getvalue()


_DUMMY_ZIP = _dummy_zip()  # moto needs code to create a function; the patched invoke never runs it
