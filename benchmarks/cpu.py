"""CPU seconds spent by the processes of a benchmark (psutil).

Wall-clock rates on a shared 2-core machine move with whatever else runs; the CPU time each
process of a measured path spends per operation moves less (the kernel charges a process only
for what it ran), though contention for caches and the scheduler still inflated it by 15-22%
between runs of issue 22 (RESULTS.md): compare processes within one leg rather than
milliseconds across runs. ``CpuMeter`` takes a snapshot of named process trees and of the whole
machine; the difference of two snapshots, divided by the operations in between, is what each
process costs per operation, and the machine's busy time not charged to any of them is what
other jobs took meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import psutil

OTHER = "other jobs"


def _own_seconds(process: psutil.Process, with_reaped: bool) -> float:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return 0.0  # exited between the listing and the read
    seconds = times.user + times.system
    if with_reaped:
        seconds += times.children_user + times.children_system
    return seconds


def _tree_seconds(root: psutil.Process) -> float:
    """CPU seconds of ``root`` and every living descendant, plus what the root's reaped
    children spent (PostgreSQL's postmaster reaps its backends)."""
    try:
        descendants = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    return _own_seconds(root, with_reaped=True) + sum(
        _own_seconds(child, with_reaped=False) for child in descendants
    )


def machine_busy_seconds() -> float:
    """CPU seconds the machine's cores spent not idle, since boot."""
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system
    # Linux only: interrupts and a hypervisor's steal; guest time is already inside user.
    for name in ("irq", "softirq", "steal"):
        busy += getattr(times, name, 0.0)
    return busy


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU seconds per named process tree, and the machine's busy seconds."""

    trees: dict[str, float]
    machine: float

    def __sub__(self, earlier: CpuSnapshot) -> dict[str, float]:
        """Seconds spent between ``earlier`` and this snapshot per tree, and by other jobs."""
        spent = {name: self.trees[name] - earlier.trees[name] for name in self.trees}
        spent[OTHER] = max(0.0, self.machine - earlier.machine - sum(spent.values()))
        return spent


class CpuMeter:
    """Snapshots of named process trees. ``alone`` names processes counted without their
    descendants (the load generator, whose children are measured under their own names)."""

    def __init__(self, trees: Mapping[str, int], alone: Mapping[str, int]) -> None:
        self._trees = {name: psutil.Process(pid) for name, pid in trees.items()}
        self._alone = {name: psutil.Process(pid) for name, pid in alone.items()}

    def snapshot(self) -> CpuSnapshot:
        seconds = {name: _tree_seconds(root) for name, root in self._trees.items()}
        for name, process in self._alone.items():
            seconds[name] = _own_seconds(process, with_reaped=False)
        return CpuSnapshot(seconds, machine_busy_seconds())
