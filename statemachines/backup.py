"""The restore test: restore the latest snapshot into a temporary cluster, verify it, always delete it.

validate -> sweep leftovers -> prepare -> restore -> poll -> verify -> cleanup (poll) -> record ->
notify on failure. Every failure after validate goes through cleanup.

Each step is one `backup_verifier` action (hapg.restore). Polls are Wait -> task -> Choice loops
whose deadlines live in the tasks (they raise BackupCheckFailed); the execution timeout is only a
backstop longer than all of them, because a timed-out execution runs no Catch. A run that ends
anyway without cleanup (stopped by hand) leaves a tagged cluster that the next run's sweep deletes.
"""

from __future__ import annotations

from hapg.names import Action, Backup, BackupState, Outcome, Sub
from hapg.notify import RECORD_FAILED
from stepfunctions import steps
from stepfunctions.steps import Catch, Choice, ChoiceRule, Pass, Wait

from statemachines.asl import Task, lambda_task, notify_task, record_fallback, transient_retry

ALL = ["States.ALL"]
S = BackupState


def _step(state_id: str, action: str, result_path: str, attempts: int = 4, **params: str) -> Task:
    task = lambda_task(state_id, Sub.BACKUP, {"action": action, **params}, result_path)
    task.add_retry(transient_retry(attempts=attempts))
    return task


def _wait_loop(check: steps.State, choice: Choice, wait: Wait, done_var: str, then: steps.State) -> None:
    check.next(choice)
    choice.add_choice(ChoiceRule.BooleanEquals(variable=done_var, value=True), then)
    choice.default_choice(wait)
    wait.next(check)


class _RestoreTest:
    def __init__(self) -> None:
        request = {"request.$": "$.request"}
        # no Catch: bad input (unknown field, a named snapshot that does not exist or is not ours)
        # fails the execution with InvalidInput, and another live restore test with LockHeld, each
        # with its message, before anything is created
        self.validate = _step(S.VALIDATE, Action.VALIDATE, "$", **{"input.$": "$", "execution.$": "$$.Execution.Id"})
        self.sweep = _step(S.SWEEP, Action.SWEEP, "$.sweep", **request, **{"found.$": "$.sweep.found"})
        self.swept = Choice(S.SWEPT)
        self.wait_sweep = Wait(S.WAIT_SWEEP, seconds=Backup.WAIT_CLEANUP_S)
        self.prepare = _step(S.PREPARE, Action.PREPARE, "$.prepare", **request)
        self.restore = _step(
            S.RESTORE, Action.RESTORE_SNAPSHOT, "$.restore", **request, **{"snapshot.$": "$.prepare.snapshot"}
        )
        self.status = _step(
            S.STATUS,
            Action.STATUS,
            "$.status",
            **request,
            **{"restore.$": "$.restore", "snapshot.$": "$.prepare.snapshot"},
        )
        self.available = Choice(S.AVAILABLE)
        self.wait_restore = Wait(S.WAIT_RESTORE, seconds=Backup.WAIT_RESTORE_S)
        # a retried verify sets a new password again: few attempts
        self.verify = _step(
            S.VERIFY, Action.VERIFY, "$.verify", attempts=2, **request, **{"profile.$": "$.prepare.profile"}
        )
        self.begin_cleanup = Pass(
            S.BEGIN_CLEANUP, parameters={"started_at.$": "$$.State.EnteredTime"}, result_path="$.cleanup"
        )
        self.cleanup = _step(
            S.CLEANUP, Action.CLEANUP, "$.cleanup", attempts=6, **request, **{"started_at.$": "$.cleanup.started_at"}
        )
        self.cleaned = Choice(S.CLEANED)
        self.wait_cleanup = Wait(S.WAIT_CLEANUP, seconds=Backup.WAIT_CLEANUP_S)
        self.record = _step(S.RECORD, Action.RECORD, "$.report", **{"state.$": "$", "execution.$": "$$.Execution.Id"})
        self.record_failed = record_fallback(S.RECORD_FALLBACK, f"Restore test {RECORD_FAILED}", Outcome.FAILED)
        self.should_notify = Choice(S.SHOULD_NOTIFY)
        self.notify = notify_task(S.NOTIFY, Sub.TOPIC)
        self.result = Choice(S.RESULT)
        self.failed = steps.Fail(
            S.FAILED, error="RestoreTestFailed", cause="The restore test failed; see the notification."
        )
        self.done = steps.Succeed(S.DONE, output_path="$.report.summary")
        self._wire()

    def _wire(self) -> None:
        to_cleanup = Catch(error_equals=ALL, next_step=self.begin_cleanup, result_path="$.error")
        for task in (self.sweep, self.prepare, self.restore, self.status, self.verify):
            task.add_catch(to_cleanup)
        self.validate.next(self.sweep)
        _wait_loop(self.sweep, self.swept, self.wait_sweep, "$.sweep.gone", self.prepare)
        self.prepare.next(self.restore)
        self.restore.next(self.status)
        _wait_loop(self.status, self.available, self.wait_restore, "$.status.available", self.verify)
        self.verify.next(self.begin_cleanup)
        self.begin_cleanup.next(self.cleanup)
        self.cleanup.add_catch(Catch(error_equals=ALL, next_step=self.record, result_path="$.cleanup_error"))
        _wait_loop(self.cleanup, self.cleaned, self.wait_cleanup, "$.cleanup.gone", self.record)
        self.record.add_catch(Catch(error_equals=ALL, next_step=self.record_failed, result_path="$.record_error"))
        self.record.next(self.should_notify)
        self.record_failed.next(self.should_notify)
        self.should_notify.add_choice(ChoiceRule.BooleanEquals(variable="$.report.notify", value=True), self.notify)
        self.should_notify.default_choice(self.result)
        self.notify.add_catch(Catch(error_equals=ALL, next_step=self.result, result_path="$.notify_error"))
        self.notify.next(self.result)
        self.result.add_choice(ChoiceRule.StringEquals(variable="$.report.outcome", value=Outcome.FAILED), self.failed)
        self.result.default_choice(self.done)

    def graph(self) -> steps.Graph:
        comment = __doc__.strip().splitlines()[0]
        return steps.Graph(self.validate, timeout_seconds=Backup.EXECUTION_TIMEOUT_S, comment=comment)


def build() -> steps.Graph:
    """The restore-test state machine as an SDK graph (render with `.to_dict()`)."""
    return _RestoreTest().graph()
