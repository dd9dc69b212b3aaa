"""The promote step's own first status check (one Lambda call and one state less in the outage)."""

import pytest
from hapg import errors, failover
from hapg.models import ClusterSnapshot, Member
from hapg.outcome import phases
from hapg.planner import Limits

NOW = 1_800_000_000.0


class Cluster:
    """A ClusterPort fake: `moves` says whether failover() makes the target the writer at once (the
    local pair) or not yet (Aurora, still failing over); `poll_error` fails every snapshot after it."""

    cluster_id = "c1"

    def __init__(self, moves=True, poll_error=None):
        self.writer, self.moves, self.poll_error, self.failovers = "w", moves, poll_error, []

    def snapshot(self, with_lag=True):
        if self.failovers and self.poll_error:
            raise self.poll_error
        members = tuple(Member(n, n == self.writer, "available", 1) for n in ("w", "r1"))
        return ClusterSnapshot(self.cluster_id, "available", members, NOW)

    def failover(self, target):
        self.failovers.append(target)
        if self.moves:
            self.writer = target


def deps(cluster):
    return failover.Deps(cluster=cluster, table=None, limits=Limits(), poll_interval_s=0.001)


def test_the_new_writer_up_at_once_completes_the_step():
    cluster = Cluster(moves=True)
    out = failover.promote_and_check("r1", deps(cluster), deadline_s=60, window_s=5)
    assert cluster.failovers == ["r1"]
    assert out["called"] is True and out["complete"] is True
    assert out["status"]["writer"] == "r1" and out["status"]["writer_ready"] is True


def test_aurora_still_failing_over_leaves_it_to_check_promotion():
    cluster = Cluster(moves=False)
    out = failover.promote_and_check("r1", deps(cluster), deadline_s=60, window_s=0.01)
    assert cluster.failovers == ["r1"]
    assert out["complete"] is False and out["status"]["writer"] == "w"


@pytest.mark.parametrize("error", [errors.AwsThrottled("rds: throttled"), errors.PromotionTimedOut("late")])
def test_a_failed_first_check_is_not_a_failed_promote(error):
    """The failover was asked for: raising now would make the ASL Retry the promote."""
    cluster = Cluster(moves=True, poll_error=error)
    out = failover.promote_and_check("r1", deps(cluster), deadline_s=60, window_s=5)
    assert cluster.failovers == ["r1"]
    assert out["called"] is True and out["complete"] is False and str(error) in out["status"]["error"]


def test_already_the_writer_asks_nothing():
    cluster = Cluster()
    cluster.writer = "r1"
    out = failover.promote_and_check("r1", deps(cluster), deadline_s=60, window_s=5)
    assert cluster.failovers == [] and out["called"] is False and out["complete"] is True


def test_phases_time_the_promote_by_its_own_check_when_check_promotion_did_not_run():
    state = {
        "request": {"started_at": NOW - 3},
        "promote": {"called": True, "started_at": NOW - 2.0, "complete": True, "timing": {"finished_at": NOW - 1.5}},
    }
    assert phases(state, NOW)["promote"] == 500.0
    not_complete = {**state, "promote": {**state["promote"], "complete": False}}
    assert "promote" not in phases(not_complete, NOW)
