"""failover_coordinator: validate, plan, promote, status and record steps of the failover workflow."""

from hapg import coordinator
from hapg.steps import Step
from hapg.telemetry import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    step = Step.parse(event, coordinator.ACTIONS, "failover_coordinator")
    return coordinator.run(step)
