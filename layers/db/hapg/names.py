"""Every name that crosses a boundary, in one place.

template.yaml, the rendered ASL, the dashboard and the alarms use these same strings;
tests/template and tests/statemachine check that they agree.
"""

PROJECT = "HA-PostgreSQL-Database"
DB_NAME = "financialdb"
APP_NAME_PREFIX = "hapg"  # application_name of every session we open: hapg-<function>


class Env:
    """Environment variables set by template.yaml (Globals + per function)."""

    CLUSTER_ID = "CLUSTER_ID"
    DB_SECRET_ARN = "DB_SECRET_ARN"
    APP_SECRET_ARN = "APP_SECRET_ARN"
    DB_NAME = "DB_NAME"
    DB_WRITER_ENDPOINT = "DB_WRITER_ENDPOINT"
    DB_READER_ENDPOINT = "DB_READER_ENDPOINT"
    DB_PROXY_ENDPOINT = "DB_PROXY_ENDPOINT"
    DB_PORT = "DB_PORT"
    DB_SSLMODE = "DB_SSLMODE"
    DB_SSL_ROOT_CERT = "DB_SSL_ROOT_CERT"
    DB_CONNECT_TIMEOUT = "DB_CONNECT_TIMEOUT"
    DB_STATEMENT_TIMEOUT_MS = "DB_STATEMENT_TIMEOUT_MS"
    STATE_TABLE = "STATE_TABLE"
    ALERT_TOPIC_ARN = "ALERT_TOPIC_ARN"
    MAX_LAG_MS = "MAX_LAG_MS"
    FAILOVER_COOLDOWN_S = "FAILOVER_COOLDOWN_S"
    DRAIN_GRACE_S = "DRAIN_GRACE_S"
    SECRET_CACHE_TTL_S = "SECRET_CACHE_TTL_S"
    BACKUP_RETENTION_DAYS = "BACKUP_RETENTION_DAYS"
    BACKUP_KMS_KEY_ARN = "BACKUP_KMS_KEY_ARN"
    DB_SUBNET_GROUP = "DB_SUBNET_GROUP"
    DB_SECURITY_GROUP_ID = "DB_SECURITY_GROUP_ID"
    RESTORE_INSTANCE_CLASS = "RESTORE_INSTANCE_CLASS"
    METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"


class Metric:
    """Custom metrics (EMF). Namespace and dimension are shared by every function."""

    NAMESPACE = "HAPostgreSQL"
    DIM_CLUSTER = "ClusterId"
    DIM_INSTANCE = "InstanceId"

    # health_checker
    HEALTHY = "WriterHealthy"
    HEALTH_CHECK_FAILED = "HealthCheckFailed"
    WRITE_PROBE_LATENCY = "WriteProbeLatencyMs"
    READER_HEALTHY = "ReaderHealthy"
    REPLICA_LAG = "ReplicaLagMs"  # per instance (DIM_INSTANCE)
    REPLICA_LAG_MAX = "ReplicaLagMaxMs"
    CONNECTIONS_ACTIVE = "ConnectionsActive"
    CONNECTIONS_IDLE = "ConnectionsIdle"
    CONNECTIONS_IDLE_IN_TX = "ConnectionsIdleInTransaction"
    CONNECTIONS_PCT_MAX = "ConnectionsPercentOfMax"
    TPS = "TransactionsPerSecond"
    AUTOMATION_PAUSED = "AutomationPaused"

    # failover workflow
    SWITCHOVERS = "Switchovers"
    FAILOVERS = "Failovers"
    FAILOVER_DURATION = "FailoverDurationSeconds"
    CONNECTIONS_TERMINATED = "ConnectionsTerminated"
    DRAIN_DURATION = "DrainDurationMs"

    # backup_verifier
    BACKUP_AGE = "BackupAgeHours"
    PITR_LAG = "PitrLagSeconds"
    RESTORE_SUCCEEDED = "RestoreTestSucceeded"
    RESTORE_DURATION = "RestoreDurationSeconds"

    # secret_rotation
    ROTATION_SUCCEEDED = "SecretRotationSucceeded"


class Function:
    """Logical function names: folder under functions/, Powertools service, name suffix."""

    HEALTH_CHECKER = "health_checker"
    FAILOVER_COORDINATOR = "failover_coordinator"
    CONNECTION_DRAINER = "connection_drainer"
    SECRET_ROTATION = "secret_rotation"
    BACKUP_VERIFIER = "backup_verifier"

    ALL = (HEALTH_CHECKER, FAILOVER_COORDINATOR, CONNECTION_DRAINER, SECRET_ROTATION, BACKUP_VERIFIER)

    @staticmethod
    def resource_suffix(name: str) -> str:
        """health_checker -> health-checker, as in <prefix>-health-checker."""
        return name.replace("_", "-")


class HealthMode:
    SCHEDULED = "scheduled"
    VERIFY = "verify"
    ALL = (SCHEDULED, VERIFY)


class Table:
    """DynamoDB state table: lock, history, control flags (one table, composite key)."""

    PK = "pk"
    SK = "sk"
    TTL = "expires_at"
    OWNER = "owner"
    LOCK_SK = "lock"
    LOCK_PREFIX = "LOCK#"
    HISTORY_PREFIX = "HISTORY#"
    CONTROL_PREFIX = "CONTROL#"
    MAINTENANCE_SK = "maintenance"
