"""backup_verifier: the daily backup checks (EventBridge schedule) and the restore-test workflow's steps."""

from hapg import verifier
from hapg.names import Function
from hapg.steps import Step
from hapg.telemetry import lambda_entry


@lambda_entry
def lambda_handler(event, context):
    step = Step.parse(event, verifier.ACTIONS, Function.BACKUP_VERIFIER)
    return verifier.run(step)
