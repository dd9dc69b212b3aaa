"""The whole product on this machine: a real PostgreSQL pair + moto (RDS, DynamoDB, SNS, Secrets
Manager, Step Functions) + the rendered ASL + our real handlers in-process.

Only the cluster port is swapped (local/cluster.py for hapg.aurora); every other line that runs
is the code that ships. Used by `make rehearse`, `make run-local`, the tests, bench and chaos.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from hapg import health, runtime
from hapg.aurora import AuroraCluster
from hapg.history import StateTable
from hapg.names import DB_NAME, Env, Function, Metric, RdsEvent, Rotation, Sub, Table

from local.cluster import LocalCluster
from local.executor import ExecutionResult, Invocation, LocalExecutor
from local.pgnode import ADMIN_USER
from local.pgpair import PgPair
from local.workload import WorkloadConfig, bootstrap

ROOT = Path(__file__).resolve().parent.parent
FAILOVER_ASL = ROOT / "statemachines" / "failover.asl.json"
# Named like the `dev` deployment, so console inputs and events/ fixtures run here unchanged.
CLUSTER_ID = "hapg-dev-cluster"
NODES = ("hapg-dev-writer", "hapg-dev-reader-1")
APP_USER = Rotation.APP_USER  # the workload's login, as the app secret's user
FUNCTION_TIMEOUTS = {
    Function.FAILOVER_COORDINATOR: 300,
    Function.CONNECTION_DRAINER: 60,
    Function.HEALTH_CHECKER: 30,
}


@dataclass
class StackOptions:
    fast: bool = False  # scale Wait/Retry sleeps (tests); the rehearsal keeps real waits
    sync: bool = True  # synchronous replication (remote_apply), as Aurora's quorum storage
    env: dict[str, str] = field(default_factory=dict)  # extra function environment (e.g. short TTLs)


class LocalStack:
    def __init__(self, options: StackOptions | None = None):
        self.options = options or StackOptions()
        self.pair = PgPair(NODES, sync=self.options.sync, prefix="hapg-local-")
        self.app_password = os.urandom(12).hex()
        self.executor = LocalExecutor(fast=self.options.fast)
        self._saved_env: dict[str, str | None] = {}
        self.cluster: LocalCluster | None = None
        self.state_machine = ""
        self.arns: dict[str, str] = {}
        self._captured: Any = None
        self._seen = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        try:
            self.pair.start(DB_NAME)
            self._bootstrap_database()
            self.executor.__enter__()
            self._create_aws()
            self._set_env()
            runtime.reset()
            self.cluster = LocalCluster(self.pair, self.aurora())
            runtime.override(cluster=self.cluster)
            self._create_workflow()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.cluster:
                self.cluster.wait_rejoined(30)
                self.cluster.close()
            self.executor.__exit__(None, None, None)
        finally:
            runtime.reset()
            self._restore_env()
            self.pair.stop()

    # -- setup ---------------------------------------------------------------------------------
    def _bootstrap_database(self) -> None:
        bootstrap(self.pair.primary, APP_USER, self.app_password, DB_NAME)

    def _create_aws(self) -> None:
        secret = {"username": ADMIN_USER, "password": self.pair.sandbox.admin_password, "engine": "postgres"}
        sm = boto3.client("secretsmanager")
        self.secret_arn = sm.create_secret(Name=f"{CLUSTER_ID}/master", SecretString=json.dumps(secret))["ARN"]
        self.table = f"{CLUSTER_ID}-state"
        boto3.client("dynamodb").create_table(
            TableName=self.table,
            KeySchema=[{"AttributeName": Table.PK, "KeyType": "HASH"}, {"AttributeName": Table.SK, "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": Table.PK, "AttributeType": "S"},
                {"AttributeName": Table.SK, "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self.topic_arn = boto3.client("sns").create_topic(Name=f"{CLUSTER_ID}-alerts")["TopicArn"]
        self._captured = self.executor.capture_topic(self.topic_arn)
        rds = boto3.client("rds")
        rds.create_db_cluster(
            DBClusterIdentifier=CLUSTER_ID,
            Engine="aurora-postgresql",
            EngineVersion="15.10",
            MasterUsername=ADMIN_USER,
            MasterUserPassword="not-used-locally",
            DatabaseName=DB_NAME,
        )
        for tier, name in enumerate(NODES):
            rds.create_db_instance(
                DBInstanceIdentifier=name,
                DBClusterIdentifier=CLUSTER_ID,
                Engine="aurora-postgresql",
                DBInstanceClass="db.r6g.large",
                PromotionTier=tier,
            )

    def function_env(self) -> dict[str, str]:
        hosts = ",".join(n.endpoint.host for n in self.pair.nodes)
        ports = ",".join(str(n.port) for n in self.pair.nodes)
        endpoint = f"{hosts}:{ports}"  # libpq multi-host: the cluster endpoint follows the writer
        return {
            Env.CLUSTER_ID: CLUSTER_ID,
            Env.DB_SECRET_ARN: self.secret_arn,
            Env.DB_NAME: DB_NAME,
            Env.DB_WRITER_ENDPOINT: endpoint,
            Env.DB_READER_ENDPOINT: endpoint,
            Env.DB_SSL_ROOT_CERT: str(self.pair.sandbox.tls.ca_cert),
            Env.DB_CONNECT_TIMEOUT: "2",
            Env.STATE_TABLE: self.table,
            Env.ALERT_TOPIC_ARN: self.topic_arn,
            Env.METRICS_NAMESPACE: Metric.NAMESPACE,
            Env.STATUS_POLL_INTERVAL_S: "0.02",
            Env.DRAIN_GRACE_S: "2",
            Env.PROMOTE_DEADLINE_S: "60",
            Env.FAILOVER_COOLDOWN_S: "0",
            **self.options.env,
        }

    def configure(self, **env: str) -> None:
        """Change function settings mid-stack (e.g. a short deadline): like redeploying the env."""
        self.options.env.update(env)
        self._set_env()
        runtime.reset()
        runtime.override(cluster=self.cluster)

    def _set_env(self) -> None:
        for key, value in self.function_env().items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def aurora(self) -> AuroraCluster:
        return AuroraCluster(
            CLUSTER_ID, lag_source=lambda: health.replica_lags(runtime.database(Function.FAILOVER_COORDINATOR))
        )

    def _create_workflow(self) -> None:
        for fn, timeout in FUNCTION_TIMEOUTS.items():
            self.arns[fn] = self.executor.add_function(fn, fn, timeout_s=timeout)
        self.state_machine = self.executor.create_state_machine(
            f"{CLUSTER_ID}-failover",
            FAILOVER_ASL,
            {
                Sub.COORDINATOR: self.arns[Function.FAILOVER_COORDINATOR],
                Sub.DRAINER: self.arns[Function.CONNECTION_DRAINER],
                Sub.HEALTH: self.arns[Function.HEALTH_CHECKER],
                Sub.TABLE: self.table,
                Sub.TOPIC: self.topic_arn,
                Sub.CLUSTER: CLUSTER_ID,
            },
        )

    # -- use -------------------------------------------------------------------------------------
    def run(self, execution_input: dict[str, Any], name: str | None = None, timeout_s: float = 180) -> ExecutionResult:
        return self.executor.run(self.state_machine, execution_input, name=name, timeout_s=timeout_s)

    def start(self, execution_input: dict[str, Any], name: str | None = None) -> str:
        return self.executor.start(self.state_machine, execution_input, name=name)

    def workload_config(self, threads: int = 20) -> WorkloadConfig:
        env = self.function_env()
        host, port = env[Env.DB_WRITER_ENDPOINT].rsplit(":", 1)
        return WorkloadConfig(host, port, APP_USER, self.app_password, env[Env.DB_SSL_ROOT_CERT], DB_NAME, threads)

    def wait_lag_measured(self, timeout: float = 15) -> None:
        """Until the writer reports a replay lag for every standby. Right after load starts PostgreSQL
        has none yet, and the planner rightly refuses to promote a replica whose lag is unknown."""
        db = runtime.database(Function.FAILOVER_COORDINATOR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lags = health.replica_lags(db)
            if lags and all(v is not None for v in lags.values()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"replica lag still unknown after {timeout}s")

    def notifications(self) -> list[dict[str, Any]]:
        """Notifications published since the previous call (as an email inbox would show them)."""
        everything = self._captured()
        new, self._seen = everything[self._seen :], len(everything)
        return new

    def writer(self):
        """The PgNode that is the writer now (per the cluster port)."""
        return self.cluster.writer_node()

    def history(self) -> list[dict[str, Any]]:
        return [r.__dict__ for r in StateTable(self.table, CLUSTER_ID).recent(50)]

    def lock_owner(self, now: float | None = None) -> str | None:
        """The execution holding the failover lock at `now` (default: now), None when free or expired."""
        return StateTable(self.table, CLUSTER_ID).lock_owner(now)

    def lock_item(self) -> dict[str, Any] | None:
        """The lock item as DynamoDB stores it (attribute names: names.Table), None when there is none."""
        key = {Table.PK: {"S": f"{Table.LOCK_PREFIX}{CLUSTER_ID}"}, Table.SK: {"S": Table.LOCK_SK}}
        return boto3.client("dynamodb").get_item(TableName=self.table, Key=key).get("Item")

    def set_maintenance(self, enabled: bool) -> None:
        item = {
            Table.PK: {"S": f"{Table.CONTROL_PREFIX}{CLUSTER_ID}"},
            Table.SK: {"S": Table.MAINTENANCE_SK},
            "enabled": {"BOOL": enabled},
            "set_by": {"S": "local"},
        }
        boto3.client("dynamodb").put_item(TableName=self.table, Item=item)


def rds_event(code: str, at: float | None = None, event_id: str | None = None) -> dict[str, Any]:
    """An Aurora failover event exactly as EventBridge delivers it (bare SourceIdentifier)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at or time.time()))
    arn = f"arn:aws:rds:us-east-1:123456789012:cluster:{CLUSTER_ID}"
    return {
        "version": "0",
        "id": event_id or f"evt-{code}-{int((at or time.time()) * 1000)}",
        "detail-type": RdsEvent.DETAIL_TYPE,
        "source": RdsEvent.SOURCE,
        "account": "123456789012",
        "time": when,
        "region": "us-east-1",
        "resources": [arn],
        "detail": {
            "EventCategories": ["failover"],
            "SourceType": "CLUSTER",
            "SourceArn": arn,
            "Date": when,
            "Message": "Started cross AZ failover to DB instance",
            "SourceIdentifier": CLUSTER_ID,
            "EventID": code,
        },
    }


def promotes(executor: LocalExecutor) -> list[Invocation]:
    """The handler calls that really promoted (their result says `called`), in invocation order."""
    return [i for i in executor.invocations() if isinstance(i.result, dict) and i.result.get("called")]
