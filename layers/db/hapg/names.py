"""Every name that crosses a boundary, in one place.

template.yaml, the rendered ASL, the dashboard and the alarms use these same strings;
tests/template and tests/statemachine check that they agree.
"""

PROJECT = "HA-PostgreSQL-Database"
DB_NAME = "financialdb"
APP_NAME_PREFIX = "hapg"  # application_name of every session we open: hapg-<function>
DB_SCHEMA = "hapg"  # our bookkeeping in the database: heartbeat (health), blocked_roles (drain)
AVAILABLE = "available"  # RDS status of a usable cluster, instance or snapshot


class SecretStage:
    """Secrets Manager version stages."""

    CURRENT = "AWSCURRENT"
    PENDING = "AWSPENDING"
    PREVIOUS = "AWSPREVIOUS"


class Env:
    """Environment variables set by template.yaml (Globals + per function)."""

    CLUSTER_ID = "CLUSTER_ID"
    DB_SECRET_ARN = "DB_SECRET_ARN"
    APP_SECRET_ARN = "APP_SECRET_ARN"
    DB_NAME = "DB_NAME"
    DB_WRITER_ENDPOINT = "DB_WRITER_ENDPOINT"
    DB_READER_ENDPOINT = "DB_READER_ENDPOINT"
    DB_PROXY_ENDPOINT = "DB_PROXY_ENDPOINT"
    DB_PROXY_SSL_ROOT_CERT = "DB_PROXY_SSL_ROOT_CERT"
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
    # backup_verifier (restore test; see hapg.backups.BackupSettings)
    DB_CLUSTER_PARAMETER_GROUP = "DB_CLUSTER_PARAMETER_GROUP"
    RESTORE_PREFIX = "RESTORE_PREFIX"
    RESTORE_DEADLINE_S = "RESTORE_DEADLINE_S"
    CLEANUP_DEADLINE_S = "CLEANUP_DEADLINE_S"
    CREDENTIALS_WAIT_S = "CREDENTIALS_WAIT_S"
    RESTORE_KEY_TABLES = "RESTORE_KEY_TABLES"
    RESTORE_SIZE_RATIO_MIN = "RESTORE_SIZE_RATIO_MIN"
    RESTORE_SIZE_RATIO_MAX = "RESTORE_SIZE_RATIO_MAX"
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


class OutcomeLog:
    """The structured line the coordinator logs once per recorded execution (Powertools JSON: these
    keys at top level). The dashboard's "Recent failovers" Logs Insights table selects it by MESSAGE."""

    MESSAGE = "failover outcome"
    OUTCOME = "outcome"
    MODE = "mode"
    KIND = "kind"
    OLD_WRITER = "old_writer"
    NEW_WRITER = "new_writer"
    DURATION_S = "duration_s"
    REASON = "reason"
    EXECUTION = "execution"
    FIELDS = (OUTCOME, MODE, KIND, OLD_WRITER, NEW_WRITER, DURATION_S, REASON, EXECUTION)


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


class Rotation:
    """Secret rotation (hapg.rotation): the app user, password rules and schedule (template.yaml too)."""

    APP_USER = "hapg_app"  # username in the app secret; it alternates with hapg_app_clone
    CLONE_SUFFIX = "_clone"
    GROUP_SUFFIX = "_rw"  # NOLOGIN role holding the app privileges (hapg_app_rw); both logins are members
    PASSWORD_LENGTH = 32
    # Characters that break libpq URIs/DSNs or that RDS rejects in a master password; the secrets'
    # GenerateSecretString and the rotation's GetRandomPassword both leave them out.
    EXCLUDE_CHARACTERS = "\"@/\\:?#[]%' "
    SCHEDULE = "rate(30 days)"  # a rate() window starts at 00:00 UTC ...
    WINDOW = "2h"  # ... and closes at 02:00, before the backup (03:00) and maintenance (Sun 04:30) windows


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
    RESTORE_PREFIX = "RESTORE#"  # restore-test results (backup_verifier record)


class Action:
    """`action` values the state machines send to our functions."""

    VALIDATE = "validate"
    PLAN = "plan"
    PROMOTE = "promote"
    STATUS = "status"
    RECORD = "record"
    DRAIN = "drain"
    RESTORE = "restore"
    # backup_verifier: the daily checks, and the steps of the restore-test workflow
    CHECK = "check"
    SWEEP = "sweep"
    PREPARE = "prepare"
    RESTORE_SNAPSHOT = "restore_snapshot"
    VERIFY = "verify"
    CLEANUP = "cleanup"


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


