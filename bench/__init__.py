"""Benchmarks of the certificate engine, each figure printed next to a reference measured in the
same run (``python -m bench``; ``make bench``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the table: a CertGate figure and the same-run reference it is compared with."""

    measurement: str
    value: float
    unit: str
    reference_name: str = ""
    reference: float | None = None
    goal: str = ""

    @property
    def ratio(self) -> str:
        if self.reference is None or self.reference == 0 or self.value == 0:
            return ""
        ratio = self.value / self.reference
        return f"{ratio:.2f}x" if ratio >= 0.01 else f"1/{1 / ratio:,.0f}"


def per_call(function: Callable[[], object], *, repeat: int = 7, number: int = 200) -> float:
    """Median seconds per call over ``repeat`` batches of ``number`` calls (after a warm-up)."""
    function()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            function()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    header = ("measurement", "CertGate", "reference (same run)", "ratio", "goal")
    lines = [
        (
            row.measurement,
            f"{row.value:,.1f} {row.unit}",
            f"{row.reference:,.1f} {row.unit} ({row.reference_name})"
            if row.reference is not None
            else row.reference_name,
            row.ratio,
            row.goal,
        )
        for row in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
