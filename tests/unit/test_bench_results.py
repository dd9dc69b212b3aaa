"""build/bench/results.md is rendered from results.json (pure): ratio and the table rows."""

from bench.results import ratio, render, summarize
from local.workload import RECONNECT_PAUSE_S


def row(system, case, cpu, median):
    return {
        "system": system,
        "case": case,
        "cpu": cpu,
        "runs": 5,
        "window": {"median": median, "min": median - 10, "max": median + 10},
        "acked": 1000,
        "lost": 0,
    }


RESULTS = {
    "date": "2026-01-01 00:00 UTC",
    "machine": "x86_64, 2 cores",
    "runs": 5,
    "writers": 20,
    "data_plane_nice": 19,
    "versions": {"patroni": "4.1.5", "etcd": "3.4.23"},
    "patroni_settings": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "synchronous_mode": True},
    "rows": [row("ours", "planned", "shared", 500.0), row("patroni", "planned", "shared", 2500.0)],
}


def test_ratio_is_ours_over_patroni_and_absent_without_both():
    ours, patroni = RESULTS["rows"]
    assert ratio(ours, patroni) == 0.2
    assert ratio(ours, None) is None
    assert ratio(ours, row("patroni", "planned", "shared", 0.0)) is None


def test_table_states_settings_and_one_row_per_system():
    md = render(RESULTS)
    assert "ttl 30 s, loop_wait 10 s" in md and "synchronous_mode: true" in md
    assert "2026-01-01 00:00 UTC" in md and "x86_64, 2 cores" in md
    lines = [line for line in md.splitlines() if line.startswith("| Planned switchover")]
    assert len(lines) == 2
    assert "**500 ms**" in lines[0] and "0.20×" in lines[0]
    assert "**2,500 ms**" in lines[1] and "baseline" in lines[1]


def test_summarize_is_median_min_max():
    assert summarize([3.0, 1.04, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}


def test_labels_come_from_the_figures_not_from_literals():
    detail = {
        "orchestration_overhead_ms": {"median": 2256.0, "min": 2114.0, "max": 3428.0},
        "replica_wait_ms": {"median": 551.0, "min": 453.0, "max": 1184.0},
    }
    foundation = {"cold_import_ms": {"health_checker": 268.0}, "cold_import_runs": 3, "layer_unzipped_mb": 40.3}
    md = render({**RESULTS, "ours_detail": detail, "foundation": foundation})
    assert f"reconnecting {RECONNECT_PAUSE_S * 1000:.0f} ms after any error" in md
    assert "| … of which waiting for the old writer to rejoin as a reader | 551 ms | 453 ms | 1,184 ms |" in md
    assert "cold import (median of 3)" in md
    assert "cold import (median) |" in render({**RESULTS, "foundation": {**foundation, "cold_import_runs": None}})
