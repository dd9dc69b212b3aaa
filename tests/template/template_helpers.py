"""Load, translate and query template.yaml for the template tests."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER, ResourceNotFoundError
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"

PREFIX = "hapg-${EnvironmentSuffix}"
SUBNETS = [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}, {"Ref": "PrivateSubnet3"}]
REQUIRED_TAGS = {
    "Environment": {"Ref": "EnvironmentSuffix"},
    "Repository": {"Ref": "Repository"},
    "Author": {"Ref": "CommitAuthor"},
    "PRNumber": {"Ref": "PRNumber"},
    "Team": {"Ref": "Team"},
    "Project": "HA-PostgreSQL-Database",
    "ManagedBy": "SAM",
}


def ref(name: str) -> dict:
    return {"Ref": name}


def getatt(name: str, attr: str) -> dict:
    return {"Fn::GetAtt": [name, attr]}


def sub(text: str) -> dict:
    return {"Fn::Sub": text}


def load_sam(path: Path = TEMPLATE) -> dict:
    return yaml_parse(path.read_text())


def stage_local_artifacts(sam: dict, root: Path = ROOT) -> dict:
    """Offline stand-in for `sam package`: local code paths become S3 URIs, and a local ASL file
    (StateMachine DefinitionUri) is inlined as Definition, which the translator cannot read itself."""
    sam = copy.deepcopy(sam)
    for res in sam.get("Resources", {}).values():
        props = res.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://artifacts/{props[key].strip('/')}.zip"
        uri = props.get("DefinitionUri")
        is_machine = res.get("Type") == "AWS::Serverless::StateMachine"
        if is_machine and isinstance(uri, str) and not uri.startswith("s3://"):
            props["Definition"] = json.loads((root / uri).read_text())
            del props["DefinitionUri"]
    return sam


def translate(sam: dict, root: Path = ROOT) -> dict:
    """SAM -> CloudFormation in-process, as the CloudFormation transform would (default parameters)."""
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name="us-east-1"),
    )
    return translator.translate(
        stage_local_artifacts(sam, root), parameter_values={}, get_managed_policy_map=lambda: {}
    )


def resources(tpl: dict, type_: str | None = None) -> dict[str, dict]:
    return {k: v for k, v in tpl["Resources"].items() if type_ is None or v["Type"] == type_}


def props(tpl: dict, logical_id: str) -> dict:
    assert logical_id in tpl["Resources"], f"{logical_id} missing"
    return tpl["Resources"][logical_id].get("Properties", {})


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def statements(document: dict) -> list[dict]:
    return as_list(document.get("Statement", []))


def tag_dict(tags: Any) -> dict:
    """List form [{Key, Value}] or map form {key: value} -> {key: value}."""
    if isinstance(tags, dict):
        return dict(tags)
    return {t["Key"]: t["Value"] for t in tags or []}


@cache
def tag_property(resource_type: str) -> str | None:
    """Name of the tag property per the CloudFormation schema cfn-lint ships, None if untaggable."""
    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    except ResourceNotFoundError:
        return None
    tagging = schema.get("tagging")
    if tagging is None:
        return "Tags" if "Tags" in schema.get("properties", {}) else None
    if not tagging.get("taggable", False):
        return None
    return tagging.get("tagProperty", "/properties/Tags").removeprefix("/properties/")


def role_statements(cfn: dict, role_id: str) -> list[dict]:
    """Inline statements of an IAM role (all of its Policies)."""
    role = props(cfn, role_id)
    return [s for p in role.get("Policies", []) for s in statements(p["PolicyDocument"])]


def allowed_pairs(stmts: list[dict]) -> set[tuple[str, str]]:
    """{(action, json(resource))} over Allow statements, for exact comparisons."""
    return {
        (action, json.dumps(resource, sort_keys=True))
        for s in stmts
        if s["Effect"] == "Allow"
        for action in as_list(s["Action"])
        for resource in as_list(s["Resource"])
    }
