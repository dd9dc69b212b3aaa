"""Read the dashboard and the alarms back out of a template, as CloudFormation would deploy them.

`Resolver` evaluates the intrinsics these resources use (Ref, Fn::Sub, Fn::GetAtt, Fn::If, Fn::Join,
conditions) against parameter values, with the names the template gives its resources, so tests can
parse the real dashboard JSON and compare every metric reference with what exists. Only for tests
and tooling: nothing here is deployed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "hapg-dev",
    "AWS::URLSuffix": "amazonaws.com",
}
_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    def __init__(self, template: dict[str, Any], parameters: dict[str, str] | None = None):
        self.template = template
        self.resources = template["Resources"]
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.params.update(parameters or {})

    # -- conditions ------------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        return bool(self._cond(self.template["Conditions"][name]))

    def _cond(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if fn == "Fn::Not":
                return not self._cond(arg[0])
            if fn == "Fn::And":
                return all(self._cond(a) for a in arg)
            if fn == "Fn::Or":
                return any(self._cond(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
        return self.resolve(node)

    def exists(self, logical_id: str) -> bool:
        cond = self.resources[logical_id].get("Condition")
        return cond is None or self.condition(cond)

    # -- values ---------------------------------------------------------------------------------------
    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1 and next(iter(node)) in self._FUNCTIONS:
            ((fn, arg),) = node.items()
            return self._FUNCTIONS[fn](self, arg)
        return {k: self.resolve(v) for k, v in node.items()}

    def _getatt(self, arg: Any) -> Any:
        res, attr = arg if isinstance(arg, list) else arg.split(".", 1)
        return self.getatt(res, attr)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        return self.sub(text, {k: self.resolve(v) for k, v in variables.items()})

    def _if(self, arg: Any) -> Any:
        cond, yes, no = arg
        return self.resolve(yes if self.condition(cond) else no)

    def _join(self, arg: Any) -> str:
        delimiter, items = arg
        return delimiter.join(str(i) for i in self.resolve(items))

    _FUNCTIONS: dict[str, Any] = {
        "Ref": lambda self, arg: self.ref(arg),
        "Fn::GetAtt": _getatt,
        "Fn::Sub": _sub,
        "Fn::If": _if,
        "Fn::Join": _join,
    }

    def sub(self, text: str, variables: dict[str, Any] | None = None) -> str:
        variables = variables or {}

        def one(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self.getatt(*name.split(".", 1)))
            return str(self.ref(name))

        return _VAR.sub(one, text).replace("${!", "${")

    def ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        res = self.resources[name]
        props = res.get("Properties", {})
        kind = res["Type"]
        named = {
            "AWS::RDS::DBCluster": "DBClusterIdentifier",
            "AWS::RDS::DBInstance": "DBInstanceIdentifier",
            "AWS::Serverless::Function": "FunctionName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Events::Rule": "Name",
            "AWS::CloudWatch::Alarm": "AlarmName",
        }
        if kind in named:
            return self.resolve(props[named[kind]])
        if kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            machine = self.resolve(props.get("Name") or props.get("StateMachineName"))
            return f"arn:aws:states:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:stateMachine:{machine}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:{self.resolve(props['TopicName'])}"
        return f"<{name}>"

    def getatt(self, name: str, attribute: str) -> Any:
        res = self.resources[name]
        props = res.get("Properties", {})
        if res["Type"] == "AWS::SQS::Queue" and attribute == "QueueName":
            return self.resolve(props["QueueName"])
        return f"<{name}.{attribute}>"


# ---- what the dashboard and the alarms use ---------------------------------------------------------
@dataclass(frozen=True)
class MetricUse:
    where: str  # widget title or alarm logical id
    namespace: str
    name: str
    dims: tuple[tuple[str, str], ...]  # sorted (name, value)
    stat: str | None = None

    @property
    def dimension_names(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.dims)


def dashboard(template: dict[str, Any], resolver: Resolver, logical_id: str = "OperationsDashboard") -> dict:
    """The dashboard body, resolved and parsed as JSON (raises if it is not valid JSON)."""
    return json.loads(resolver.resolve(template["Resources"][logical_id]["Properties"]["DashboardBody"]))


def widget_uses(body: dict[str, Any]) -> list[MetricUse]:
    uses = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        title = widget["properties"].get("title", "")
        for row in widget["properties"]["metrics"]:
            if len(row) == 1 and isinstance(row[0], dict):  # a math expression
                continue
            opts = row[-1] if isinstance(row[-1], dict) else {}
            head = row[:-1] if opts else row
            if "." in head:
                raise ValueError(f"{title}: shorthand '.' in a metric row is not allowed: {row}")
            namespace, name, *pairs = head
            if len(pairs) % 2:
                raise ValueError(f"{title}: odd dimension list {row}")
            dims = tuple(sorted(zip(pairs[::2], pairs[1::2], strict=True)))
            uses.append(MetricUse(title, namespace, name, dims, opts.get("stat")))
    return uses


def alarm_uses(template: dict[str, Any], resolver: Resolver) -> list[MetricUse]:
    uses = []
    for logical_id, res in template["Resources"].items():
        if res["Type"] != "AWS::CloudWatch::Alarm":
            continue
        p = resolver.resolve(res["Properties"])
        if "MetricName" in p:
            dims = tuple(sorted((d["Name"], d["Value"]) for d in p.get("Dimensions", [])))
            uses.append(MetricUse(logical_id, p["Namespace"], p["MetricName"], dims, p.get("Statistic")))
        for q in p.get("Metrics", []):
            if "MetricStat" in q:
                m = q["MetricStat"]["Metric"]
                dims = tuple(sorted((d["Name"], d["Value"]) for d in m.get("Dimensions", [])))
                uses.append(MetricUse(logical_id, m["Namespace"], m["MetricName"], dims, q["MetricStat"]["Stat"]))
    return uses
