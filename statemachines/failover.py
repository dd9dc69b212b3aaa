"""The failover workflow: validate -> lock -> plan -> drain -> promote -> poll -> restore -> verify
-> record -> notify -> unlock. Any failure after the lock is caught, undone, recorded, notified.
"""

from __future__ import annotations

from functools import partial

from hapg.names import Action, Await, Decision, HealthMode, Kind, State, Sub, Table, Timing
from hapg.names import Result as R
from stepfunctions import steps
from stepfunctions.steps import Catch, Choice, ChoiceRule, Pass, Wait

from statemachines.asl import ALL, Ending, Retry, Task, action_task, lambda_task, poll_loop, sub, transient_retry

LOCK_BUSY = ["DynamoDB.ConditionalCheckFailedException"]
LOCK_KEY = {
    Table.PK: {"S": f"{Table.LOCK_PREFIX}{sub(Sub.CLUSTER)}"},
    Table.SK: {"S": Table.LOCK_SK},
}
OWNER_NAMES = {"#owner": Table.OWNER}


def _dynamodb_retry() -> Retry:
    return Retry(
        error_equals=[
            "DynamoDB.ProvisionedThroughputExceededException",
            "DynamoDB.ThrottlingException",
            "DynamoDB.InternalServerErrorException",
            "DynamoDB.RequestLimitExceeded",
        ],
        interval_seconds=1,
        backoff_rate=2.0,
        max_attempts=4,
        max_delay_seconds=8,
        jitter_strategy="FULL",
    )


_coordinator = partial(action_task, Sub.COORDINATOR)
_drainer = partial(action_task, Sub.DRAINER)


