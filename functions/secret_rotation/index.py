"""secret_rotation: Secrets Manager's rotation steps for the master and the application secret."""

from hapg import rotation
from hapg.telemetry import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    request = rotation.RotationRequest.parse(event)
    return rotation.run(request)
