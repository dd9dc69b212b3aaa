import pytest
from hapg.errors import InvalidInput
from hapg.names import Kind
from hapg.triggers import parse_trigger

from local.stack import rds_event

CLUSTER = "hapg-dev-cluster"


def test_console_switchover_defaults():
    r = parse_trigger({"action": "switchover"}, CLUSTER)
    assert (r.kind, r.target, r.force, r.reason) == (Kind.SWITCHOVER, None, False, "switchover requested")


def test_rds_event_with_bare_or_prefixed_source_identifier():
    event = rds_event("RDS-EVENT-0071", at=1_800_000_000, event_id="id-1")
    r = parse_trigger(event, CLUSTER)
    assert (r.kind, r.event_code, r.event_id, r.event_time) == (Kind.EVENT, "RDS-EVENT-0071", "id-1", 1_800_000_000)
    event["detail"]["SourceIdentifier"] = f"rds:{CLUSTER}"
    assert parse_trigger(event, CLUSTER).event_code == "RDS-EVENT-0071"


def test_event_for_our_cluster_matched_by_arn_when_identifier_differs():
    event = rds_event("RDS-EVENT-0073")
    event["detail"]["SourceIdentifier"] = "something-else"
    assert parse_trigger(event, CLUSTER).kind == Kind.EVENT


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([], "must be a JSON object"),
        ({"action": "failover"}, "action must be one of"),
        ({"action": "switchover", "target_instance": "1bad"}, "not a DB instance identifier"),
        ({"action": "switchover", "reason": ""}, "reason must be"),
        ({"action": "switchover", "reason": "x" * 501}, "reason must be"),
        ({"action": "switchover", "force": 1}, "force must be true or false"),
        ({"action": "switchover", "dry_run": True}, "unknown field(s) dry_run"),
        ({**rds_event("RDS-EVENT-0073"), "source": "aws.ec2"}, "not an RDS cluster event"),
        ({**rds_event("RDS-EVENT-0073"), "time": "yesterday"}, "not ISO 8601"),
    ],
)
def test_bad_inputs_are_rejected_with_a_reason(raw, fragment):
    with pytest.raises(InvalidInput, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_trigger(raw, CLUSTER)


def test_non_failover_event_and_foreign_cluster_are_rejected():
    event = rds_event("RDS-EVENT-0073")
    event["detail"]["EventID"] = "RDS-EVENT-0006"
    with pytest.raises(InvalidInput, match="is not a failover event"):
        parse_trigger(event, CLUSTER)
    with pytest.raises(InvalidInput, match="this workflow manages other"):
        parse_trigger(rds_event("RDS-EVENT-0073"), "other")
