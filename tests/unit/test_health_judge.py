"""The verdict is a pure function of the probes."""

import pytest
from hapg.errors import InvalidInput
from hapg.health import Expectation, ReaderProbe, WriterProbe, judge
from hapg.models import HealthRequest, ReplicaLag


def writer(**kw):
    base = {"instance": "w", "write_ms": 2.5, "token": "t", "replicas": [ReplicaLag("r1", 12.0, "streaming")]}
    return WriterProbe(**{**base, **kw})


def reader(**kw):
    return ReaderProbe(**{"instance": "r1", "in_recovery": True, **kw})


def test_healthy_sentence_names_writer_latency_and_lag():
    ok_writer, healthy, reason = judge(writer(), reader(), 1000, Expectation())
    assert ok_writer and healthy
    assert reason == "healthy: w accepted a write in 2.5 ms; 1 replica(s), max lag 12 ms; reader r1 answered"


@pytest.mark.parametrize(
    ("w", "r", "expect", "writer_ok", "fragment"),
    [
        (
            writer(error="connect x: refused"),
            reader(),
            Expectation(),
            False,
            "writer endpoint failed: connect x",
        ),
        (writer(in_recovery=True), reader(), Expectation(), False, "which is in recovery"),
        (writer(), reader(), Expectation(writer="w2"), False, "expected w2"),
        (writer(), reader(error="timeout"), Expectation(), True, "reader endpoint failed: timeout"),
        (writer(), reader(saw_token=False), Expectation(), True, "did not see the write probe"),
        (
            writer(replicas=[ReplicaLag("r1", 5000.0, "streaming")]),
            reader(),
            Expectation(),
            True,
            "lag over 1000 ms on r1",
        ),
        (writer(replicas=[ReplicaLag("r1", None, "catchup")]), reader(), Expectation(), True, "lag over"),
        (writer(replicas=[]), reader(), Expectation(replicas=2), True, "0 of 2 replicas"),
    ],
)
def test_each_problem_is_unhealthy_with_its_reason(w, r, expect, writer_ok, fragment):
    got_writer_ok, healthy, reason = judge(w, r, 1000, expect)
    assert not healthy
    assert got_writer_ok is writer_ok
    assert fragment in reason


def test_request_parsing_accepts_the_schedule_and_eventbridge_shapes():
    assert HealthRequest.parse({"mode": "scheduled"}).mode == "scheduled"
    eb = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    assert HealthRequest.parse(eb).mode == "scheduled"
    v = HealthRequest.parse({"mode": "verify", "expected_writer": "w", "expected_replicas": 2})
    assert (v.expected_writer, v.expected_replicas) == ("w", 2)


@pytest.mark.parametrize(
    "event",
    [
        None,
        "verify",
        {"mode": "VERIFY"},
        {"mode": "verify", "expected_replicas": True},
        {"mode": "verify", "expected_writer": ""},
    ],
)
def test_request_parsing_refuses_bad_input(event):
    with pytest.raises(InvalidInput):
        HealthRequest.parse(event)
