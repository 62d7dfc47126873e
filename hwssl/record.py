"""The typed record of one trial: what a candidate measured, per precision, profile and fidelity.

A trial's result is stored as the Optuna user attribute ``result`` (a JSON dict).
:class:`TrialRecord` is the one way to read (``from_dict``) and write (``to_dict``)
it, so the rules live here once:

* :meth:`TrialRecord.latency` -- the latency of this trial on a profile: the final
  (fully tuned) re-timing when there is one, else the cheap timing of the search;
* :meth:`TrialRecord.dense_latency` -- the dense network's, by the same rule (the
  dense final re-timing counts for a trial that was itself re-timed on that profile,
  so both sides of a speed-up have the same tuning budget);
* precisions are :class:`Variant` s (``fp32``, ``int8``); the deployed one is the
  headline (``accuracy``, ``latency``) and nothing is renamed in place.

Stored layout (``schema`` 2; a dict without ``schema`` is version 1, written before
this module, and reads the same): the deployed variant's numbers are ``accuracy``,
``accuracy_test``, ``latency_ms``; an fp32 variant of an int8 trial is kept as
``accuracy_fp32``, ``accuracy_fp32_test``, ``latency_ms_fp32``; an int8 variant as
``accuracy_int8``, ``accuracy_int8_test``, ``latency_ms_int8``; the dense network's
as ``accuracy_dense``, ``accuracy_dense_test``, ``latency_ms_dense``. An int8
headline latency carries the fp32 candidate's PyTorch time (eager has no fast int8
convolution on CPU). Every other key, in a result or in a latency dict, is kept
verbatim (``extra``), so fields added by other code survive a round trip.

Final re-timings cannot be written into a finished trial; they are study user
attributes (``final_latency:<trial>``, ``final_latency_dense``) that
:func:`hwssl.results.trial_records` attaches with :meth:`TrialRecord.attach_final`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

SCHEMA_VERSION = 2
PRECISIONS = ("fp32", "int8")
INT8_TORCH_NOTE = "torch: PyTorch eager of the fp32 candidate (eager has no fast int8 convolution on CPU)"

_LATENCY_KEYS = ("tvm", "torch", "tuned", "tvm_samples_ms")
# result keys the record types; everything else is kept verbatim in ``extra``
_RECORD_KEYS = {"schema", "method", "method_params", "precision", "accuracy", "accuracy_test", "accuracy_fp32",
                "accuracy_fp32_test", "accuracy_int8", "accuracy_int8_test", "accuracy_dense", "accuracy_dense_test",
                "latency_ms", "latency_ms_fp32", "latency_ms_int8", "latency_ms_dense", "latency_ms_final",
                "latency_ms_dense_final", "flops", "flops_dense", "params", "params_dense"}


@dataclass
class Latency:
    """One timing of one network on one profile (what :func:`hwssl.deploy.measure_candidate` returns)."""

    tvm: float | None = None                  # median ms of the TVM build; None when not timed here
    torch: float | None = None                # PyTorch eager ms on the same host
    tuned: bool = False
    samples: list[float] | None = None        # the TVM samples (ms)
    extra: dict[str, Any] = field(default_factory=dict)   # target, device, per_layer, skipped, ... verbatim

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Latency":
        return cls(tvm=d.get("tvm"), torch=d.get("torch"), tuned=bool(d.get("tuned", False)),
                   samples=d.get("tvm_samples_ms"),
                   extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _LATENCY_KEYS})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tvm": self.tvm, "torch": self.torch, "tuned": self.tuned}
        if self.samples is not None:
            out["tvm_samples_ms"] = list(self.samples)
        out.update(copy.deepcopy(self.extra))
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """A field by its stored name (``tvm``, ``torch``, ``tuned``, ``per_layer``, ``skipped``, ...)."""
        value = self.to_dict().get(key, default)
        return default if value is None else value

    @property
    def per_layer(self) -> list[dict[str, Any]]:
        return list(self.extra.get("per_layer") or [])

    @property
    def skipped(self) -> str | None:
        return self.extra.get("skipped")

    @property
    def target(self) -> str:
        return str(self.extra.get("target") or "")


@dataclass
class Timing:
    """One network on one profile at each fidelity: the search's cheap timing and the final one."""

    cheap: Latency | None = None
    final: Latency | None = None

    @property
    def best(self) -> Latency | None:
        """The rule: the final re-timing when present, else the cheap one."""
        return self.final if self.final is not None else self.cheap


