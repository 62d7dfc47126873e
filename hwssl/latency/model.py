"""The latency model of one hardware profile: observations, fit, prediction, storage.

Observations are of two kinds: *kernel* times (a per-kernel breakdown of a measured build, or the
best record of a workload in the profile's tuning database) and *network* times (a whole measured
candidate, with the kernels its spec lowers to). A kernel's current time is the median of its
three most recent per-kernel observations, else its tuning-database time. Tuning improves a
workload over a study (a final re-timing tunes it again at the full budget) and every build applies
the database's best schedule, so an observation is rescaled by how much the database's best time of
its kernel has dropped since it was taken; likewise a network observation keeps the kernel sum it
was taken at, so the calibration relates times of one moment. :meth:`LatencyModel.refit`
rebuilds that lookup table, the per-kind regressions and the network calibration
(:mod:`hwssl.latency.fit`); :meth:`LatencyModel.predict` is pure Python over the spec.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hwssl.latency.fit import Calibration, KernelFits, fit_calibration, fit_kernels, fit_kind, geometry, work
from hwssl.latency.kernels import KernelDesc, from_measured, spec_kernels

FORMAT = 2
RECENT = 3              # per-kernel observations of one key that make its current time
MAX_NETWORKS = 1000     # oldest network observations are dropped beyond this


class LatencyModelError(RuntimeError):
    """A model file that cannot be used here (another device, another profile, unreadable)."""


@dataclass
class Identity:
    """What a model belongs to: the device fingerprint and the profile's timing key, plus the
    batch it predicts for and the target's SIMD lanes (identity only: the fit has no lane term)."""

    device: str
    profile_key: str
    profile: str
    batch: int = 1
    lanes: int = 8
    tuned: bool = True


@dataclass
class NetworkObs:
    arch_key: str
    measured_ms: float
    kernels: list[KernelDesc]
    seq: int
    source: str = "search"
    kernel_sum_ms: float = 0.0  # the model's kernel sum when it was measured (0: not frozen yet)


