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
    LOCK_TTL_S = "LOCK_TTL_S"
    PROMOTE_DEADLINE_S = "PROMOTE_DEADLINE_S"
    STATUS_POLL_INTERVAL_S = "STATUS_POLL_INTERVAL_S"
    STATUS_POLL_WINDOW_S = "STATUS_POLL_WINDOW_S"
    STALE_EVENT_S = "STALE_EVENT_S"
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
    PROXY_HEALTHY = "ProxyHealthy"  # only when RDS Proxy is enabled
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


class Action:
    """`action` values the state machines send to our functions."""

    VALIDATE = "validate"
    PLAN = "plan"
    PROMOTE = "promote"
    STATUS = "status"
    RECORD = "record"
    DRAIN = "drain"
    RESTORE = "restore"


class Await:
    """What a `status` step waits for."""

    WRITER = "writer"  # the target is the writer and available: apps may come back
    REPLICAS = "replicas"  # ... and every member is available again: verify redundancy
    ALL = (WRITER, REPLICAS)


class Kind:
    """What started a failover execution."""

    SWITCHOVER = "switchover"  # console, CLI or schedule
    PREFLIGHT = "preflight"  # plan and report only
    EVENT = "event"  # an RDS failover event via EventBridge
    MANUAL = (SWITCHOVER, PREFLIGHT)


class Mode:
    """How a failover proceeds once planned."""

    SWITCHOVER = "switchover"  # planned: drain, promote, verify
    TAKEOVER = "takeover"  # the writer is down and Aurora is not failing over: we promote
    AURORA = "aurora"  # Aurora is failing over (or did): wait, verify, report
    PREFLIGHT = "preflight"


class Decision:
    PROMOTE = "promote"
    VERIFY_ONLY = "verify_only"
    REFUSE = "refuse"
    SKIP = "skip"


class Outcome:
    SUCCEEDED = "succeeded"  # promoted (or verified Aurora's failover) and verified
    VERIFIED = "verified"  # Aurora did the failover; we verified it
    REFUSED = "refused"
    SKIPPED = "skipped"
    FAILED = "failed"
    PLANNED = "planned"  # preflight


class RdsEvent:
    """Aurora cluster failover events (source aws.rds, detail-type RDS DB Cluster Event)."""

    SOURCE = "aws.rds"
    DETAIL_TYPE = "RDS DB Cluster Event"
    FAILED = "RDS-EVENT-0069"
    PROMOTING_PREVIOUS = "RDS-EVENT-0070"
    COMPLETED = "RDS-EVENT-0071"
    STARTED_SAME_AZ = "RDS-EVENT-0072"
    STARTED_CROSS_AZ = "RDS-EVENT-0073"
    FAILOVER_IDS = (FAILED, PROMOTING_PREVIOUS, COMPLETED, STARTED_SAME_AZ, STARTED_CROSS_AZ)


class State:
    """Failover state machine state names (ASL, timeline, dashboard)."""

    VALIDATE = "ValidateInput"
    ROUTE_KIND = "IsPreflight"
    PREFLIGHT_PLAN = "PreflightPlan"
    PREFLIGHT_DONE = "PreflightDone"
    ACQUIRE_LOCK = "AcquireLock"
    LOCK_BUSY = "LockBusy"
    PLAN = "Plan"
    ROUTE_DECISION = "RouteDecision"
    DRAIN = "DrainConnections"
    PROMOTE = "Promote"
    STATUS = "CheckPromotion"
    IS_COMPLETE = "IsPromotionComplete"
    WAIT = "WaitForPromotion"
    REPLICAS = "CheckReplicas"
    REPLICAS_BACK = "AreReplicasBack"
    WAIT_REPLICAS = "WaitForReplicas"
    RESTORE = "RestoreConnections"
    VERIFY = "Verify"
    RESTORE_AFTER_FAILURE = "RestoreConnectionsAfterFailure"
    RECORD = "RecordHistory"
    RECORD_FALLBACK = "RecordFailed"
    SHOULD_NOTIFY = "ShouldNotify"
    NOTIFY = "Notify"
    RELEASE_LOCK = "ReleaseLock"
    AWAIT_AURORA = "AwaitAurora"
    RESULT = "Result"
    DONE = "Done"
    FAILED = "FailoverFailed"


class Sub:
    """DefinitionSubstitutions keys: template.yaml fills them, the local executor too."""

    COORDINATOR = "FailoverCoordinatorArn"
    DRAINER = "ConnectionDrainerArn"
    HEALTH = "HealthCheckerArn"
    BACKUP = "BackupVerifierArn"
    TABLE = "StateTableName"
    TOPIC = "AlertTopicArn"
    CLUSTER = "ClusterId"


class Timing:
    """Durations the ASL, the lock and the coordinator must agree on (seconds)."""

    EXECUTION_TIMEOUT_S = 840  # state machine TimeoutSeconds
    LOCK_TTL_S = 900  # > execution timeout: a live execution never loses its lock
    PROMOTE_DEADLINE_S = 300  # promote -> new writer available, else PromotionTimedOut
    STATUS_POLL_WINDOW_S = 20  # one `status` call long-polls this long at most
    WAIT_BETWEEN_POLLS_S = 1  # ASL Wait between status calls (issue: <= 2 s)
