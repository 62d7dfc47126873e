"""A timing protocol that resists load: several networks timed together in alternating rounds.

On a shared machine the load changes over seconds, so two networks timed one
after the other see different machines, and their ratio moves from process to
process (issue 14: 1.10x-1.59x for the same LeNet pair). :func:`time_interleaved`
times every network once per round, in alternating order (forward, then
backward, so no network always runs first after another's spinning threads),
until each series has settled: its interquartile range over its median is at most
the profile's ``timing.max_spread``, after at least ``timing.rounds`` rounds. A
series that has not settled after ``timing.max_rounds`` is flagged ``noisy``.
Every network sees the same load, so their ratio holds even when absolute times
do not; the samples are kept so a report can draw error bars.

A *runner* is a callable that takes one round's samples of one network (e.g.
TVM's ``time_evaluator`` with warm-up, or ONNX Runtime, on a given thread count)
and returns them in milliseconds; this module knows nothing about runtimes.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from hwssl.config.profile import TimingSettings

Runner = Callable[[], list[float]]


def quartiles(samples: Sequence[float]) -> tuple[float, float]:
    """(first, third) quartile; both the single value when there is one sample."""
    if len(samples) < 2:
        return float(samples[0]), float(samples[0])
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return float(q[0]), float(q[2])


@dataclass
class Timing:
    """Milliseconds of one network run, one sample per repeat (``repeat`` per round)."""

    samples_ms: list[float]
    threads: int | None = None
    rounds: int = 1
    noisy: bool = False
    round_medians_ms: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.samples_ms))

    @property
    def iqr_ms(self) -> tuple[float, float]:
        return quartiles(self.samples_ms)

    @property
    def spread(self) -> float:
        """Interquartile range over the median (0 = every sample equal)."""
        q1, q3 = self.iqr_ms
        med = self.median_ms
        return (q3 - q1) / med if med > 0 else 0.0

    def summary(self, prefix: str) -> dict[str, Any]:
        """The JSON fields a latency record keeps for this series, named ``<prefix>_...``."""
        q1, q3 = self.iqr_ms
        return {prefix: self.median_ms, f"{prefix}_samples_ms": list(self.samples_ms),
                f"{prefix}_iqr_ms": [q1, q3], f"{prefix}_min_ms": min(self.samples_ms),
                f"{prefix}_max_ms": max(self.samples_ms), f"{prefix}_rounds": self.rounds,
                f"{prefix}_spread": round(self.spread, 4)}


def _settled(samples: list[float], max_spread: float) -> bool:
    return Timing(samples).spread <= max_spread


#: a series this many times slower than the fastest of its group after a round stops being timed
RETIRE_FACTOR = 2.0


def time_interleaved(runners: Sequence[Runner], settings: TimingSettings, *, groups: Sequence[Any] | None = None,
                     threads: Sequence[int | None] | None = None, settle: bool = True,
                     side: Sequence[bool] | None = None) -> list[Timing]:
    """Time ``runners`` together in alternating rounds; one :class:`Timing` per runner, in order.

    ``groups`` labels alternatives: series of one group (e.g. one network in one runtime at
    several thread counts) compete, and only the fastest of each group must settle; a series
    :data:`RETIRE_FACTOR` times slower than its group's fastest after a round cannot win and is
    not timed again (under load a thread count that shares a busy core can be 10-300x slower).
    Without ``groups`` every series is its own group. Rounds go on until the fastest series of
    every group has a spread <= ``settings.max_spread``, with at least ``settings.rounds`` and at
    most ``settings.max_rounds`` rounds; a fastest series that did not settle is ``noisy``.
    ``settle=False`` runs exactly ``settings.rounds`` rounds (a side measurement that should not
    cost more rounds) and flags every unsettled series. ``threads`` labels each series. ``side``
    marks series that are timed in every round but never ask for more rounds (the peer runtimes
    beside TVM): they are flagged ``noisy`` when they did not settle in the rounds the others took.
    """
    if not runners:
        return []
    labels = list(groups) if groups is not None else list(range(len(runners)))
    samples: list[list[float]] = [[] for _ in runners]
    medians: list[list[float]] = [[] for _ in runners]
    active = list(range(len(runners)))
    rounds = 0
    while True:
        for i in (active if rounds % 2 == 0 else active[::-1]):
            got = runners[i]()
            samples[i] += got
            medians[i].append(float(statistics.median(got)))
        rounds += 1
        timings = [Timing(s) for s in samples]
        best = best_by_group(timings, labels)
        active = [i for i in active if timings[i].median_ms <= RETIRE_FACTOR * timings[best[labels[i]]].median_ms]
        watched = list(best.values()) if settle else list(range(len(runners)))
        unsettled = [i for i in watched if not _settled(samples[i], settings.max_spread)]
        if not settle and rounds >= settings.rounds:
            break
        driving = [i for i in unsettled if not (side and side[i])]
        if rounds >= settings.max_rounds or (rounds >= settings.rounds and not driving):
            break
    noisy = set(unsettled)
    counts = list(threads) if threads is not None else [None] * len(runners)
    return [Timing(s, counts[i], len(medians[i]), i in noisy, medians[i]) for i, s in enumerate(samples)]


def best_by_group(timings: Sequence[Timing], groups: Sequence[Any]) -> dict[Any, int]:
    """For each group (e.g. a network), the index of its fastest series (lowest median)."""
    best: dict[Any, int] = {}
    for i, (t, g) in enumerate(zip(timings, groups)):
        if t.samples_ms and (g not in best or t.median_ms < timings[best[g]].median_ms):
            best[g] = i
    return best


def allowed_cpus() -> list[int] | None:
    """The CPUs this process may run on (None where the OS does not say)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return None


def _idle_ticks() -> dict[int, int]:
    ticks = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                ticks[int(parts[0][3:])] = int(parts[4]) + int(parts[5])  # idle + iowait
    return ticks


def cpus_busiest_first(sample_s: float = 0.1) -> list[int] | None:
    """The allowed CPUs, the busiest first (by idle time over ``sample_s``; Linux ``/proc/stat``).

    TVM pins worker thread i to the (i+1)-th listed CPU and lets the main thread float, so this
    order puts the workers on the idlest CPUs: a worker pinned to a core that another process
    keeps busy stalls every parallel region (seen here: a LeNet run 100x slower). Falls back
    to :func:`allowed_cpus` where ``/proc/stat`` cannot be read."""
    cpus = allowed_cpus()
    if not cpus:
        return cpus
    try:
        before = _idle_ticks()
        time.sleep(sample_s)
        after = _idle_ticks()
    except (OSError, ValueError, IndexError):
        return cpus
    return sorted(cpus, key=lambda c: after.get(c, 0) - before.get(c, 0))
