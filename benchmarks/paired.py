"""Paired A/B figures: the median of per-pair ratios with a bootstrap interval, and the CPU
the backends of a database spend.

Two stores measured leg by leg, minutes apart or even alternated round by round, carry the
machine's drift between their legs: switch_cost's A/A (one store on both legs) spread 0.83-1.17
for recall p50 and up to 1.58 for its ingest legs over three idle runs (RESULTS.md, issue 21,
session 14). Here each call runs on both stores back to back, the order flipped from one pair
to the next, so a pair's two calls meet the same machine and the ratio of their times keeps
the stores' difference and little else. The pairs of one query (one per round) move together,
so the bootstrap resamples queries, not pairs.

Backend CPU is read from ``/proc/<pid>/schedstat`` (nanoseconds on a CPU, counted by the
scheduler at each switch: exact where ``/proc/<pid>/stat``'s utime and stime are sampled in
10 ms ticks).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

RESAMPLES = 2000
CONFIDENCE = 0.95
# A cell is within the target when its interval's upper end is at or below it, beyond it when
# the lower end is above it; otherwise the measure cannot tell.
TARGET = 1.10
_BACKENDS = """
    SELECT pid FROM pg_stat_activity
    WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


@dataclass(frozen=True, slots=True)
class PairedRatio:
    """The median ratio of a set of pairs (B's time / A's), the bounds of its bootstrap
    interval, and how many pairs it holds."""

    median: float
    low: float
    high: float
    pairs: int

    @property
    def verdict(self) -> str:
        """``within`` TARGET, ``beyond`` it, or ``unresolved`` (the interval straddles it)."""
        if self.high <= TARGET:
            return "within"
        return "beyond" if self.low > TARGET else "unresolved"

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}]"


def paired_ratio(groups: Sequence[Sequence[float]], seed: int = 0) -> PairedRatio:
    """The median of every ratio in ``groups`` (a group: the ratios of one query or call, one a
    round) and its ``CONFIDENCE`` percentile interval over ``RESAMPLES`` resamples of whole
    groups."""
    ratios = [ratio for group in groups for ratio in group]
    generator = random.Random(seed)
    medians = sorted(
        statistics.median(
            ratio for group in generator.choices(groups, k=len(groups)) for ratio in group
        )
        for _ in range(RESAMPLES)
    )
    tail = (1 - CONFIDENCE) / 2
    return PairedRatio(
        median=statistics.median(ratios),
        low=medians[int(tail * RESAMPLES)],
        high=medians[min(RESAMPLES - 1, int((1 - tail) * RESAMPLES))],
        pairs=len(ratios),
    )


def _on_cpu_seconds(pid: int) -> float:
    """Seconds process ``pid`` has run on a CPU (0 once it has exited)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except FileNotFoundError:
        return 0.0


async def backends_cpu(admin: asyncpg.Connection, database: str) -> dict[int, float]:
    """Seconds on a CPU so far of each client backend connected to ``database`` (the server
    runs on this machine: the embedded one)."""
    pids = [row["pid"] for row in await admin.fetch(_BACKENDS, database)]
    return {pid: _on_cpu_seconds(pid) for pid in pids}


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """Seconds the backends of ``after`` ran since ``before`` (a backend new since then counts
    from zero; one gone since takes what it ran after ``before`` with it: keep pools open)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
