"""build/bench/results.md is rendered from results.json (pure): ratio and the table rows."""

from bench.results import ratio, render


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
