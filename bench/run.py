"""`make bench`: every benchmark, one after the other; figures under build/bench/."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT / "layers" / "db"), str(ROOT)]
    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",  # noqa: S105 - moto only
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message="No application metrics")
    import contextlib

    from bench import foundation, switchover

    foundation.main()
    with open(ROOT / "build" / "bench" / "functions.log", "w") as logs, contextlib.redirect_stdout(logs):
        result = switchover.run(args.runs)
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_run",)}, indent=2))
    return 0 if result["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
