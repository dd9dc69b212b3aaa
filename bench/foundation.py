"""Foundation figures -> build/bench/foundation.json.

- health checker warm run against a local pair (median of warm invocations)
- each handler's cold import time, in a fresh interpreter that sees only the built layer
- the built layer's unzipped size
- `sam build` time (clean and cached)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
LAYER = BUILD / "DbLayer" / "python"
AIMS = {"health_warm_ms": 50, "cold_import_ms": 300, "layer_mb": 40}
COLD_IMPORT_RUNS = 5
IMPORT_PROBE = """
import sys, time
sys.path[:0] = [{layer!r}, {fn!r}]
t = time.perf_counter()
import index
print((time.perf_counter() - t) * 1000)
"""


def sam_build() -> dict[str, float]:
    sam = str(ROOT / ".venv" / "bin" / "sam")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    shutil.rmtree(ROOT / ".aws-sam", ignore_errors=True)
    out = {}
    for label, args in (("clean_s", []), ("cached_s", ["--cached"])):
        t = time.perf_counter()
        subprocess.run([sam, "build", "--parallel", *args], cwd=ROOT, env=env, check=True, capture_output=True)
        out[label] = round(time.perf_counter() - t, 2)
    return out


def layer_size_mb() -> float:
    total = sum(p.stat().st_size for p in LAYER.rglob("*") if p.is_file())
    return round(total / 1_000_000, 1)


def cold_imports(runs: int = COLD_IMPORT_RUNS) -> dict[str, float]:
    """Median import time of functions/<name>/index.py, site-packages hidden (-S): layer only."""
    out = {}
    for fn_dir in sorted((ROOT / "functions").iterdir()):
        if not (fn_dir / "index.py").exists():
            continue
        code = IMPORT_PROBE.format(layer=str(LAYER), fn=str(fn_dir))
        env = {"PATH": os.environ["PATH"], "POWERTOOLS_SERVICE_NAME": fn_dir.name, "AWS_DEFAULT_REGION": "us-east-1"}
        times = []
        for _ in range(runs):
            proc = subprocess.run(
                [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True
            )
            times.append(float(proc.stdout.strip().splitlines()[-1]))
        out[fn_dir.name] = round(statistics.median(times), 1)
    return out


def health_warm(runs: int = 20) -> dict[str, float]:
    from hapg import runtime
    from moto import mock_aws

    from local import handlers
    from local.pgpair import PgPair

    sys.path.insert(0, str(ROOT / "tests"))
    from support import make_secret, pair_env

    pair = PgPair(prefix="hapg-bench-").start()
    try:
        with mock_aws():
            os.environ.update(pair_env(pair, make_secret(pair.sandbox)))
            runtime.reset()
            times = []
            quiet = contextlib.redirect_stdout(io.StringIO())  # the checker's EMF lines
            for _ in range(runs + 1):
                t = time.perf_counter()
                with quiet:
                    result = handlers.invoke("health_checker", {"mode": "scheduled"})
                times.append((time.perf_counter() - t) * 1000)
                assert result["healthy"], result["reason"]
            runtime.reset()
    finally:
        pair.stop()
    warm = times[1:]
    return {
        "first_ms": round(times[0], 1),
        "warm_median_ms": round(statistics.median(warm), 1),
        "warm_p90_ms": round(sorted(warm)[int(len(warm) * 0.9) - 1], 1),
        "runs": runs,
    }


def main() -> dict:
    build = sam_build()
    figures = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "sam_build": build,
        "layer_unzipped_mb": layer_size_mb(),
        "cold_import_ms": cold_imports(COLD_IMPORT_RUNS),
        "cold_import_runs": COLD_IMPORT_RUNS,
        "health_check": health_warm(),
        "aims": AIMS,
    }
    out = ROOT / "build" / "bench" / "foundation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
