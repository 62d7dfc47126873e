"""The cost oracle a search space's ``ssl.oracle`` names, resolved for the candidate's profiles.

* ``"macs"``: :func:`hwssl.budget.oracle.spec_macs` (MACs per image, no profile needed).
* ``"latency"``: the per-profile latency model (:func:`hwssl.latency.store.predictor`) of the
  FIRST target profile, tuned or untuned as the candidate is measured; costs are ms.

Fallback: a latency model that has seen nothing yet (no measured network, no kernel in the
profile's tuning database) prices every spec the same (its regressions have no data), so a
budget could never be steered with it. Then the run prices with MACs instead and says so in one
warning line on stderr; the record's ``oracle`` reads ``"macs"`` and ``oracle_note`` says why.
Budget targets are fractions of the dense net's cost under the same oracle, so either is usable;
after the first measured trial the model has data and later trials price in ms.

Cold start: :func:`start_oracle`, what an SSL run from a :class:`hwssl.evaluate.DenseStart`
uses, does not wait for that. When the model has no data it first measures the dense net on the
first profile, tuned with the profile's full budget when the run is tuned
(:func:`seed_trials_per_task`), so the model knows each of its kernels and the first run prices in
ms too. It matters where one SSL run is all there is (a regularisation path gives a study's first
several candidates, or ``hwssl evaluate`` runs one): MACs miss a kernel's fixed cost, a lowered
conv or a removed block's dispatch, and a MAC-priced run never learns them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

from hwssl.budget.oracle import Predict, spec_macs
from hwssl.config import ConfigError
from hwssl.config.space import ORACLE_NAMES


class OracleError(ConfigError):
    """A cost oracle that cannot be used as configured (one line, names the key)."""


@dataclass(frozen=True)
class CostOracle:
    name: str                      # what actually prices: "macs" or "latency"
    predict: Predict
    units: str                     # "MACs" or "ms"
    profile: str = ""              # the latency model's profile
    note: str = ""                 # why the configured oracle was replaced, if it was
    smooth: Predict | None = None  # what group savings are priced with (default: predict)

    @property
    def weigh(self) -> Predict:
        """The cost latency-weighted SSL compares zero patterns with (the model's smooth part)."""
        return self.smooth if self.smooth is not None else self.predict

    def record(self, run: dict[str, Any]) -> dict[str, Any]:
        """What a trial records about its oracle (and ``predicted_ms`` when costs are ms)."""
        out: dict[str, Any] = {"oracle": self.name, "oracle_units": self.units}
        if self.profile:
            out["oracle_profile"] = self.profile
        if self.note:
            out["oracle_note"] = self.note
        if self.units == "ms" and run.get("predicted") is not None:
            out["predicted_ms"] = run["predicted"]
        return out


MAC_ORACLE = CostOracle("macs", spec_macs, "MACs")


def uses_oracle(space: Any) -> bool:
    """Whether SSL of ``space`` prices specs at all (latency weights, a budget, a budget/path search)."""
    return bool(space.ssl.latency_weighted or space.ssl.target > 0 or space.search.mode in ("budget", "path"))


def check_oracle(space: Any, profiles: Sequence[Any]) -> None:
    """Refuse ``ssl.oracle = "latency"`` without a profile to price on (before any training)."""
    if space.ssl.oracle == "latency" and uses_oracle(space) and not profiles:
        raise OracleError(space.path, "ssl.oracle", "\"latency\" prices groups with a profile's latency model; "
                          "give a --profile (or set ssl.oracle = \"macs\")")


def ssl_oracle(space: Any, profiles: Sequence[Any], *, tune: bool = True, cache_root: Any = None,
               warn: bool = True) -> CostOracle:
    """The cost oracle hardware-aware SSL of ``space`` uses on ``profiles`` (see the module docstring)."""
    name = space.ssl.oracle
    if name == "macs":
        return MAC_ORACLE
    if name != "latency":
        raise OracleError(space.path, "ssl.oracle", f"expected one of {list(ORACLE_NAMES)}, got {name!r}")
    check_oracle(space, profiles)
    from hwssl.latency.store import load_model

    profile = profiles[0]
    model = load_model(profile, cache_root, tuned=tune)   # LatencyModelError: a file from another device
    if model.fitted:
        return CostOracle("latency", model.predict, "ms", profile.name, smooth=model.predict_smooth)
    note = (f"the {'tuned' if tune else 'untuned'} latency model of profile {profile.name!r} has no data yet "
            f"({model.path}); pricing with MACs for this run")
    if warn:
        print(f"warning: {note}", file=sys.stderr)
    return CostOracle("macs", spec_macs, "MACs", profile.name, note)


def seed_trials_per_task(start: Any, profile: Any) -> int | None:
    """The MetaSchedule budget of the seeding measurement: the profile's full one (what the front is
    re-timed with) when the run is tuned. The seed sets the scale of every target, and cheap tuning's
    luck on one dense kernel can be 7x: a 4-trial LeNet conv2 once measured 211 us against 28 us fully
    tuned, so the model priced conv2 as 87 % of the net and a run met its 0.2 target with a net that
    measured 0.48x the tuned dense latency. The dense net is re-timed with the full budget at the end
    anyway; tuned here, that re-timing reuses the database."""
    return profile.tuning.full_trials_per_task if start.tune else start.trials_per_task


def start_oracle(start: Any, *, warn: bool = True) -> CostOracle:
    """:func:`ssl_oracle` for an SSL run from ``start`` (a :class:`hwssl.evaluate.DenseStart` aimed at
    its profiles); a latency model with no data is first given the dense net's measurement (see the
    module docstring), and the oracle's ``note`` says so."""
    space, profiles = start.space, start.profiles
    if space.ssl.oracle != "latency" or not profiles:
        return ssl_oracle(space, profiles, tune=start.tune, warn=warn)
    cost = ssl_oracle(space, profiles, tune=start.tune, warn=False)   # loads the model once when it has data
    if cost.units == "ms":
        return cost
    from hwssl.compact import arch_key
    from hwssl.data import first_images
    from hwssl.latency.record import measure_with_model

    profile = profiles[0]
    example = profile.example_input(first_images(start.splits.val, profile.batch))
    measure_with_model(start.dense_model().eval(), example, profile, spec=start.spec, arch_key=arch_key(start.spec),
                       tune=start.tune, trials_per_task=seed_trials_per_task(start, profile), per_layer=True)
    cost = ssl_oracle(space, profiles, tune=start.tune, warn=warn)
    if cost.units != "ms":
        return cost
    note = f"the latency model of profile {profile.name!r} had no data; the dense net was measured first to seed it"
    return CostOracle(cost.name, cost.predict, cost.units, cost.profile, note, cost.smooth)
