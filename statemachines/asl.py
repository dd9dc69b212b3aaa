"""Thin extensions of the Step Functions SDK (stepfunctions-asl) and the pieces every workflow shares:
action tasks, poll loops, and the ending (record, notify, fail or succeed).

The SDK predates ResultSelector, MaxDelaySeconds and JitterStrategy; it camel-cases any field it
is allowed to hold, so widening `is_field_allowed` is all it takes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from stepfunctions import steps
from stepfunctions.steps import Catch, Choice, ChoiceRule, Pass, Wait

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "db"))

from hapg.errors import retryable_names  # noqa: E402
from hapg.names import Action, Outcome, Sub  # noqa: E402
from hapg.names import Result as R  # noqa: E402
from hapg.notify import RECORD_FAILED  # noqa: E402

ALL = ["States.ALL"]
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


class _Wider:
    EXTRA: tuple[str, ...] = ()

    def is_field_allowed(self, field_name: str) -> bool:
        return field_name in self.EXTRA or super().is_field_allowed(field_name)


class Task(_Wider, steps.Task):
    EXTRA = ("result_selector",)


class Retry(_Wider, steps.Retry):
    EXTRA = ("max_delay_seconds", "jitter_strategy")


def sub(name: str) -> str:
    """A ${Name} placeholder, filled by SAM DefinitionSubstitutions (or the local executor)."""
    return "${" + name + "}"


def transient_retry(attempts: int = 4, interval: int = 1, max_delay: int = 8) -> Retry:
    """Our retryable error classes + Lambda service hiccups: backoff with full jitter."""
    return Retry(
        error_equals=LAMBDA_SERVICE_ERRORS + retryable_names(),
        interval_seconds=interval,
        backoff_rate=2.0,
        max_attempts=attempts,
        max_delay_seconds=max_delay,
        jitter_strategy="FULL",
    )


def lambda_task(state_id: str, function: str, parameters: dict, result_path: str | None, **kwargs) -> Task:
    """Invoke one of our functions with the payload `parameters` (direct ARN: result = payload)."""
    return Task(state_id, resource=sub(function), parameters=parameters, result_path=result_path, **kwargs)


def action_task(function: str, state_id: str, action: str, result_path: str, attempts: int = 4, **params: str) -> Task:
    """`action` sent to our function `function` (a Sub key) with `params`, transient errors retried."""
    task = lambda_task(state_id, function, {"action": action, **params}, result_path)
    task.add_retry(transient_retry(attempts=attempts))
    return task


def poll_loop(check: steps.State, choice: Choice, wait: Wait, done_var: str, then: steps.State) -> None:
    """check -> choice: `done_var` true -> then, else wait -> check again."""
    check.next(choice)
    choice.add_choice(ChoiceRule.BooleanEquals(variable=done_var, value=True), then)
    choice.default_choice(wait)
    wait.next(check)


def record_fallback(state_id: str, subject: str, outcome_failed: str) -> Pass:
    """When the record step itself fails: a report built in the ASL, so the failure is still e-mailed."""
    return Pass(
        state_id,
        parameters={
            "outcome": outcome_failed,
            "notify": True,
            "subject": subject,
            "message.$": "States.Format('Execution {} could not record its outcome ({}). Check it in the "
            "Step Functions console and the runbook.', $$.Execution.Id, $.record_error.Cause)",
            "summary": {"outcome": outcome_failed, "reason": "recording the outcome failed"},
        },
        result_path=R.path(R.REPORT),
    )


def notify_task(state_id: str, topic_sub: str) -> Task:
    """Publish the report composed by the record step ($.report.subject / .message) on the alert topic."""
    task = Task(
        state_id,
        resource="arn:aws:states:::sns:publish",
        parameters={
            "TopicArn": sub(topic_sub),
            "Subject.$": R.path(R.REPORT, "subject"),
            "Message.$": R.path(R.REPORT, "message"),
        },
        result_path=None,
    )
    task.add_retry(transient_retry(attempts=3))
    return task


class Ending:
    """How every workflow ends: record the outcome (a report built in the ASL if that fails), notify when
    the report says so, then fail on a failed outcome or succeed with the summary.

    `names`: the workflow's state names (RECORD, RECORD_FALLBACK, SHOULD_NOTIFY, NOTIFY, RESULT, DONE,
    FAILED, FAILED_ERROR); `function`: the Sub key of the function that records; `what`: the workflow,
    as the fallback subject names it; `cause`: the Fail state's cause."""

    def __init__(self, names: type, function: str, what: str, cause: str) -> None:
        execution = {"state.$": "$", "execution.$": "$$.Execution.Id"}
        self.record = action_task(function, names.RECORD, Action.RECORD, R.path(R.REPORT), **execution)
        self.record_failed = record_fallback(names.RECORD_FALLBACK, f"{what} {RECORD_FAILED}", Outcome.FAILED)
        self.should_notify = Choice(names.SHOULD_NOTIFY)
        self.notify = notify_task(names.NOTIFY, Sub.TOPIC)
        self.result = Choice(names.RESULT)
        self.failed = steps.Fail(names.FAILED, error=names.FAILED_ERROR, cause=cause)
        self.done = steps.Succeed(names.DONE, output_path=R.path(R.REPORT, "summary"))

    def wire(self, after_notify: steps.State | None = None) -> None:
        """`after_notify`: a state between the notification and the result (it must lead to `result`)."""
        then = after_notify or self.result
        self.record.add_catch(Catch(error_equals=ALL, next_step=self.record_failed, result_path=R.path(R.RECORD_ERROR)))
        self.record.next(self.should_notify)
        self.record_failed.next(self.should_notify)
        self.should_notify.add_choice(
            ChoiceRule.BooleanEquals(variable=R.path(R.REPORT, "notify"), value=True), self.notify
        )
        self.should_notify.default_choice(then)
        self.notify.add_catch(Catch(error_equals=ALL, next_step=then, result_path=R.path(R.NOTIFY_ERROR)))
        self.notify.next(then)
        self.result.add_choice(
            ChoiceRule.StringEquals(variable=R.path(R.REPORT, "outcome"), value=Outcome.FAILED), self.failed
        )
        self.result.default_choice(self.done)
