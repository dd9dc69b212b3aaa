"""secret_rotation: Secrets Manager's rotation steps for the master and the application secret."""

from hapg import rotation
from hapg.telemetry import lambda_entry


@lambda_entry
def lambda_handler(event, context):
    request = rotation.RotationRequest.parse(event)
    return rotation.run(request)
