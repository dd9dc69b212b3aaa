"""observability/: the YAML writer, the marker-bounded rewrite of template.yaml, the dashboard model."""

from __future__ import annotations

import json

import pytest
from hapg.coordinator import outcome_log_fields
from hapg.models import HistoryRecord
from hapg.names import OutcomeLog
from samtranslator.yaml_helper import yaml_parse

from observability import alarms, catalog, dashboard, render
from observability.cfn import GetAtt, If, Join, Ref, Sub, to_cfn, to_yaml


@pytest.mark.parametrize(
    "value",
    [
        "plain words",
        "true",
        "no",
        "key: value",
        "it's quoted",
        "#not a comment",
        "- not a list",
        "@timestamp",
        "${NotSub}",
        "x" * 150,  # long, no spaces: not foldable
        "a long description " * 12 + "ends here.",  # folded (>-)
        "two  spaces " * 12,  # not foldable: folding would lose a space
        123,
        1.5,
        True,
        Ref("AuroraCluster"),
        GetAtt("FunctionDeadLetterQueue", "QueueName"),
        Sub("hapg-${EnvironmentSuffix}-x"),
        Sub('{"a":"${AWS::Region}","b":"it\'s"}'),
        Sub("a substituted description that is long enough to be folded by the writer ${AWS::Region} " * 2),
        If("HasSecondReader", Sub("${A}"), "b"),
        Join("", ("a", Join(",", (Sub("${B}"), If("C", "d", "e"))), "f")),
        [Ref("AlertTopic")],
        [],
        [{"Name": "ClusterId", "Value": Ref("AuroraCluster")}, {"Name": "Role", "Value": "WRITER"}],
    ],
)
def test_yaml_writer_round_trips(value):
    text = "\n".join(to_yaml({"Key": value}, 0)) + "\n"
    assert yaml_parse(text) == {"Key": json.loads(json.dumps(to_cfn(value)))}, text


def test_yaml_writer_refuses_what_it_cannot_write():
    with pytest.raises(TypeError):
        to_yaml({"Key": object()}, 0)


TEMPLATE = """Parameters:
  A:
    Type: String
  # >>> BEGIN generated: observability parameters (make render; edit observability/*.py, not this block)
  Old: stale
  # <<< END generated: observability parameters
Resources:
  # >>> BEGIN generated: observability resources (make render; edit observability/*.py, not this block)
  # <<< END generated: observability resources
  Kept:
    Type: AWS::SNS::Topic
"""


def test_apply_rewrites_only_between_the_markers():
    blocks = {"observability parameters": "  New: 1\n", "observability resources": "  R:\n    Type: X\n"}
    out = render.apply(TEMPLATE, blocks)
    assert "Old: stale" not in out and "  New: 1\n" in out and "  R:\n    Type: X\n" in out
    assert out.startswith("Parameters:\n  A:\n    Type: String\n") and out.endswith(
        "  Kept:\n    Type: AWS::SNS::Topic\n"
    )
    assert render.apply(out, blocks) == out  # idempotent
    assert render.committed_block(out, "observability parameters") == "  New: 1\n"


@pytest.mark.parametrize("broken", ["no markers at all", TEMPLATE + TEMPLATE])
def test_apply_refuses_missing_or_duplicate_markers(broken):
    with pytest.raises(ValueError, match="exactly one pair of markers"):
        render.apply(broken, {"observability parameters": "  New: 1\n"})


def test_widgets_with_reader_2_come_in_two_variants():
    parts = dashboard.body().items[1].items
    layout = dashboard.layout()
    assert len(parts) == len(layout)
    for widget, part in zip(layout, parts, strict=True):
        if widget.conditions:
            assert isinstance(part, If) and part.condition == catalog.HAS_SECOND_READER
            assert "reader-2" in part.when_true.text and "reader-2" not in part.when_false.text
        else:
            assert not isinstance(part, If)
            text = part.text if isinstance(part, Sub) else part
            assert isinstance(part, Sub) == ("${" in text), widget.title  # no Fn::Sub without variables


def test_parameter_numbers_stay_unquoted_in_widget_json():
    widget = next(w for w in dashboard.layout() if w.title.startswith("CPU per instance"))
    text = dashboard.widget_json(widget, {catalog.HAS_SECOND_READER: True})
    assert '"value":${CpuAlarmPercent}' in text
    assert json.loads(text.replace("${CpuAlarmPercent}", "80").replace("${", "x{"))["type"] == "metric"


def test_custom_metric_helpers_refuse_the_wrong_dimension_set():
    with pytest.raises(ValueError, match="per instance"):
        catalog.custom(catalog.Metric.REPLICA_LAG)
    with pytest.raises(ValueError, match="per cluster"):
        catalog.per_instance(catalog.Metric.HEALTHY)


def test_alarm_ids_and_names_are_unique():
    built = alarms.build()
    assert len({a.logical_id for a in built}) == len({a.suffix for a in built}) == len(built)


def test_outcome_log_line_without_a_total():
    rec = HistoryRecord("arn:x", "event", "aurora", "skipped", "stale event", 1.0, 2.0)
    fields = outcome_log_fields(rec)
    assert set(fields) == set(OutcomeLog.FIELDS)
    assert fields[OutcomeLog.DURATION_S] is None
    assert fields[OutcomeLog.OLD_WRITER] == fields[OutcomeLog.NEW_WRITER] == "-"
