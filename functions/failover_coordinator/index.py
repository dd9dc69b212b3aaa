"""failover_coordinator: validate, plan, promote, status and record steps of the failover workflow."""

from hapg import coordinator
from hapg.names import Function
from hapg.steps import Step
from hapg.telemetry import lambda_entry


@lambda_entry
def lambda_handler(event, context):
    step = Step.parse(event, coordinator.ACTIONS, Function.FAILOVER_COORDINATOR)
    return coordinator.run(step)
