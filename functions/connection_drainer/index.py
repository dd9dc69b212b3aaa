"""connection_drainer: drain the writer before a switchover; undo the block after it."""

from hapg import drain
from hapg.steps import Step
from hapg.telemetry import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    step = Step.parse(event, drain.ACTIONS, "connection_drainer")
    return drain.run(step)
