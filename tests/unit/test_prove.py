"""The parts of ``mozaiks-bus prove`` that need no Redis: the plan line, the prefix, the
count of recovery, and the table an operator reads."""

from __future__ import annotations

from mozaiks_bus import load_settings
from mozaiks_bus.names import PREFIX
from mozaiks_bus.ops.prove import (
    PROVE_MIN_IDLE_S,
    ProveOptions,
    Row,
    format_table,
    plan_line,
    run_prefix,
)
from mozaiks_bus.ops.prove_load import Record
from mozaiks_bus.ops.prove_scenario import Affected, Outcome

URL = "redis://:s3cret@127.0.0.1:6399"


def record(event_id: str, stream_id: str, at: float) -> Record:
    return Record.parse(f"{event_id} {stream_id} c1 2 {at}")


def test_the_run_prefix_is_fresh_valid_and_under_the_users_prefix() -> None:
    settings = load_settings(broker_url=URL, prefix="x" * 64, env={})
    first, second = run_prefix(settings), run_prefix(settings)
    assert first != second
    assert PREFIX.matches(first)
    assert "-prove-" in first


def test_the_plan_line_is_one_line_naming_faults_prefix_and_timing_without_the_password(
) -> None:
    settings = load_settings(broker_url=URL, env={})
    line = plan_line(settings, ProveOptions(events=1234, pause=True), "p-prove-1")
    assert "\n" not in line
    assert "1,234" in line
    assert "p-prove-1:" in line
    assert "SCAN MATCH p-prove-1:*" in line
    assert "CLIENT PAUSE" in line
    assert "every client of it waits" in line
    assert f"{PROVE_MIN_IDLE_S:g} s idle" in line
    assert "--defaults" in line
    assert "s3cret" not in line


def test_defaults_keep_the_users_reclaim_timing() -> None:
    settings = load_settings(broker_url=URL, consumer_min_idle_s=42,
                             consumer_claim_interval_s=7, env={})
    assert ProveOptions(defaults=True).reclaim(settings) == (42, 7)
    assert ProveOptions().reclaim(settings) == (PROVE_MIN_IDLE_S, 1.0)


def test_recovered_in_counts_only_calls_after_the_fault() -> None:
    before = [record("e1", "1-1", 9.0)]
    hit = Affected(at=10.0, seen=1, note="", entries=frozenset({"1-1", "1-2"}))
    assert hit.recovered(before) is None  # the call before the fault does not count
    after = [*before, record("e1", "1-1", 11.0), record("e2", "1-2", 12.5)]
    assert hit.recovered(after) == 2.5
    late = Affected(at=10.0, seen=0, note="", events=frozenset({"e1"}))
    assert late.recovered(before) == 0.0  # pushed late by a killed link: not negative
    assert Affected(at=10.0, seen=0, note="").recovered([]) == 0.0


def test_the_table_shows_the_count_and_fails_a_loss_or_a_cut_short_load() -> None:
    rows = [
        Row("consumer SIGKILL x2", Outcome(100, 100, 100, 3, 5.3, ["SIGKILL c1: 7"])),
        Row("CLIENT KILL (own)", Outcome(100, 100, 99, 0, None, [])),
        Row("failover", Outcome(50, 100, 50, 0, 1.0, [])),
    ]
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["scenario", "guarantee", "sent", "delivered", "lost",
                                "duplicated", "recovered", "in", "result"]
    assert lines[1].split()[-8:] == ["0", "100", "100", "0", "3", "5.3", "s", "pass"]
    assert lines[2].rstrip().endswith("FAIL")
    assert " 1 " in lines[2]
    assert lines[3].rstrip().endswith("FAIL")  # nothing lost, but half never confirmed
    assert "  consumer SIGKILL x2: SIGKILL c1: 7" in lines
    assert [row.passed for row in rows] == [True, False, False]
