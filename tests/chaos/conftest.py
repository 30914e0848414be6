"""The chaos suite's ledger: each case records what was sent and what arrived, and the
run ends with the table the README shows (``pytest tests/chaos -s`` prints it too)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pytest

ROWS: list[Row] = []


@dataclass(frozen=True)
class Row:
    """One fault case's counts."""

    case: str
    sent: int
    delivered: int
    lost: int
    duplicated: int
    unexpected: int
    guarantee: str
    recovered_s: float | None = None  # from the fault to the last event sent before it handled


def record(case: str, sent: Iterable[str], calls: list[str], guarantee: str,
           recovered_s: float | None = None) -> Row:
    """Count ``calls`` (every handler call or HTTP request, by event id) against the
    ``sent`` ids: lost = sent never seen, duplicated = extra calls, unexpected = ids
    never sent; ``recovered_s``: from the fault to the moment every event confirmed
    before it had been handled (the longest, with several faults)."""
    expected, seen = set(sent), set(calls)
    row = Row(case, len(expected), len(seen & expected), len(expected - seen),
              len(calls) - len(seen), len(seen - expected), guarantee, recovered_s)
    ROWS.append(row)
    return row


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| fault | sent | delivered | lost | duplicated | unexpected | recovered in | "
             "guarantee |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r.case} | {r.sent} | {r.delivered} | {r.lost} | {r.duplicated} | "
              f"{r.unexpected} | "
              f"{'-' if r.recovered_s is None else f'{r.recovered_s:.1f} s'} | "
              f"{r.guarantee} |" for r in rows]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ROWS:
        terminalreporter.section("chaos: lost, duplicated and unexpected events per fault")
        terminalreporter.write_line(table(ROWS))
