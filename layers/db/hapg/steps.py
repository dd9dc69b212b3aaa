"""Step inputs from the state machines: `{"action": ..., ...}` parsed and checked, results timed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hapg.errors import InvalidInput
from hapg.models import require_mapping


@dataclass(frozen=True)
class Step:
    action: str
    payload: dict[str, Any]

    @classmethod
    def parse(cls, event: Any, allowed: tuple[str, ...], what: str) -> Step:
        event = require_mapping(event, f"{what} event")
        action = event.get("action")
        if action not in allowed:
            raise InvalidInput(f"{what}: unknown action {action!r}; expected one of {', '.join(allowed)}")
        return cls(action, {k: v for k, v in event.items() if k != "action"})

    def get(self, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
        value = self.payload.get(name)
        if value is None and not required:
            return None
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise InvalidInput(f"{self.action}: field {name!r} must be {_kind_name(kind)}, got {value!r:.80}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def timed(result: dict[str, Any], started: float) -> dict[str, Any]:
    return {**result, "timing": {"started_at": started, "finished_at": time.time()}}
