"""A latency model per hardware profile: a compacted candidate's TVM latency from its architecture spec.

**What it sees.** :func:`hwssl.latency.kernels.spec_kernels` walks a spec (``model_spec(...)`` or a
compacted net's ``arch.json``) into the kernels TVM runs for it at the profile's batch: fused convs,
the lowered path of shape-sparse convs (pad, one strided slice per kept kernel offset, channel
``take`` s, a concatenation, a 1x1 GEMM), channel gathers, pools, reshapes, dense layers. Removed
residual blocks contribute no kernel (or their shortcut conv). Each kernel costs its measured time
when the same shapes were measured, else ``c0 + c1 * work`` for its kind: ``c0`` is the kernel's
fixed cost (dispatch), and ``work`` is the MACs of convs and dense layers (the elements moved by
memory kernels), corrected by the residuals of measured kernels of the same geometry. The
network is ``s * sum(kernels) + a + b * n_kernels`` (VM bookkeeping per call). Not MACs.

**What it is fitted from.** Per-kernel timings of tuned builds (the breakdown
:func:`hwssl.deploy.measure.per_kernel_times` records with argument shapes), the best record of
every workload in the profile's MetaSchedule database (:mod:`hwssl.latency.tunedb`), and whole
measured networks (for ``s``, ``a``, ``b``; :mod:`hwssl.latency.fit`).

**When it refits.** Every measured candidate (search trials, the dense baseline, the final
re-timing) goes through :func:`observe`: the model predicts the spec first (recorded as
``predicted_ms`` beside the measurement, with the model's ``version`` and ``points``), then adds the
measurement, refits (milliseconds) and saves.

**Where it is stored.** ``<tuning database dir>/latency_model.json`` (``_untuned`` for untuned
timings), stamped with the device fingerprint and the profile's timing key; a file from another
CPU or timing setup is refused with a one-line :class:`LatencyModelError`.

Use: ``predict = predictor(profile)``; ``predict(spec)`` -> ms (pure Python, well under 10 ms).
"""

from hwssl.latency.kernels import KernelDesc, spec_kernels
from hwssl.latency.model import LatencyModel, LatencyModelError, Prediction
from hwssl.latency.store import load_model, model_path, observe, predictor

__all__ = ["KernelDesc", "LatencyModel", "LatencyModelError", "Prediction", "load_model", "model_path",
           "observe", "predictor", "spec_kernels"]