@dataclass
class Prediction:
    """A spec's predicted latency and where it comes from, kernel by kernel."""

    total_ms: float
    kernel_sum_ms: float
    kernels: list[tuple[KernelDesc, float, str]]  # (kernel, ms, "table" | "fit:<source>")

    def by_layer(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, ms, _ in self.kernels:
            out[k.layer] = out.get(k.layer, 0.0) + ms
        return out


@dataclass
class LatencyModel:
    identity: Identity
    # key -> [(seq, ms, arch, database ms then (0: none))]
    kernel_obs: dict[str, list[tuple[int, float, str, float]]] = field(default_factory=dict)
    descs: dict[str, KernelDesc] = field(default_factory=dict)
    db_obs: dict[str, float] = field(default_factory=dict)                       # key -> best tuned ms
    networks: list[NetworkObs] = field(default_factory=list)
    seq: int = 0
    path: Path | None = None
    fits: KernelFits = field(default_factory=KernelFits)
    calibration: Calibration = field(default_factory=Calibration)
    table: dict[str, tuple[KernelDesc, float]] = field(default_factory=dict)
    residuals: dict[tuple[object, ...], list[tuple[float, float]]] = field(default_factory=dict)
    _memo: dict[str, tuple[float, str]] = field(default_factory=dict, repr=False)  # key -> price, per fit

    # -- observations ------------------------------------------------------------------------------------------

    @property
    def points(self) -> int:
        """Measured networks the current fit has seen."""
        return len(self.networks)

    def add_kernel(self, desc: KernelDesc, ms: float, arch: str = "") -> None:
        if ms <= 0:
            return
        self.seq += 1
        base = KernelDesc(desc.kind, desc.args, desc.out)
        self.descs.setdefault(base.key, base)
        self.kernel_obs.setdefault(base.key, []).append((self.seq, float(ms), arch, self.db_obs.get(base.key, 0.0)))

    def add_measurement(self, spec: dict[str, Any], measured_ms: float, *, arch_key: str = "",
                        per_kernel: Sequence[dict[str, Any]] = (), source: str = "search") -> None:
        """Record one measured network (and its per-kernel breakdown when given). A repeat of the same
        ``arch_key`` replaces its earlier observation (and its earlier breakdown, when it brings a new
        one). Call :meth:`refit` afterwards."""
        if arch_key:
            self.networks = [n for n in self.networks if n.arch_key != arch_key]
        if arch_key and per_kernel:
            for key, obs in list(self.kernel_obs.items()):
                kept = [o for o in obs if o[2] != arch_key]
                if kept:
                    self.kernel_obs[key] = kept
                else:
                    del self.kernel_obs[key]
        for row in per_kernel:
            desc = from_measured(row)
            if desc is not None and row.get("ms") is not None:
                self.add_kernel(desc, float(row["ms"]), arch_key)
        if measured_ms and measured_ms > 0:
            self.seq += 1
            self.networks.append(NetworkObs(arch_key, float(measured_ms),
                                            spec_kernels(spec, self.identity.batch), self.seq, source))
            self.networks = self.networks[-MAX_NETWORKS:]

    def set_database(self, entries: Sequence[tuple[KernelDesc, float]]) -> None:
        """Replace the tuning-database kernel times (re-read at every refit)."""
        self.db_obs = {}
        for desc, ms in entries:
            self.descs.setdefault(desc.key, desc)
            self.db_obs[desc.key] = min(ms, self.db_obs.get(desc.key, float("inf")))

    # -- fit and predict ---------------------------------------------------------------------------------------

    def refit(self) -> None:
        self._memo = {}
        table: dict[str, tuple[KernelDesc, float]] = {}
        in_network = self._database_to_network()
        for key, ms in self.db_obs.items():
            desc = self.descs[key]
            table[key] = (desc, ms * in_network.get(fit_kind(desc), in_network.get("", 1.0)))
        for key, obs in self.kernel_obs.items():
            recent = [self._retuned(key, ms, db_then) for _, ms, _, db_then in sorted(obs)[-RECENT:]]
            table[key] = (self.descs[key], float(statistics.median(recent)))
        self.table = table
        self.fits = fit_kernels(table)
        self.residuals = {}
        for desc, ms in table.values():
            x = work(desc)
            line = self.fits.line(fit_kind(desc))(x)
            if x > 0 and line > 0 and ms > 0:
                self.residuals.setdefault(geometry(desc), []).append((math.log(x), math.log(ms / line)))
        rows = []
        for net in self.networks:
            if net.kernel_sum_ms <= 0:
                net.kernel_sum_ms = sum(self._kernel_ms(k)[0] for k in net.kernels)
            rows.append((net.kernel_sum_ms, len(net.kernels), net.measured_ms))
        self.calibration = fit_calibration(rows)

    def _database_to_network(self) -> dict[str, float]:
        """Per fit kind (and ``""`` over all kinds): the median ratio of a kernel's time measured inside
        a network to its tuning-database time when it was measured. The tuner times a kernel alone with
        its own repeats and warm caches; a database-only kernel is priced at its time times that ratio."""
        ratios: dict[str, list[float]] = {}
        for key, obs in self.kernel_obs.items():
            kind = fit_kind(self.descs[key])
            for _, ms, _, db_then in obs:
                if db_then > 0:
                    ratios.setdefault(kind, []).append(ms / db_then)
                    ratios.setdefault("", []).append(ms / db_then)
        return {kind: float(statistics.median(r)) for kind, r in ratios.items()}

    def _retuned(self, key: str, ms: float, db_then: float) -> float:
        """A per-kernel observation scaled to the database's current best time of its kernel."""
        db_now = self.db_obs.get(key)
        if db_then > 0 and db_now is not None and 0 < db_now < db_then:
            return ms * db_now / db_then
        return ms

    @property
    def version(self) -> int:
        """Observation counter: two predictions with the same version come from the same data."""
        return self.seq

    @property
    def fitted(self) -> bool:
        """Whether the model has seen anything to predict from."""
        return bool(self.table) or bool(self.networks)

    def _kernel_ms(self, k: KernelDesc) -> tuple[float, str]:
        key = k.key
        memo = self._memo.get(key)
        if memo is None:
            memo = self._memo[key] = self._price(k, key)
        return memo

    def _regression_ms(self, k: KernelDesc) -> tuple[float, float, str]:
        """(ms, work, line source) of a kernel by its kind's regression alone."""
        line = self.fits.line(fit_kind(k))
        x = work(k)
        return max(line(x), 1e-6), x, line.source

    def _price(self, k: KernelDesc, key: str) -> tuple[float, str]:
        hit = self.table.get(key)
        if hit is not None:
            return hit[1], "table"
        ms, x, source = self._regression_ms(k)
        near = self.residuals.get(geometry(k))
        if not near or x <= 0:
            return ms, f"fit:{source}"
        lx = math.log(x)
        closest = sorted(near, key=lambda p: abs(p[0] - lx))[:2]
        weights = [1.0 / (abs(p[0] - lx) + 0.1) for p in closest]
        corr = sum(w * p[1] for w, p in zip(weights, closest)) / sum(weights)
        return ms * math.exp(corr), f"fit:{source}+neighbours"

    def kernel_ms(self, k: KernelDesc) -> float:
        """One kernel's predicted time (lookup, else the kind's regression)."""
        return self._kernel_ms(k)[0]

    def explain(self, spec: dict[str, Any]) -> Prediction:
        kernels = spec_kernels(spec, self.identity.batch)
        rows = [(k, *self._kernel_ms(k)) for k in kernels]
        ksum = sum(ms for _, ms, _ in rows)
        return Prediction(self.calibration(ksum, len(kernels)), ksum, rows)

    def predict(self, spec: dict[str, Any]) -> float:
        """Predicted network latency (ms) of an architecture spec on this profile."""
        return self.explain(spec).total_ms

    def predict_smooth(self, spec: dict[str, Any]) -> float:
        """The prediction from the per-kind regressions alone (no lookup table, no neighbours):
        what latency-weighted SSL compares widths with. Two widths of one kernel a few filters apart
        differ by less than cheaply tuned schedules of them do (LeNet's conv1: 6.0 us at 20 filters,
        10.5 us at 16), so differences of table times would rank groups by tuning luck; the
        regressions average the luck out."""
        kernels = spec_kernels(spec, self.identity.batch)
        return self.calibration(sum(self._regression_ms(k)[0] for k in kernels), len(kernels))

    # -- storage -----------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Kernel descriptions are stored once (``descs``); networks list indices into them."""
        index: dict[KernelDesc, int] = {}
        for net in self.networks:
            for k in net.kernels:
                index.setdefault(k, len(index))
        return {
            "format": FORMAT, "identity": vars(self.identity), "seq": self.seq,
            "kernels": {key: {"desc": self.descs[key].to_json(), "obs": [list(o) for o in obs]}
                        for key, obs in self.kernel_obs.items()},
            "descs": [k.to_json() for k in index],
            "networks": [{"arch_key": n.arch_key, "measured_ms": n.measured_ms, "seq": n.seq, "source": n.source,
                          "kernel_sum_ms": n.kernel_sum_ms, "kernels": [index[k] for k in n.kernels]}
                         for n in self.networks],
            "fit": {"kernels": self.fits.to_json(), "calibration": self.calibration.to_json(),
                    "table_size": len(self.table), "database_kernels": len(self.db_obs)},
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically to ``path`` (default: where it was loaded from)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no path to save the latency model to")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")))
        tmp.replace(target)
        self.path = target
        return target

    @staticmethod
    def from_json(data: dict[str, Any], path: Path | None = None) -> "LatencyModel":
        ident = Identity(**data["identity"])
        model = LatencyModel(identity=ident, seq=int(data.get("seq", 0)), path=path)
        for key, entry in data.get("kernels", {}).items():
            desc = KernelDesc.from_json(entry["desc"])
            model.descs[desc.key] = desc
            model.kernel_obs[desc.key] = [(int(o[0]), float(o[1]), str(o[2]), float(o[3]) if len(o) > 3 else 0.0)
                                          for o in entry["obs"]]
        descs = [KernelDesc.from_json(k) for k in data.get("descs", [])]
        for n in data.get("networks", []):
            model.networks.append(NetworkObs(str(n["arch_key"]), float(n["measured_ms"]),
                                             [descs[int(i)] for i in n["kernels"]], int(n["seq"]),
                                             str(n.get("source", "search")), float(n.get("kernel_sum_ms", 0.0))))
        return model


