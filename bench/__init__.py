"""Benchmarks and the fault campaign (`make bench`, `make chaos`). Measurements, not tests."""

import sys
from pathlib import Path

# hapg.names (the shared strings) importable at module level under `python -m bench.<module>` too, as
# statemachines/asl.py does; local.env.prepare() sets up the rest of the process.
_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "db")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)
