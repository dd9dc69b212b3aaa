"""connection_drainer: drain the writer before a switchover; undo the block after it."""

from hapg import drain
from hapg.names import Function
from hapg.steps import Step
from hapg.telemetry import lambda_entry


@lambda_entry
def lambda_handler(event, context):
    step = Step.parse(event, drain.ACTIONS, Function.CONNECTION_DRAINER)
    return drain.run(step)