class _Failover:
    """Builds the states (by phase), then wires them; `graph()` returns the SDK graph."""

    def __init__(self) -> None:
        self._entry()
        self._work()
        self._exit()
        self._wire_entry()
        self._wire_work()
        self._wire_exit()

    def graph(self) -> steps.Graph:
        comment = __doc__.strip().splitlines()[0]
        return steps.Graph(self.validate, timeout_seconds=Timing.EXECUTION_TIMEOUT_S, comment=comment)

    # -- entry: validate, preflight, lock, plan --------------------------------------------
    def _entry(self) -> None:
        # no Catch on validate: bad input fails the execution with InvalidInput and its message, pre-lock
        self.validate = _coordinator(
            State.VALIDATE, Action.VALIDATE, R.path(R.REQUEST), **{"input.$": "$", "execution.$": "$$.Execution.Id"}
        )
        self.is_preflight = Choice(State.ROUTE_KIND)
        self.preflight = _coordinator(
            State.PREFLIGHT_PLAN, Action.PLAN, R.path(R.PLAN), **{"request.$": R.path(R.REQUEST)}
        )
        self.preflight_done = steps.Succeed(State.PREFLIGHT_DONE, output_path=R.path(R.PLAN))
        self.acquire = Task(
            State.ACQUIRE_LOCK,
            resource="arn:aws:states:::dynamodb:putItem",
            parameters={
                "TableName": sub(Sub.TABLE),
                "Item": {
                    **LOCK_KEY,
                    Table.OWNER: {"S.$": "$$.Execution.Id"},
                    Table.TTL: {"N.$": R.path(R.REQUEST, "lock", "expires_at")},
                    "kind": {"S.$": R.path(R.REQUEST, "kind")},
                },
                # free, expired, or already ours (a retried put)
                "ConditionExpression": "attribute_not_exists(#pk) OR #exp < :now OR #owner = :me",
                "ExpressionAttributeNames": {"#pk": Table.PK, "#exp": Table.TTL, **OWNER_NAMES},
                "ExpressionAttributeValues": {
                    ":now": {"N.$": R.path(R.REQUEST, "lock", "now")},
                    ":me": {"S.$": "$$.Execution.Id"},
                },
            },
            result_path=None,
        )
        self.acquire.add_retry(_dynamodb_retry())
        self.plan = _coordinator(State.PLAN, Action.PLAN, R.path(R.PLAN), **{"request.$": R.path(R.REQUEST)})
        self.route = Choice(State.ROUTE_DECISION)

    # -- drain, promote, poll, restore, verify ------------------------------------------------
    def _work(self) -> None:
        self.await_aurora = Pass(
            State.AWAIT_AURORA,
            parameters={"called": False, "target": None, "started_at.$": R.path(R.REQUEST, "started_at")},
            result_path=R.path(R.PROMOTE),
        )
        self.drain = _drainer(
            State.DRAIN,
            Action.DRAIN,
            R.path(R.DRAIN),
            attempts=2,
            **{"endpoint.$": R.path(R.PLAN, "old_writer_endpoint"), "execution.$": "$$.Execution.Id"},
        )
        self.promote = _coordinator(
            State.PROMOTE, Action.PROMOTE, R.path(R.PROMOTE), **{"target.$": R.path(R.PLAN, "target")}
        )
        self.is_promoted = Choice(State.PROMOTED)  # promote's own first check saw the new writer
        since = {"target.$": R.path(R.PROMOTE, "target"), "started_at.$": R.path(R.PROMOTE, "started_at")}
        self.status = _coordinator(State.STATUS, Action.STATUS, R.path(R.STATUS), **since, **{"await": Await.WRITER})
        self.is_complete = Choice(State.IS_COMPLETE)
        self.wait = Wait(State.WAIT, seconds=Timing.WAIT_BETWEEN_POLLS_S)
        # apps are unblocked as soon as the writer is up; verification waits for the replicas too
        self.replicas = _coordinator(
            State.REPLICAS, Action.STATUS, R.path(R.REPLICAS), **since, **{"await": Await.REPLICAS}
        )
        self.replicas_back = Choice(State.REPLICAS_BACK)
        self.wait_replicas = Wait(State.WAIT_REPLICAS, seconds=Timing.WAIT_BETWEEN_POLLS_S)
        self.restore = _drainer(State.RESTORE, Action.RESTORE, R.path(R.RESTORE))
        self.verify = lambda_task(
            State.VERIFY,
            Sub.HEALTH,
            {
                "mode": HealthMode.VERIFY,
                "expected_writer.$": R.path(R.REPLICAS, "writer"),
                "expected_replicas.$": R.path(R.REPLICAS, "replicas"),
            },
            R.path(R.VERIFY),
        )
        # NotReady: the cluster endpoint's DNS (TTL 5 s) may still point at the old writer
        self.verify.add_retry(transient_retry(attempts=8, interval=2, max_delay=10))

    # -- failure path, record, notify, unlock, result ----------------------------------------
    def _exit(self) -> None:
        self.restore_after = _drainer(State.RESTORE_AFTER_FAILURE, Action.RESTORE, R.path(R.UNDO), attempts=3)
        self.ending = Ending(
            State, Sub.COORDINATOR, "Failover workflow", "The failover did not complete; see the notification."
        )
        self.record, self.result = self.ending.record, self.ending.result
        self.release = Task(
            State.RELEASE_LOCK,
            resource="arn:aws:states:::dynamodb:deleteItem",
            parameters={
                "TableName": sub(Sub.TABLE),
                "Key": LOCK_KEY,
                "ConditionExpression": "#owner = :me",  # never release someone else's lock
                "ExpressionAttributeNames": OWNER_NAMES,
                "ExpressionAttributeValues": {":me": {"S.$": "$$.Execution.Id"}},
            },
            result_path=None,
        )
        self.release.add_retry(_dynamodb_retry())

    # -- wiring ---------------------------------------------------------------------------------
    def _wire_entry(self) -> None:
        early_failure = Catch(error_equals=ALL, next_step=self.record, result_path=R.path(R.ERROR))
        self.validate.next(self.is_preflight)
        self.is_preflight.add_choice(
            ChoiceRule.StringEquals(variable=R.path(R.REQUEST, "kind"), value=Kind.PREFLIGHT), self.preflight
        )
        self.is_preflight.default_choice(self.acquire)
        self.preflight.next(self.preflight_done)
        self.acquire.add_catch(Catch(error_equals=LOCK_BUSY, next_step=self.record, result_path=R.path(R.LOCK_ERROR)))
        self.acquire.add_catch(early_failure)
        self.acquire.next(self.plan)
        self.plan.add_catch(early_failure)
        self.plan.next(self.route)
        decision = R.path(R.PLAN, "decision")
        self.route.add_choice(ChoiceRule.StringEquals(variable=decision, value=Decision.PROMOTE), self.drain)
        self.route.add_choice(ChoiceRule.StringEquals(variable=decision, value=Decision.VERIFY_ONLY), self.await_aurora)
        self.route.default_choice(self.record)  # refuse / skip: nothing to do but say why

    def _wire_work(self) -> None:
        late_failure = Catch(error_equals=ALL, next_step=self.restore_after, result_path=R.path(R.ERROR))
        for task in (self.drain, self.promote, self.status, self.restore, self.replicas, self.verify):
            task.add_catch(late_failure)
        self.drain.next(self.promote)
        self.promote.next(self.is_promoted)
        self.is_promoted.add_choice(
            ChoiceRule.BooleanEquals(variable=R.path(R.PROMOTE, "complete"), value=True), self.restore
        )
        self.is_promoted.default_choice(self.status)
        self.await_aurora.next(self.status)
        poll_loop(self.status, self.is_complete, self.wait, R.path(R.STATUS, "complete"), self.restore)
        self.restore.next(self.replicas)
        poll_loop(self.replicas, self.replicas_back, self.wait_replicas, R.path(R.REPLICAS, "complete"), self.verify)
        self.verify.next(self.record)

    def _wire_exit(self) -> None:
        self.restore_after.add_catch(
            Catch(error_equals=ALL, next_step=self.record, result_path=R.path(R.RESTORE_ERROR))
        )
        self.restore_after.next(self.record)
        self.ending.wire(after_notify=self.release)
        self.release.add_catch(Catch(error_equals=ALL, next_step=self.result, result_path=R.path(R.RELEASE_ERROR)))
        self.release.next(self.result)


def build() -> steps.Graph:
    """The failover state machine as an SDK graph (render with `.to_dict()`)."""
    return _Failover().graph()
