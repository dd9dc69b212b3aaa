"""Thin extensions of the Step Functions SDK (stepfunctions-asl) and shared task builders.

The SDK predates ResultSelector, MaxDelaySeconds and JitterStrategy; it camel-cases any field it
is allowed to hold, so widening `is_field_allowed` is all it takes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from stepfunctions import steps
from stepfunctions.steps import Pass

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "db"))

from hapg.errors import retryable_names  # noqa: E402

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
        result_path="$.report",
    )


def notify_task(state_id: str, topic_sub: str) -> Task:
    """Publish the report composed by the record step ($.report.subject / .message) on the alert topic."""
    task = Task(
        state_id,
        resource="arn:aws:states:::sns:publish",
        parameters={"TopicArn": sub(topic_sub), "Subject.$": "$.report.subject", "Message.$": "$.report.message"},
        result_path=None,
    )
    task.add_retry(transient_retry(attempts=3))
    return task
