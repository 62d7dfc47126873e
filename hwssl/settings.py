"""How a candidate is measured: one object instead of loose flags threaded through every call."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class MeasureSettings:
    """``tune``: tune new workloads (else time untuned builds, labelled so); ``trials_per_task``:
    MetaSchedule budget per new workload (None = the profile's cheap budget); ``per_layer``: add a
    per-kernel breakdown; ``precision``: what the candidate deploys as (``int8`` makes its int8
    variant the headline); ``int8``: also measure the int8 variant of an fp32 candidate (None =
    the space's ``quant.every_trial``)."""

    tune: bool = True
    trials_per_task: int | None = None
    per_layer: bool = False
    precision: str = "fp32"
    int8: bool | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be fp32 or int8, got {self.precision!r}")

    def measures_int8(self, every_trial: bool) -> bool:
        """Whether the int8 variant is measured, given the space's ``quant.every_trial``."""
        return self.precision == "int8" or (every_trial if self.int8 is None else self.int8)
