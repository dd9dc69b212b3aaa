"""`make render`: write the generated blocks of template.yaml, the runbook's alarm table and docs/dashboard.png.

    python -m observability.render          # rewrite what is stale
    python -m observability.render --check  # exit 1 if anything is stale (CI-style)

template.yaml holds two generated blocks between marker comments: the alarm threshold Parameters and
the Observability resources (alarms + dashboard). Everything outside the markers is hand-written and
never touched. The YAML written is parsed back and compared with the intended CloudFormation before
anything is saved, and the PNG carries a hash of the layout it shows, so its freshness is checked
without comparing pixels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from observability import alarms, dashboard
from observability.catalog import HAS_SECOND_READER
from observability.cfn import to_cfn, to_yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
PICTURE = ROOT / "docs" / "dashboard.png"
HOW = "make render; edit observability/*.py, not this block"
BLOCKS = {
    "observability parameters": 2,  # indentation of the block's keys
    "observability resources": 2,
}


def begin(block: str) -> str:
    return f"# >>> BEGIN generated: {block} ({HOW})"


def end(block: str) -> str:
    return f"# <<< END generated: {block}"


def parameters() -> dict[str, Any]:
    return {t.name: t.parameter() for t in alarms.THRESHOLDS}


def resources() -> dict[str, Any]:
    out: dict[str, Any] = {a.logical_id: a.resource() for a in alarms.build()}
    out["OperationsDashboard"] = dashboard.resource()
    return out


def content() -> dict[str, dict[str, Any]]:
    return {"observability parameters": parameters(), "observability resources": resources()}


def block_text(block: str, value: dict[str, Any]) -> str:
    indent = BLOCKS[block]
    lines: list[str] = []
    for logical_id, item in value.items():
        lines.append(f"{' ' * indent}{logical_id}:")
        lines += to_yaml(item, indent + 2)
        if block.endswith("resources"):
            lines.append("")
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def check_round_trip(block: str, text: str, value: dict[str, Any]) -> None:
    """The YAML we write must parse back to exactly the CloudFormation we meant."""
    from samtranslator.yaml_helper import yaml_parse

    parsed = yaml_parse(text)
    expected = json.loads(json.dumps(to_cfn(value)))
    if parsed != expected:
        for key in expected:
            if parsed.get(key) != expected[key]:
                raise AssertionError(f"{block}: {key} does not round-trip:\n{parsed.get(key)}\n!=\n{expected[key]}")
        raise AssertionError(f"{block}: keys differ: {sorted(set(parsed) ^ set(expected))}")


def rendered_blocks() -> dict[str, str]:
    out = {}
    for block, value in content().items():
        text = block_text(block, value)
        check_round_trip(block, text, value)
        out[block] = text
    return out


def apply(template: str, blocks: dict[str, str]) -> str:
    """template.yaml text with each generated block replaced; raises if a marker is missing."""
    for block, text in blocks.items():
        indent = " " * BLOCKS[block]
        start_marker, end_marker = indent + begin(block) + "\n", indent + end(block) + "\n"
        if template.count(start_marker) != 1 or template.count(end_marker) != 1:
            raise ValueError(
                f"template.yaml needs exactly one pair of markers for {block!r}:\n{start_marker}{end_marker}"
            )
        head, rest = template.split(start_marker)
        _, tail = rest.split(end_marker)
        template = head + start_marker + text + end_marker + tail
    return template


def committed_block(template: str, block: str) -> str | None:
    indent = " " * BLOCKS[block]
    start_marker, end_marker = indent + begin(block) + "\n", indent + end(block) + "\n"
    if start_marker not in template or end_marker not in template:
        return None
    return template.split(start_marker, 1)[1].split(end_marker, 1)[0]


# ---- the runbook's alarm table ------------------------------------------------------------------------
RUNBOOK = ROOT / "docs" / "runbook.md"
TABLE_BEGIN = "<!-- BEGIN generated: alarm table (make render; edit observability/alarms.py) -->\n"
TABLE_END = "<!-- END generated: alarm table -->\n"
MISSING = {"breaching": "pages", "notBreaching": "ignored", "ignore": "keeps the last state"}


def alarm_table() -> str:
    rows = ["| Alarm | What it means, what to do | Missing data | OK e-mail |", "|---|---|---|---|"]
    for a in alarms.build():
        text = a.description.replace(alarms.RUNBOOK, "").strip().replace("${EnvironmentSuffix}", "<env>")
        rows.append(
            f"| `hapg-<env>-{a.suffix}` | {text.replace('|', '/')} | {MISSING[a.missing]} | "
            f"{'yes' if a.recovers else 'no'} |"
        )
    return "\n".join(rows) + "\n"


def apply_runbook(text: str, table: str) -> str:
    if text.count(TABLE_BEGIN) != 1 or text.count(TABLE_END) != 1:
        raise ValueError(f"docs/runbook.md needs exactly one pair of markers:\n{TABLE_BEGIN}{TABLE_END}")
    head, rest = text.split(TABLE_BEGIN)
    _, tail = rest.split(TABLE_END)
    return head + TABLE_BEGIN + table + TABLE_END + tail


# ---- the picture ----------------------------------------------------------------------------------
def layout_data() -> list[dict[str, Any]]:
    """What the picture shows (with reader-2): its hash goes into the PNG's metadata."""
    out = []
    for w in dashboard.layout():
        counts: dict[str, int] = {}
        for line in w.metric_lines({HAS_SECOND_READER: True}):
            key = f"{line.name} ({line.namespace})"
            counts[key] = counts.get(key, 0) + 1
        lines = [f"{k} x{n}" if n > 1 else k for k, n in counts.items()]
        if w.kind == "log":
            source, *steps = w.query.split(" | ")
            lines = [source.replace("SOURCE ", "log group "), *steps]
        elif w.kind == "alarm":
            lines = [f"{len(w.alarm_arns)} alarms: " + ", ".join(a.rsplit(":alarm:", 1)[1] for a in w.alarm_arns)]
        title = w.title or w.markdown.split("\n")[0].lstrip("# ")
        out.append(
            {
                "type": w.kind,
                "title": _readable(title),
                "x": w.x,
                "y": w.y,
                "width": w.width,
                "height": w.height,
                "lines": [_readable(x) for x in lines],
            }
        )
    return out


