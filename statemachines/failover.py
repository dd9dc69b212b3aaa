"""The failover workflow: validate -> lock -> plan -> drain -> promote -> poll -> restore -> verify
-> record -> notify -> unlock. Any failure after the lock is caught, undone, recorded, notified.
"""

from __future__ import annotations

from hapg.names import Action, Await, Decision, HealthMode, Kind, Outcome, State, Sub, Table, Timing
from hapg.notify import RECORD_FAILED
from stepfunctions import steps
from stepfunctions.steps import Catch, Choice, ChoiceRule, Pass, Wait

from statemachines.asl import Retry, Task, lambda_task, notify_task, record_fallback, sub, transient_retry

ALL = ["States.ALL"]
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


def _coordinator(state_id: str, action: str, result_path: str, **params: str) -> Task:
    task = lambda_task(state_id, Sub.COORDINATOR, {"action": action, **params}, result_path)
    task.add_retry(transient_retry())
    return task


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
            State.VALIDATE, Action.VALIDATE, "$.request", **{"input.$": "$", "execution.$": "$$.Execution.Id"}
        )
        self.is_preflight = Choice(State.ROUTE_KIND)
        self.preflight = _coordinator(State.PREFLIGHT_PLAN, Action.PLAN, "$.plan", **{"request.$": "$.request"})
        self.preflight_done = steps.Succeed(State.PREFLIGHT_DONE, output_path="$.plan")
        self.acquire = Task(
            State.ACQUIRE_LOCK,
            resource="arn:aws:states:::dynamodb:putItem",
            parameters={
                "TableName": sub(Sub.TABLE),
                "Item": {
                    **LOCK_KEY,
                    Table.OWNER: {"S.$": "$$.Execution.Id"},
                    Table.TTL: {"N.$": "$.request.lock.expires_at"},
                    "kind": {"S.$": "$.request.kind"},
                },
                # free, expired, or already ours (a retried put)
                "ConditionExpression": "attribute_not_exists(#pk) OR #exp < :now OR #owner = :me",
                "ExpressionAttributeNames": {"#pk": Table.PK, "#exp": Table.TTL, **OWNER_NAMES},
                "ExpressionAttributeValues": {
                    ":now": {"N.$": "$.request.lock.now"},
                    ":me": {"S.$": "$$.Execution.Id"},
                },
            },
            result_path=None,
        )
        self.acquire.add_retry(_dynamodb_retry())
        self.plan = _coordinator(State.PLAN, Action.PLAN, "$.plan", **{"request.$": "$.request"})
        self.route = Choice(State.ROUTE_DECISION)

    # -- drain, promote, poll, restore, verify ------------------------------------------------
    def _work(self) -> None:
        self.await_aurora = Pass(
            State.AWAIT_AURORA,
            parameters={"called": False, "target": None, "started_at.$": "$.request.started_at"},
            result_path="$.promote",
        )
        self.drain = lambda_task(
            State.DRAIN,
            Sub.DRAINER,
            {"action": Action.DRAIN, "endpoint.$": "$.plan.old_writer_endpoint", "execution.$": "$$.Execution.Id"},
            "$.drain",
        )
        self.drain.add_retry(transient_retry(attempts=2))
        self.promote = _coordinator(State.PROMOTE, Action.PROMOTE, "$.promote", **{"target.$": "$.plan.target"})
        self.is_promoted = Choice(State.PROMOTED)  # promote's own first check saw the new writer
        since = {"target.$": "$.promote.target", "started_at.$": "$.promote.started_at"}
        self.status = _coordinator(State.STATUS, Action.STATUS, "$.status", **since, **{"await": Await.WRITER})
        self.is_complete = Choice(State.IS_COMPLETE)
        self.wait = Wait(State.WAIT, seconds=Timing.WAIT_BETWEEN_POLLS_S)
        # apps are unblocked as soon as the writer is up; verification waits for the replicas too
        self.replicas = _coordinator(State.REPLICAS, Action.STATUS, "$.replicas", **since, **{"await": Await.REPLICAS})
        self.replicas_back = Choice(State.REPLICAS_BACK)
        self.wait_replicas = Wait(State.WAIT_REPLICAS, seconds=Timing.WAIT_BETWEEN_POLLS_S)
        self.restore = lambda_task(State.RESTORE, Sub.DRAINER, {"action": Action.RESTORE}, "$.restore")
        self.restore.add_retry(transient_retry())
        self.verify = lambda_task(
            State.VERIFY,
            Sub.HEALTH,
            {
                "mode": HealthMode.VERIFY,
                "expected_writer.$": "$.replicas.writer",
                "expected_replicas.$": "$.replicas.replicas",
            },
            "$.verify",
        )
        # NotReady: the cluster endpoint's DNS (TTL 5 s) may still point at the old writer
        self.verify.add_retry(transient_retry(attempts=8, interval=2, max_delay=10))

    # -- failure path, record, notify, unlock, result ----------------------------------------
    def _exit(self) -> None:
        self.restore_after = lambda_task(State.RESTORE_AFTER_FAILURE, Sub.DRAINER, {"action": Action.RESTORE}, "$.undo")
        self.restore_after.add_retry(transient_retry(attempts=3))
        self.record = _coordinator(
            State.RECORD, Action.RECORD, "$.report", **{"state.$": "$", "execution.$": "$$.Execution.Id"}
        )
        self.record_failed = record_fallback(
            State.RECORD_FALLBACK, f"Failover workflow {RECORD_FAILED}", Outcome.FAILED
        )
        self.should_notify = Choice(State.SHOULD_NOTIFY)
        self.notify = notify_task(State.NOTIFY, Sub.TOPIC)
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
        self.result = Choice(State.RESULT)
        self.failed = steps.Fail(
            State.FAILED, error="FailoverFailed", cause="The failover did not complete; see the notification."
        )
        self.done = steps.Succeed(State.DONE, output_path="$.report.summary")

    # -- wiring ---------------------------------------------------------------------------------
    def _wire_entry(self) -> None:
        early_failure = Catch(error_equals=ALL, next_step=self.record, result_path="$.error")
        self.validate.next(self.is_preflight)
        self.is_preflight.add_choice(
            ChoiceRule.StringEquals(variable="$.request.kind", value=Kind.PREFLIGHT), self.preflight
        )
        self.is_preflight.default_choice(self.acquire)
        self.preflight.next(self.preflight_done)
        self.acquire.add_catch(Catch(error_equals=LOCK_BUSY, next_step=self.record, result_path="$.lock_error"))
        self.acquire.add_catch(early_failure)
        self.acquire.next(self.plan)
        self.plan.add_catch(early_failure)
        self.plan.next(self.route)
        decision = "$.plan.decision"
        self.route.add_choice(ChoiceRule.StringEquals(variable=decision, value=Decision.PROMOTE), self.drain)
        self.route.add_choice(ChoiceRule.StringEquals(variable=decision, value=Decision.VERIFY_ONLY), self.await_aurora)
        self.route.default_choice(self.record)  # refuse / skip: nothing to do but say why

    def _wire_work(self) -> None:
        late_failure = Catch(error_equals=ALL, next_step=self.restore_after, result_path="$.error")
        for task in (self.drain, self.promote, self.status, self.restore, self.replicas, self.verify):
            task.add_catch(late_failure)
        self.drain.next(self.promote)
        self.promote.next(self.is_promoted)
        self.is_promoted.add_choice(ChoiceRule.BooleanEquals(variable="$.promote.complete", value=True), self.restore)
        self.is_promoted.default_choice(self.status)
        self.await_aurora.next(self.status)
        self.status.next(self.is_complete)
        self.is_complete.add_choice(ChoiceRule.BooleanEquals(variable="$.status.complete", value=True), self.restore)
        self.is_complete.default_choice(self.wait)
        self.wait.next(self.status)
        self.restore.next(self.replicas)
        self.replicas.next(self.replicas_back)
        self.replicas_back.add_choice(ChoiceRule.BooleanEquals(variable="$.replicas.complete", value=True), self.verify)
        self.replicas_back.default_choice(self.wait_replicas)
        self.wait_replicas.next(self.replicas)
        self.verify.next(self.record)

    def _wire_exit(self) -> None:
        self.restore_after.add_catch(Catch(error_equals=ALL, next_step=self.record, result_path="$.restore_error"))
        self.restore_after.next(self.record)
        self.record.add_catch(Catch(error_equals=ALL, next_step=self.record_failed, result_path="$.record_error"))
        self.record.next(self.should_notify)
        self.record_failed.next(self.should_notify)
        self.should_notify.add_choice(ChoiceRule.BooleanEquals(variable="$.report.notify", value=True), self.notify)
        self.should_notify.default_choice(self.release)
        self.notify.add_catch(Catch(error_equals=ALL, next_step=self.release, result_path="$.notify_error"))
        self.notify.next(self.release)
        self.release.add_catch(Catch(error_equals=ALL, next_step=self.result, result_path="$.release_error"))
        self.release.next(self.result)
        self.result.add_choice(ChoiceRule.StringEquals(variable="$.report.outcome", value=Outcome.FAILED), self.failed)
        self.result.default_choice(self.done)


def build() -> steps.Graph:
    """The failover state machine as an SDK graph (render with `.to_dict()`)."""
    return _Failover().graph()
