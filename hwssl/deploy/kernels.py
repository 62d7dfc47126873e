"""Which kernels do arithmetic: shared by the build (which reports compute kernels left without
a schedule) and the tuner (which tunes only those), so neither imports the other."""

from __future__ import annotations

#: Kernels whose name contains one of these do arithmetic worth a schedule search. The rest
#: (strided slices and concatenations of lowered convs, takes, reshapes) are memory moves:
#: a lowered LeNet had 34 tasks, most of them slices, and the 32-trial re-timing of one
#: candidate took 8 minutes on 2 cores. They keep TVM's default schedule.
COMPUTE_KERNELS = ("conv", "matmul", "dense", "pool", "mean", "sum")


def worth_tuning(kernel_name: str) -> bool:
    """A kernel (or tuning task) name that does arithmetic worth a schedule search."""
    return any(op in kernel_name for op in COMPUTE_KERNELS)