class Result:
    """Where each workflow step leaves its result in the execution state ($.<key>): the ASL writes
    these keys (ResultPath, Catch), the record steps read them back."""

    REQUEST = "request"
    PLAN = "plan"
    DRAIN = "drain"
    PROMOTE = "promote"
    STATUS = "status"
    REPLICAS = "replicas"
    RESTORE = "restore"
    VERIFY = "verify"
    UNDO = "undo"
    REPORT = "report"
    ERROR = "error"
    LOCK_ERROR = "lock_error"
    RESTORE_ERROR = "restore_error"
    RELEASE_ERROR = "release_error"
    RECORD_ERROR = "record_error"
    NOTIFY_ERROR = "notify_error"
    SWEEP = "sweep"
    PREPARE = "prepare"
    CLEANUP = "cleanup"
    CLEANUP_ERROR = "cleanup_error"

    @staticmethod
    def path(key: str, *fields: str) -> str:
        """The JSONPath of `key` (and a field inside it): path(PLAN, "target") == "$.plan.target"."""
        return "$." + ".".join((key, *fields))


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
    PROMOTED = "IsPromoted"
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
    FAILED_ERROR = "FailoverFailed"  # the Fail state's Error: what a failed execution reports as its error


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
    MAX_LAG_MS = 1000  # default: the planner refuses a target lagging more; the lag alarm's threshold


class Backup:
    """Backup verification: the daily checks' limits, the restore test's tags and timings (seconds)."""

    MAX_SNAPSHOT_AGE_H = 26  # one automated snapshot a day, plus 2 h of slack
    MAX_PITR_LAG_S = 600  # LatestRestorableTime within 10 minutes of now
    TAG_RUN = "hapg:restore-test"  # value: the run id; marks a temporary restore-test resource
    TAG_SOURCE = "hapg:restore-source"  # value: the source cluster id; the IAM conditions match it
    DEFAULT_INSTANCE_CLASS = "db.t4g.medium"
    RESTORE_DEADLINE_S = 7200  # restore call -> cluster and instance available
    CLEANUP_DEADLINE_S = 2700  # first delete -> instance and cluster gone (also for leftovers)
    CREDENTIALS_WAIT_S = 300  # new master password set -> it logs in (inside one verify call)
    WAIT_RESTORE_S = 60  # ASL Wait between restore status polls
    WAIT_CLEANUP_S = 30  # ASL Wait between deletion polls
    # One restore test at a time: validate takes a lease (RESTORE#<cluster> / lease in the state
    # table), every later step renews it. Longer than the longest gap between two steps (a verify
    # call, 900 s, plus retry back-off), so only a dead run's lease expires; its cluster is then a
    # leftover for the next run to delete.
    LEASE_S = 1800
    LEASE_SK = "lease"
    # Backstop only: longer than every deadline above added up (with verify's retries), so the
    # deadlines always fire first and the Catch path (cleanup, record, notify) always runs.
    EXECUTION_TIMEOUT_S = 6 * 3600


class BackupState:
    """Restore-test state machine state names (ASL, timeline, docs)."""

    VALIDATE = "ValidateRequest"
    SWEEP = "SweepLeftovers"
    SWEPT = "AreLeftoversGone"
    WAIT_SWEEP = "WaitForLeftovers"
    PREPARE = "PrepareRestore"
    RESTORE = "RestoreSnapshot"
    STATUS = "CheckRestore"
    AVAILABLE = "IsRestoreAvailable"
    WAIT_RESTORE = "WaitForRestore"
    VERIFY = "VerifyRestore"
    BEGIN_CLEANUP = "BeginCleanup"
    CLEANUP = "Cleanup"
    CLEANED = "IsCleanupDone"
    WAIT_CLEANUP = "WaitForCleanup"
    RECORD = "RecordResult"
    RECORD_FALLBACK = "RecordFailed"
    SHOULD_NOTIFY = "ShouldNotify"
    NOTIFY = "Notify"
    RESULT = "Result"
    DONE = "Done"
    FAILED = "RestoreTestFailed"
    FAILED_ERROR = "RestoreTestFailed"  # the Fail state's Error: what a failed execution reports as its error
