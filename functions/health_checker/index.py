"""health_checker: every minute (scheduled) and on demand from the failover workflow (verify)."""

from hapg import health, runtime
from hapg.models import HealthRequest
from hapg.names import Function
from hapg.telemetry import lambda_entry


@lambda_entry
def lambda_handler(event, context):
    request = HealthRequest.parse(event)
    report = health.run(
        request, lambda: runtime.database(Function.HEALTH_CHECKER), runtime.settings, runtime.proxy_credentials
    )
    return report.to_dict()