def _readable(text: str) -> str:
    for var, shown in (("${EnvironmentSuffix}", "<env>"), ("${AuroraCluster}", "<cluster>")):
        text = text.replace(var, shown)
    return text


def layout_hash() -> str:
    """Of what the picture shows and of the code that draws it (a drawing change re-renders it too)."""
    drawing = (Path(__file__).parent / "picture.py").read_bytes()
    return hashlib.sha256(json.dumps(layout_data(), sort_keys=True).encode() + drawing).hexdigest()


def picture_hash(path: Path = PICTURE) -> str | None:
    """The layout hash stored in a PNG written by render_png, or None."""
    if not path.exists():
        return None
    from PIL import Image

    with Image.open(path) as img:
        return img.info.get(PNG_KEY)


PNG_KEY = "hapg-dashboard-layout-sha256"


def render_png(path: Path = PICTURE) -> None:
    from observability import picture

    picture.draw(layout_data(), path, {PNG_KEY: layout_hash()})


# ---- command ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when template.yaml or the PNG is stale")
    args = parser.parse_args(argv)
    template = TEMPLATE.read_text()
    updated = apply(template, rendered_blocks())
    stale = []
    if updated != template:
        stale.append("template.yaml")
        if not args.check:
            TEMPLATE.write_text(updated)
    runbook = RUNBOOK.read_text()
    updated_runbook = apply_runbook(runbook, alarm_table())
    if updated_runbook != runbook:
        stale.append(str(RUNBOOK.relative_to(ROOT)))
        if not args.check:
            RUNBOOK.write_text(updated_runbook)
    if picture_hash() != layout_hash():
        stale.append(str(PICTURE.relative_to(ROOT)))
        if not args.check:
            render_png()
    if args.check:
        print("stale: " + ", ".join(stale) if stale else "observability: up to date")
        return 1 if stale else 0
    print("wrote " + ", ".join(stale) if stale else "observability: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
