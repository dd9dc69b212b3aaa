"""`make bench`: every benchmark, one after the other; figures under build/bench/."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.parse_args(argv)
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
    from bench import foundation

    foundation.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
