"""Render every workflow to statemachines/<name>.asl.json (`make render`; a test diffs them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from statemachines import backup, failover

HERE = Path(__file__).resolve().parent
WORKFLOWS = {"failover": failover.build, "backup_verification": backup.build}


def render(name: str) -> str:
    return json.dumps(WORKFLOWS[name]().to_dict(), indent=2) + "\n"


def path(name: str) -> Path:
    return HERE / f"{name}.asl.json"


def main() -> int:
    for name in WORKFLOWS:
        path(name).write_text(render(name))
        print(f"wrote {path(name).relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
