"""The process a `make rehearse`, `make run-local`, `make bench` or `make chaos` run lives in: the layer
importable, moto's fake credentials, Powertools quiet, and a SIGTERM (timeout, Ctrl-C in another
shell) that still runs every `finally`, where the processes a run started are stopped by PID."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prepare(credentials: str, log_level: str, ignore_warnings: str = "", metrics: bool = False) -> None:
    """`ignore_warnings`: the message (regex) of the warnings to silence; "" silences them all.
    `metrics`: let Powertools print its EMF lines (the rehearsal's function log shows them)."""
    sys.path[:0] = [str(ROOT / "layers" / "db"), str(ROOT)]
    for key, value in {
        "AWS_ACCESS_KEY_ID": credentials,
        "AWS_SECRET_ACCESS_KEY": credentials,
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": log_level,
        **({} if metrics else {"POWERTOOLS_METRICS_DISABLED": "true"}),
    }.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message=ignore_warnings)
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
