"""The restore test: restore the latest snapshot into a temporary cluster, verify it, always delete it.

validate -> sweep leftovers -> prepare -> restore -> poll -> verify -> cleanup (poll) -> record ->
notify on failure. Every failure after validate goes through cleanup.

Each step is one `backup_verifier` action (hapg.restore). Polls are Wait -> task -> Choice loops
whose deadlines live in the tasks (they raise BackupCheckFailed); the execution timeout is only a
backstop longer than all of them, because a timed-out execution runs no Catch. A run that ends
anyway without cleanup (stopped by hand) leaves a tagged cluster that the next run's sweep deletes.
"""

from __future__ import annotations

from functools import partial

from hapg.names import Action, Backup, BackupState, Sub
from hapg.names import Result as R
from stepfunctions import steps
from stepfunctions.steps import Catch, Choice, Pass, Wait

from statemachines.asl import ALL, Ending, action_task, poll_loop

S = BackupState
_step = partial(action_task, Sub.BACKUP)


class _RestoreTest:
    def __init__(self) -> None:
        request = {"request.$": R.path(R.REQUEST)}
        # no Catch: bad input (unknown field, a named snapshot that does not exist or is not ours)
        # fails the execution with InvalidInput, and another live restore test with LockHeld, each
        # with its message, before anything is created
        self.validate = _step(S.VALIDATE, Action.VALIDATE, "$", **{"input.$": "$", "execution.$": "$$.Execution.Id"})
        self.sweep = _step(S.SWEEP, Action.SWEEP, R.path(R.SWEEP), **request, **{"found.$": R.path(R.SWEEP, "found")})
        self.swept = Choice(S.SWEPT)
        self.wait_sweep = Wait(S.WAIT_SWEEP, seconds=Backup.WAIT_CLEANUP_S)
        self.prepare = _step(S.PREPARE, Action.PREPARE, R.path(R.PREPARE), **request)
        self.restore = _step(
            S.RESTORE,
            Action.RESTORE_SNAPSHOT,
            R.path(R.RESTORE),
            **request,
            **{"snapshot.$": R.path(R.PREPARE, "snapshot")},
        )
        self.status = _step(
            S.STATUS,
            Action.STATUS,
            R.path(R.STATUS),
            **request,
            **{"restore.$": R.path(R.RESTORE), "snapshot.$": R.path(R.PREPARE, "snapshot")},
        )
        self.available = Choice(S.AVAILABLE)
        self.wait_restore = Wait(S.WAIT_RESTORE, seconds=Backup.WAIT_RESTORE_S)
        # a retried verify sets a new password again: few attempts
        self.verify = _step(
            S.VERIFY,
            Action.VERIFY,
            R.path(R.VERIFY),
            attempts=2,
            **request,
            **{"profile.$": R.path(R.PREPARE, "profile")},
        )
        self.begin_cleanup = Pass(
            S.BEGIN_CLEANUP, parameters={"started_at.$": "$$.State.EnteredTime"}, result_path=R.path(R.CLEANUP)
        )
        self.cleanup = _step(
            S.CLEANUP,
            Action.CLEANUP,
            R.path(R.CLEANUP),
            attempts=6,
            **request,
            **{"started_at.$": R.path(R.CLEANUP, "started_at")},
        )
        self.cleaned = Choice(S.CLEANED)
        self.wait_cleanup = Wait(S.WAIT_CLEANUP, seconds=Backup.WAIT_CLEANUP_S)
        self.ending = Ending(S, Sub.BACKUP, "Restore test", "The restore test failed; see the notification.")
        self.record = self.ending.record
        self._wire()

    def _wire(self) -> None:
        to_cleanup = Catch(error_equals=ALL, next_step=self.begin_cleanup, result_path=R.path(R.ERROR))
        for task in (self.sweep, self.prepare, self.restore, self.status, self.verify):
            task.add_catch(to_cleanup)
        self.validate.next(self.sweep)
        poll_loop(self.sweep, self.swept, self.wait_sweep, R.path(R.SWEEP, "gone"), self.prepare)
        self.prepare.next(self.restore)
        self.restore.next(self.status)
        poll_loop(self.status, self.available, self.wait_restore, R.path(R.STATUS, "available"), self.verify)
        self.verify.next(self.begin_cleanup)
        self.begin_cleanup.next(self.cleanup)
        self.cleanup.add_catch(Catch(error_equals=ALL, next_step=self.record, result_path=R.path(R.CLEANUP_ERROR)))
        poll_loop(self.cleanup, self.cleaned, self.wait_cleanup, R.path(R.CLEANUP, "gone"), self.record)
        self.ending.wire()

    def graph(self) -> steps.Graph:
        comment = __doc__.strip().splitlines()[0]
        return steps.Graph(self.validate, timeout_seconds=Backup.EXECUTION_TIMEOUT_S, comment=comment)


def build() -> steps.Graph:
    """The restore-test state machine as an SDK graph (render with `.to_dict()`)."""
    return _RestoreTest().graph()
