"""Mermaid diagrams of the rendered ASL, written into docs/architecture.md between markers.

`make render` runs this after rendering the ASL; tests/statemachine/test_diagram.py fails when
the committed diagram no longer matches the committed ASL.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "architecture.md"
SHAPES = {"Choice": ("{", "}"), "Succeed": ("([", "])"), "Fail": ("([", "])"), "Wait": ("[/", "/]")}


def _node(name: str, state: dict) -> str:
    left, right = SHAPES.get(state["Type"], ("[", "]"))
    return f'  {name}{left}"{name}"{right}'


def mermaid(definition: dict) -> str:
    """A top-down flowchart: Next/Default edges solid, Choice rules labelled, Catch edges dotted."""
    lines = ["flowchart TD", f"  start((start)) --> {definition['StartAt']}"]
    states = definition["States"]
    for name, state in states.items():
        lines.append(_node(name, state))
    for name, state in states.items():
        for rule in state.get("Choices", []):
            lines.append(f"  {name} -->|{_label(rule)}| {rule['Next']}")
        if "Default" in state:
            lines.append(f"  {name} -->|otherwise| {state['Default']}")
        if "Next" in state:
            lines.append(f"  {name} --> {state['Next']}")
        for catch in state.get("Catch", []):
            errors = ", ".join(e.split(".")[-1] for e in catch["ErrorEquals"])
            lines.append(f"  {name} -.->|{errors}| {catch['Next']}")
    lines.append("  classDef fail fill:#fdd,stroke:#c33")
    fails = [n for n, s in states.items() if s["Type"] == "Fail"]
    if fails:
        lines.append(f"  class {','.join(fails)} fail")
    return "\n".join(lines)


def _label(rule: dict) -> str:
    var = rule.get("Variable", "").split(".")[-1]
    for op, value in rule.items():
        if op not in ("Variable", "Next"):
            return f"{var} = {json.dumps(value)}".replace('"', "'")
    return var


def block(name: str) -> str:
    definition = json.loads((HERE / f"{name}.asl.json").read_text())
    return f"<!-- BEGIN {name} diagram -->\n```mermaid\n{mermaid(definition)}\n```\n<!-- END {name} diagram -->"


def updated(text: str, name: str) -> str:
    pattern = re.compile(rf"<!-- BEGIN {name} diagram -->.*?<!-- END {name} diagram -->", re.S)
    if not pattern.search(text):
        raise ValueError(f"{DOC} has no '<!-- BEGIN {name} diagram -->' marker")
    return pattern.sub(lambda _: block(name), text)


def main() -> int:
    from statemachines.render import WORKFLOWS

    text = DOC.read_text()
    for name in WORKFLOWS:
        if f"<!-- BEGIN {name} diagram -->" in text:
            text = updated(text, name)
    DOC.write_text(text)
    print(f"wrote diagrams into {DOC.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
