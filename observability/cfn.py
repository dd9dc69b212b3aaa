"""CloudFormation values (Ref, GetAtt, Sub, If, Join) and a small YAML writer for the generated blocks.

Values know two spellings: `cfn()` (the intrinsic as CloudFormation JSON) and `in_sub()` (the same
value inside an Fn::Sub string, e.g. "${AuroraCluster}"), because the dashboard body is one Fn::Sub
per widget while alarms take intrinsics directly. `to_yaml` writes the template's short forms
(!Ref, !Sub, ...) so the generated block reads like the hand-written rest of template.yaml; the
renderer parses its own output back and compares it with `cfn()` to prove the YAML is right.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from typing import Any

from hapg.names import PROJECT

SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass(frozen=True)
class Ref:
    name: str

    def cfn(self) -> dict[str, Any]:
        return {"Ref": self.name}

    def in_sub(self) -> str:
        return "${" + self.name + "}"


@dataclass(frozen=True)
class GetAtt:
    resource: str
    attribute: str

    def cfn(self) -> dict[str, Any]:
        return {"Fn::GetAtt": [self.resource, self.attribute]}

    def in_sub(self) -> str:
        return "${" + f"{self.resource}.{self.attribute}" + "}"


@dataclass(frozen=True)
class Sub:
    text: str

    def cfn(self) -> dict[str, Any]:
        return {"Fn::Sub": self.text}

    def in_sub(self) -> str:
        return self.text


@dataclass(frozen=True)
class If:
    condition: str
    when_true: Any
    when_false: Any

    def cfn(self) -> dict[str, Any]:
        return {"Fn::If": [self.condition, to_cfn(self.when_true), to_cfn(self.when_false)]}


@dataclass(frozen=True)
class Join:
    delimiter: str
    items: tuple[Any, ...]

    def cfn(self) -> dict[str, Any]:
        return {"Fn::Join": [self.delimiter, [to_cfn(i) for i in self.items]]}


@dataclass(frozen=True)
class Flow:
    """A small mapping written in flow style, e.g. a tag: {Key: Team, Value: !Ref Team}."""

    items: tuple[tuple[str, Any], ...]

    def cfn(self) -> dict[str, Any]:
        return {k: to_cfn(v) for k, v in self.items}


Value = str | Ref | GetAtt | Sub
INTRINSICS = (Ref, GetAtt, Sub, If, Join, Flow)

# The seven tags of every taggable resource (template.yaml conventions), in list form.
TAGS = [
    Flow((("Key", "Environment"), ("Value", Ref("EnvironmentSuffix")))),
    Flow((("Key", "Repository"), ("Value", Ref("Repository")))),
    Flow((("Key", "Author"), ("Value", Ref("CommitAuthor")))),
    Flow((("Key", "PRNumber"), ("Value", Ref("PRNumber")))),
    Flow((("Key", "Team"), ("Value", Ref("Team")))),
    Flow((("Key", "Project"), ("Value", PROJECT))),
    Flow((("Key", "ManagedBy"), ("Value", "SAM"))),
]


def in_sub(value: Value) -> str:
    """A value as it appears inside an Fn::Sub string."""
    return value if isinstance(value, str) else value.in_sub()


def to_cfn(value: Any) -> Any:
    """The CloudFormation JSON of a structure holding our value types."""
    if isinstance(value, INTRINSICS):
        return value.cfn()
    if isinstance(value, dict):
        return {k: to_cfn(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_cfn(v) for v in value]
    return value


# ---- YAML ---------------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9_./@:-]*( [A-Za-z0-9_./@()-]+)*$")
FOLD_AT = 100
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if not isinstance(value, str):
        raise TypeError(f"not a scalar: {value!r}")
    if _PLAIN.match(value) and value.lower() not in _RESERVED and ": " not in value:
        return value
    return "'" + value.replace("'", "''") + "'"


def _sub(value: Sub) -> str:
    if '"' not in value.text and "\\" not in value.text:
        return f'!Sub "{value.text}"'
    return "!Sub '" + value.text.replace("'", "''") + "'"


_TAGGED = {
    Ref: lambda v: f"!Ref {v.name}",
    GetAtt: lambda v: f"!GetAtt {v.resource}.{v.attribute}",
    Sub: _sub,
    Flow: lambda v: "{" + ", ".join(f"{k}: {_inline(x)}" for k, x in v.items) + "}",
}


def _inline(value: Any) -> str | None:
    """The one-line spelling of a value, or None when it needs a block."""
    if type(value) in _TAGGED:
        return _TAGGED[type(value)](value)
    if isinstance(value, list | tuple):
        if all(isinstance(v, Ref | str) for v in value) and len(value) <= 4:
            return "[" + ", ".join(_inline(v) if isinstance(v, Ref) else scalar(v) for v in value) + "]"
        return None
    if isinstance(value, str | int | float | bool):
        return scalar(value)
    return None


def to_yaml(value: Any, indent: int) -> list[str]:
    """Lines of a block mapping (value is a dict), indented by `indent` spaces."""
    pad = " " * indent
    lines: list[str] = []
    for key, item in value.items():
        one = _inline(item)
        text, tag = (item.text, "!Sub ") if isinstance(item, Sub) else (item, "")
        if isinstance(text, str) and len(text) > FOLD_AT and _foldable(text):
            lines.append(f"{pad}{key}: {tag}>-")
            lines += [f"{pad}  {chunk}" for chunk in _wrap(text)]
        elif one is not None:
            lines.append(f"{pad}{key}: {one}")
        elif isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            lines += to_yaml(item, indent + 2)
        else:
            tag, body = _block(item)
            lines.append(f"{pad}{key}:{tag}")
            lines += _sequence(body, indent + 2)
    return lines


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, FOLD_AT, break_on_hyphens=False, break_long_words=False)


def _foldable(text: str) -> bool:
    """A folded block (>-) gives back exactly this text: single spaces, no edge or leading blanks."""
    return "\n" not in text and "  " not in text and text == text.strip() and not text.startswith(("#", "-"))


def _block(value: Any) -> tuple[str, list[Any]]:
    if isinstance(value, If):
        return " !If", [value.condition, value.when_true, value.when_false]
    if isinstance(value, Join):
        return " !Join", [value.delimiter, list(value.items)]
    if isinstance(value, list | tuple):
        return "", list(value)
    raise TypeError(f"cannot write {value!r}")


def _sequence(items: list[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for item in items:
        one = _inline(item)
        if one is not None:
            lines.append(f"{pad}- {one}")
        elif isinstance(item, dict):
            body = to_yaml(item, indent + 2)
            lines.append(f"{pad}- {body[0].lstrip()}")
            lines += body[1:]
        else:
            tag, body = _block(item)
            lines.append(f"{pad}-{tag}")
            lines += _sequence(body, indent + 2)
    return lines
