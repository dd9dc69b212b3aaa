"""backup_verifier: the daily backup checks (EventBridge schedule) and the restore-test workflow's steps."""

from hapg import verifier
from hapg.steps import Step
from hapg.telemetry import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    step = Step.parse(event, verifier.ACTIONS, "backup_verifier")
    return verifier.run(step)