@dataclass
class Variant:
    """A network at one precision: validation and test accuracy, timings per profile."""

    precision: str
    accuracy: float | None = None
    accuracy_test: float | None = None
    timings: dict[str, Timing] = field(default_factory=dict)

    def cheap_dict(self) -> dict[str, dict[str, Any]]:
        return {p: t.cheap.to_dict() for p, t in self.timings.items() if t.cheap is not None}


def _variant(precision: str, acc: Any, acc_test: Any, latency: Mapping[str, Any] | None) -> Variant:
    return Variant(precision, acc, acc_test,
                   {p: Timing(cheap=Latency.from_dict(d)) for p, d in (latency or {}).items() if isinstance(d, dict)})


@dataclass
class TrialRecord:
    """Everything one trial measured; see the module docstring for the stored layout."""

    method: str = "ssl"
    method_params: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"                                   # what the candidate deploys as
    variants: dict[str, Variant] = field(default_factory=dict)  # "fp32" always; "int8" when measured
    dense: Variant = field(default_factory=lambda: Variant("fp32"))
    flops: int | None = None                                  # MACs per image
    flops_dense: int | None = None
    params: int | None = None
    params_dense: int | None = None
    timed: bool = False                                       # latencies were measured (profiles given)
    extra: dict[str, Any] = field(default_factory=dict)       # layers, arch, sparsity, wall_s, ... verbatim
    schema: int = SCHEMA_VERSION

    # -- reading ----------------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialRecord":
        """Read a stored result (any schema version so far)."""
        precision = str(d.get("precision", "fp32"))
        if precision == "int8" and "accuracy_fp32" in d:
            fp32 = _variant("fp32", d.get("accuracy_fp32"), d.get("accuracy_fp32_test"), d.get("latency_ms_fp32"))
        else:
            fp32 = _variant("fp32", d.get("accuracy"), d.get("accuracy_test"), d.get("latency_ms"))
        variants = {"fp32": fp32}
        if "accuracy_int8" in d or precision == "int8":
            variants["int8"] = _variant("int8", d.get("accuracy_int8", d.get("accuracy")),
                                        d.get("accuracy_int8_test", d.get("accuracy_test")),
                                        d.get("latency_ms_int8", d.get("latency_ms")))
        rec = cls(method=str(d.get("method", "ssl")), method_params=copy.deepcopy(d.get("method_params") or {}),
                  precision=precision, variants=variants,
                  dense=_variant("fp32", d.get("accuracy_dense"), d.get("accuracy_dense_test"),
                                 d.get("latency_ms_dense")),
                  flops=d.get("flops"), flops_dense=d.get("flops_dense"), params=d.get("params"),
                  params_dense=d.get("params_dense"), timed="latency_ms" in d,
                  extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _RECORD_KEYS},
                  schema=int(d.get("schema", 1)))
        for profile, final in (d.get("latency_ms_final") or {}).items():
            rec.attach_final(profile, final, (d.get("latency_ms_dense_final") or {}).get(profile))
        return rec

    @property
    def deployed(self) -> Variant:
        return self.variants[self.precision]

    @property
    def accuracy(self) -> float | None:
        """Validation accuracy of what the candidate deploys as (the searched objective)."""
        return self.deployed.accuracy

    @property
    def accuracy_test(self) -> float | None:
        return self.deployed.accuracy_test

    @property
    def int8(self) -> Variant | None:
        return self.variants.get("int8")

    @property
    def fp32(self) -> Variant:
        return self.variants["fp32"]

    @property
    def profiles(self) -> list[str]:
        return list(self.deployed.timings)

    def cheap_latency(self, profile: str) -> Latency | None:
        """The deployed variant's cheap timing; an int8 one carries the fp32 candidate's PyTorch time."""
        timing = self.deployed.timings.get(profile)
        if timing is None or timing.cheap is None:
            return None
        if self.precision != "int8":
            return timing.cheap
        fp32 = self.fp32.timings.get(profile)
        torch = fp32.cheap.torch if fp32 is not None and fp32.cheap is not None else None
        return Latency(timing.cheap.tvm, torch, timing.cheap.tuned, timing.cheap.samples,
                       {**timing.cheap.extra, "torch_note": INT8_TORCH_NOTE})

    def latency(self, profile: str) -> Latency | None:
        """The latency of this trial on ``profile``: final re-timing if present, else cheap."""
        timing = self.deployed.timings.get(profile)
        if timing is not None and timing.final is not None:
            return timing.final
        return self.cheap_latency(profile)

    def is_final(self, profile: str) -> bool:
        timing = self.deployed.timings.get(profile)
        return timing is not None and timing.final is not None

    def dense_latency(self, profile: str) -> Latency | None:
        """The dense network's latency on ``profile`` by the same rule."""
        timing = self.dense.timings.get(profile)
        return None if timing is None else timing.best

    def speedup(self, profile: str) -> float | None:
        """Dense TVM latency over this trial's, or None when either is missing."""
        lat, dense = self.latency(profile), self.dense_latency(profile)
        if lat is None or dense is None or not lat.tvm or not dense.tvm:
            return None
        return dense.tvm / lat.tvm

    @property
    def flops_ratio(self) -> float | None:
        if self.flops is None or self.flops_dense is None:
            return None
        return self.flops_dense / max(self.flops, 1)

    # -- writing ----------------------------------------------------------------------------------------------

    def attach_final(self, profile: str, final: Mapping[str, Any] | None,
                     dense_final: Mapping[str, Any] | None = None) -> None:
        """Attach a final re-timing of the deployed network (and of the dense one) on ``profile``."""
        if final is None:
            return
        self.deployed.timings.setdefault(profile, Timing()).final = Latency.from_dict(final)
        if dense_final is not None:
            self.dense.timings.setdefault(profile, Timing()).final = Latency.from_dict(dense_final)

    def to_dict(self) -> dict[str, Any]:
        """The stored layout (final re-timings are study attributes, not part of it)."""
        out: dict[str, Any] = copy.deepcopy(self.extra)
        deployed = self.deployed
        out.update(schema=SCHEMA_VERSION, method=self.method, method_params=copy.deepcopy(self.method_params),
                   precision=self.precision, accuracy=deployed.accuracy, accuracy_test=deployed.accuracy_test,
                   accuracy_dense=self.dense.accuracy, accuracy_dense_test=self.dense.accuracy_test,
                   flops=self.flops, flops_dense=self.flops_dense, params=self.params, params_dense=self.params_dense)
        if self.timed:
            out["latency_ms"] = {p: lat.to_dict() for p in deployed.timings
                                 if (lat := self.cheap_latency(p)) is not None}
            out["latency_ms_dense"] = self.dense.cheap_dict()
        int8 = self.int8
        if int8 is not None:
            out.update(accuracy_int8=int8.accuracy, accuracy_int8_test=int8.accuracy_test,
                       latency_ms_int8=int8.cheap_dict())
        if self.precision == "int8":
            out.update(accuracy_fp32=self.fp32.accuracy, accuracy_fp32_test=self.fp32.accuracy_test)
            if self.timed:
                out["latency_ms_fp32"] = self.fp32.cheap_dict()
        return out