def load_model_file(path: str | Path, expected: Identity) -> LatencyModel:
    """Read a model file, refusing one fitted on another device or for another timing setup."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise LatencyModelError(f"{path}: latency model format {data.get('format')!r}, expected {FORMAT}; "
                                    "delete the file to start a new model")
        ident = data["identity"]
        have_device, have_key = ident["device"], ident["profile_key"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LatencyModelError(f"{path}: unreadable latency model ({type(exc).__name__}: {exc}); "
                                "delete the file to start a new model") from None
    if have_device != expected.device:
        raise LatencyModelError(f"{path}: latency model fitted on device {have_device!r}, but this profile runs "
                                f"on {expected.device!r}; it is not used (delete it or point tuning.database "
                                "elsewhere)")
    if have_key != expected.profile_key or int(ident.get("batch", 1)) != expected.batch:
        raise LatencyModelError(f"{path}: latency model fitted for profile key {have_key!r} at batch "
                                f"{ident.get('batch', 1)}, expected {expected.profile_key!r} at batch "
                                f"{expected.batch} (threads, target or timing changed); delete the file")
    try:
        return LatencyModel.from_json(data, path)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise LatencyModelError(f"{path}: unreadable latency model ({type(exc).__name__}: {exc}); "
                                "delete the file to start a new model") from None
