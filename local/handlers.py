"""Load functions/<name>/index.py in-process, as the Lambda runtime would, under a unique name."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"


def load(name: str, root: Path | None = None) -> ModuleType:
    """The handler module of function `name` (cached like a warm Lambda container).

    `root` replaces FUNCTIONS (tests load throwaway handlers); its modules are cached under their own names.
    """
    root = FUNCTIONS if root is None else Path(root).resolve()
    module_name = f"hapg_fn_{name}"
    if root != FUNCTIONS:
        module_name += "_" + hashlib.sha256(str(root).encode()).hexdigest()[:12]
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = root / name / "index.py"
    if not path.exists():
        raise FileNotFoundError(f"no handler at {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    """The attributes Powertools reads from the real context object."""

    function_name: str = "hapg-local"
    memory_limit_in_mb: int = 256
    timeout_s: float = 30.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.timeout_s * 1000)


def invoke(name: str, event: dict, timeout_s: float = 30.0) -> dict:
    return load(name).lambda_handler(event, LambdaContext(function_name=f"hapg-local-{name}", timeout_s=timeout_s))
