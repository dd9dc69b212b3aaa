"""Metrics carry exactly names.Metric's dimensions in a deployed function.

template.yaml sets POWERTOOLS_SERVICE_NAME per function, and Powertools reads it when hapg.telemetry
is imported: a fresh interpreter with that environment is the only faithful reproduction (this
process imported telemetry long ago, without it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hapg.names import Metric

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
from hapg import telemetry
telemetry.emit("c1", {"WriterHealthy": (1.0, "Count"), "Skipped": (None, "Count")})
telemetry.metrics.flush_metrics()
telemetry.emit_per_instance("c1", "ReplicaLagMs", "Milliseconds", {"r1": 3.0, "r2": 4.5})
"""


def test_deployed_functions_emit_no_service_dimension():
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "layers" / "db"),
        "POWERTOOLS_SERVICE_NAME": "health_checker",
        "POWERTOOLS_METRICS_NAMESPACE": Metric.NAMESPACE,
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    dims = [
        (r["_aws"]["CloudWatchMetrics"][0]["Dimensions"], r["_aws"]["CloudWatchMetrics"][0]["Namespace"])
        for r in records
    ]
    assert dims == [
        ([[Metric.DIM_CLUSTER]], Metric.NAMESPACE),
        ([[Metric.DIM_CLUSTER, Metric.DIM_INSTANCE]], Metric.NAMESPACE),
        ([[Metric.DIM_CLUSTER, Metric.DIM_INSTANCE]], Metric.NAMESPACE),
    ]
    assert [r.get(Metric.DIM_INSTANCE) for r in records] == [None, "r1", "r2"]
    assert all("service" not in r for r in records)
    assert "Skipped" not in records[0]  # None is not emitted as 0
