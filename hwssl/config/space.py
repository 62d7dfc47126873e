"""Search-space files: model, data, training budget, SSL options and per-group strengths.

Format (every key optional unless marked)::

    name = "lenet_mnist5k"           # defaults to the file stem
    description = "..."
    seed = 0

    [model]                          # required
    name = "lenet"                   # required unless spec is given: lenet | convnet | resnet20 | resnet32 |
                                     # resnet56 | resnet18 | mobilenetv2 (with spec: a free label)
    width = 1.0                      # channel multiplier (registered models)
    spec = ""                        # an architecture spec (JSON, the arch.json format) instead of name
    weights = ""                     # a state dict (.pt) to start from instead of dense training

    [data]                           # required
    name = "mnist5k"                 # required: fashion-mnist | mnist5k | digits | cifar10 | folder | npz
    val_fraction = 0.1               # carved from train; the search objective
    test_fraction = 0.2              # hold-out when the data has no test split of its own
    train_subset = 0                 # 0 = all
    val_subset = 0
    test_subset = 0
    path = ""                        # cifar10 folder, image folder, .npz file
    image_size = 0                   # 0 = native; 32 or [h, w]: resize
    augment = "none"                 # none | crop-flip (train-time only)

Relative ``model.spec``, ``model.weights`` and folder/npz ``data.path`` are looked up next to
the search-space file first, then in the current folder.

    [train]                          # dense pretraining, SSL fine-tuning, recovery fine-tuning
    batch_size = 64
    dense_epochs = 10
    dense_lr = 0.01
    ssl_epochs = 5
    ssl_lr = 0.001
    recover_epochs = 2
    recover_lr = 0.001
    momentum = 0.9
    weight_decay = 5e-4
    threads = 1

    [ssl]
    mode = "proximal"                # proximal | subgradient
    scale_by_group_size = false
    zero_threshold = 1e-4
    # hardware-aware SSL (hwssl.budget); the defaults keep the paper's SSL
    latency_weighted = false         # lambda of each group x the oracle's saving from removing it
    target = 0.0                     # > 0: budget-targeted SSL, the strengths are a mix scaled until the
                                     #   predicted cost is this fraction of the dense one
    filter_block = 1                 # filter/channel groups in blocks of this many; "channel_round" = the
                                     #   compaction's rounding (kept widths come in multiples)
    oracle = "macs"                  # cost oracle that prices a spec: "macs" or "latency" (the first
                                     #   --profile's latency model, ms; MACs while it has no data)
    check_every = 5                  # steps between budget checks
    weight_every = 100               # steps between latency-weight refreshes (each prices every site once)
    recover_unused = false           # a budget-targeted SSL phase that met its target early gives its unused
                                     #   whole epochs to recovery (the baselines' total epochs)
    filter_bn = false                # a filter group of a conv followed by BatchNorm also holds that
                                     #   channel's BatchNorm scale and shift (else BatchNorm hides the shrinking)
    recover_from = "ssl"             # ssl: recovery fine-tunes the SSL weights (the paper); dense: the dense
                                     #   checkpoint's weights with the SSL net's zero pattern (same architecture)

    [compact]
    min_shape_sparsity = 0.25
    channel_round = 1

    [quant]                          # the int8 variant (hwssl.quant): post-training, integer-only
    calibration = "max"              # max | percentile (activation ranges)
    calib_images = 256               # training images used to calibrate
    every_trial = false              # also measure the int8 variant of fp32 trials

    [strengths]                      # the strengths `hwssl evaluate` uses (overridden by --set)
    "shape.conv1" = 0.003            # <type> | <type>.<stage> | <type>.<layer>

    [search]                         # used by `hwssl search`
    trials = 20
    sampler = "nsga2"                # nsga2 | tpe | random
    mode = "strengths"               # strengths: sample raw strengths | budget: a target and a mix
                                     # | path: a mix; one SSL run per trial, a candidate per target
    [search.budget]                  # mode = "budget" / "path": what the search samples
    target = { low = 0.15, high = 0.8 }          # fraction of the dense predicted cost
    path_points = 4                              # path: targets evenly spaced from high down to low
    [search.budget.mix."filter"]                 # relative strength of a group type/scope (strength keys)
    low = 0.1
    high = 1.0
    log = true
    zero_probability = 0.0
    precision = ["fp32"]             # ["fp32", "int8"]: precision is a searched dimension
    [search.strengths."shape.conv1"] # one searched dimension per key
    low = 1e-4
    high = 3e-2
    log = true
    zero_probability = 0.0           # chance the sampler switches this group type off
    [search.constraints]
    min_accuracy = 0.0
    max_latency_ms = { x86_cpu = 5.0 }
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hwssl.config._reader import ConfigError, TableReader, load_toml
from hwssl.config.fields import ORACLE_NAMES, StrengthRange, beside, filter_block, image_size, oracles, strength_range  # noqa: F401

MODES = ("proximal", "subgradient")
RECOVERY_STARTS = ("ssl", "dense")   # what an SSL candidate's recovery fine-tunes (ssl.recover_from)
SEARCH_MODES = ("strengths", "budget", "path")
SAMPLERS = ("nsga2", "tpe", "random")
PRECISIONS = ("fp32", "int8")
CALIBRATIONS = ("max", "percentile")
INT8_FAMILIES = ("plain", "resnet")  # what hwssl.quant converts


@dataclass(frozen=True)
class ModelConfig:
    name: str
    width: float = 1.0
    spec: str = ""      # architecture spec file (resolved path), "" = the registered model `name`
    weights: str = ""   # starting state dict (resolved path), "" = train the dense net


@dataclass(frozen=True)
class DataConfig:
    name: str
    val_fraction: float = 0.1
    train_subset: int = 0
    val_subset: int = 0
    test_subset: int = 0
    path: str = ""
    test_fraction: float = 0.2
    image_size: tuple[int, int] | None = None
    augment: str = "none"


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64
    dense_epochs: int = 10
    dense_lr: float = 0.01
    ssl_epochs: int = 5
    ssl_lr: float = 0.001
    recover_epochs: int = 2
    recover_lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    threads: int = 1


@dataclass(frozen=True)
class SSLConfig:
    mode: str = "proximal"
    scale_by_group_size: bool = False
    zero_threshold: float = 1e-4
    latency_weighted: bool = False
    target: float = 0.0
    filter_block: int | str = 1      # an int, or "channel_round"
    oracle: str = "macs"
    check_every: int = 5
    weight_every: int = 100
    recover_unused: bool = False
    filter_bn: bool = False
    recover_from: str = "ssl"        # one of RECOVERY_STARTS


@dataclass(frozen=True)
class CompactConfig:
    min_shape_sparsity: float = 0.25
    channel_round: int = 1


@dataclass(frozen=True)
class QuantConfig:
    """The int8 variant of a candidate (see :mod:`hwssl.quant`)."""

    calibration: str = "max"
    calib_images: int = 256
    every_trial: bool = False


@dataclass(frozen=True)
class SearchConfig:
    trials: int = 20
    sampler: str = "nsga2"
    strengths: dict[str, StrengthRange] = field(default_factory=dict)
    min_accuracy: float = 0.0
    max_latency_ms: dict[str, float] = field(default_factory=dict)
    precision: tuple[str, ...] = ("fp32",)
    mode: str = "strengths"
    budget_target: StrengthRange | None = None
    budget_mix: dict[str, StrengthRange] = field(default_factory=dict)
    path_points: int = 4

    def path_targets(self) -> list[float]:
        """``mode = "path"``: the targets of each trial's SSL run, from the loosest to the tightest."""
        lo, hi, n = self.budget_target.low, self.budget_target.high, self.path_points
        return [round(hi - (hi - lo) * i / (n - 1), 6) for i in range(n)]


@dataclass(frozen=True)
class SearchSpace:
    path: str
    name: str
    description: str
    seed: int
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    ssl: SSLConfig
    compact: CompactConfig
    strengths: dict[str, float]
    search: SearchConfig
    quant: QuantConfig = QuantConfig()

    def with_strengths(self, strengths: Mapping[str, float]) -> "SearchSpace":
        from dataclasses import replace
        return replace(self, strengths=dict(strengths))


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str], path: str) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides: a strength key (``filter.conv2=0.01``) or a
    ``section.key`` (``train.ssl_epochs=2``) of the file."""
    from hwssl.sparsity.groups import GROUP_TYPES

    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(path, item, "--set expects KEY=VALUE")
        head = key.split(".", 1)[0]
        if head in GROUP_TYPES:
            raw.setdefault("strengths", {})[key] = _parse_value(value.strip())
        elif "." in key and head in ("model", "data", "train", "ssl", "compact", "quant", "search"):
            raw.setdefault(head, {})[key.split(".", 1)[1]] = _parse_value(value.strip())
        elif key in ("seed", "name", "description"):
            raw[key] = _parse_value(value.strip())
        else:
            raise ConfigError(path, key, "--set key must be a strength (<type>[.<scope>], type one of "
                                         f"{list(GROUP_TYPES)}) or <section>.<key> with section in "
                                         "model, data, train, ssl, compact, quant, search")
    return raw


def parse_search_space(raw: dict[str, Any], path: str | Path) -> SearchSpace:
    from hwssl.data import AUGMENTS, available_datasets, is_user_data
    from hwssl.models import available_models

    path = str(path)
    top = TableReader(path, raw)
    name = top.string("name", Path(path).stem)
    description = top.string("description", "")
    seed = top.integer("seed", 0, minimum=0)

    m = top.sub("model", required=True)
    spec_file = beside(m.string("spec", ""), path)
    model = ModelConfig(m.string("name", Path(spec_file).stem if spec_file else ...,
                                 choices=None if spec_file else available_models()),
                        m.number("width", 1.0, positive=True), spec_file, beside(m.string("weights", ""), path))
    m.finish()

    d = top.sub("data", required=True)
    data_name = d.string("name", choices=available_datasets())
    data = DataConfig(
        data_name,
        d.number("val_fraction", 0.1, minimum=0.01, maximum=0.5),
        d.integer("train_subset", 0, minimum=0), d.integer("val_subset", 0, minimum=0),
        d.integer("test_subset", 0, minimum=0),
        beside(d.string("path", ""), path) if is_user_data(data_name) else d.string("path", ""),
        d.number("test_fraction", 0.2, minimum=0.01, maximum=0.5), image_size(d),
        d.string("augment", "none", choices=AUGMENTS))
    d.finish()

    t = top.sub("train")
    train = TrainConfig(
        batch_size=t.integer("batch_size", 64, minimum=1),
        dense_epochs=t.integer("dense_epochs", 10, minimum=0), dense_lr=t.number("dense_lr", 0.01, positive=True),
        ssl_epochs=t.integer("ssl_epochs", 5, minimum=0), ssl_lr=t.number("ssl_lr", 0.001, positive=True),
        recover_epochs=t.integer("recover_epochs", 2, minimum=0),
        recover_lr=t.number("recover_lr", 0.001, positive=True),
        momentum=t.number("momentum", 0.9, minimum=0, maximum=0.999),
        weight_decay=t.number("weight_decay", 5e-4, minimum=0), threads=t.integer("threads", 1, minimum=1))
    t.finish()

    s = top.sub("ssl")
    ssl = SSLConfig(s.string("mode", "proximal", choices=MODES), s.boolean("scale_by_group_size", False),
                    s.number("zero_threshold", 1e-4, minimum=0), s.boolean("latency_weighted", False),
                    s.number("target", 0.0, minimum=0, maximum=1), filter_block(s),
                    s.string("oracle", "macs", choices=oracles()), s.integer("check_every", 5, minimum=1),
                    s.integer("weight_every", 100, minimum=1), s.boolean("recover_unused", False),
                    s.boolean("filter_bn", False), s.string("recover_from", "ssl", choices=RECOVERY_STARTS))
    if ssl.target >= 1:
        raise s.error("target", f"expected a fraction of the dense cost in (0, 1) (0 = off), got {ssl.target}")
    s.finish()

    c = top.sub("compact")
    compact = CompactConfig(c.number("min_shape_sparsity", 0.25, minimum=0, maximum=1),
                            c.integer("channel_round", 1, minimum=1))
    c.finish()

    q = top.sub("quant")
    quant = QuantConfig(q.string("calibration", "max", choices=CALIBRATIONS),
                        q.integer("calib_images", 256, minimum=1), q.boolean("every_trial", False))
    q.finish()

    st = top.sub("strengths")
    strengths = {key: st.number(key, minimum=0) for key in list(st.table)}
    st.finish()

    se = top.sub("search")
    sr = se.sub("strengths")
    ranges = {key: strength_range(sr, key) for key in list(sr.table)}
    sr.finish()
    mode = se.string("mode", "strengths", choices=SEARCH_MODES)
    bu = se.sub("budget")
    budget_target = strength_range(bu, "target", log=False, maximum=1.0) if bu.has("target") else None
    path_points = bu.integer("path_points", 4, minimum=2)
    bm = bu.sub("mix")
    mix = {key: strength_range(bm, key) for key in list(bm.table)}
    bm.finish()
    bu.finish()
    if mode in ("budget", "path"):
        if budget_target is None:
            raise bu.error("target", f'search.mode = "{mode}" needs a target range, e.g. '
                                     'target = { low = 0.15, high = 0.8 }')
        if not mix:
            raise bu.error("mix", f'search.mode = "{mode}" needs at least one [search.budget.mix."<type>"] range')
        if ranges:
            raise sr.error(None, f'search.mode = "{mode}" samples search.budget.mix, not raw strengths; '
                                 "remove [search.strengths]")
    co = se.sub("constraints")
    min_accuracy = co.number("min_accuracy", 0.0, minimum=0, maximum=1)
    lat = co.sub("max_latency_ms")
    max_latency = {k: lat.number(k, positive=True) for k in list(lat.table)}
    lat.finish()
    co.finish()
    precision = se.string_list("precision", ["fp32"], choices=PRECISIONS)
    if not precision or len(set(precision)) != len(precision):
        raise se.error("precision", f"expected a non-empty list of distinct values out of {list(PRECISIONS)}, "
                                    f"got {precision}")
    search = SearchConfig(se.integer("trials", 20, minimum=1), se.string("sampler", "nsga2", choices=SAMPLERS),
                          ranges, min_accuracy, max_latency, tuple(precision), mode, budget_target, mix,
                          path_points)
    se.finish()
    top.finish()

    if ssl.target > 0 and search.mode == "strengths" and not any(v > 0 for v in strengths.values()):
        raise top.error("strengths", f"ssl.target = {ssl.target} scales the [strengths] mix; expected at least one "
                                     "positive strength")
    space = SearchSpace(path, name, description, seed, model, data, train, ssl, compact, strengths, search, quant)
    _check_against_model(space, top)
    return space


def space_data_info(space: SearchSpace) -> Any:
    """The data set's channels, (resized) image size and classes; a folder or .npz is read."""
    from hwssl.data import dataset_info
    d = space.data
    return dataset_info(d.name, path=d.path or None, image_size=d.image_size)


def space_model_spec(space: SearchSpace, info: Any = None) -> dict[str, Any]:
    """The dense architecture spec of a space: its spec file or its registered model, for its data."""
    from hwssl.models.specfile import dense_model_spec
    info = info if info is not None else space_data_info(space)
    return dense_model_spec(space.model.name, space.model.width, space.model.spec, info.in_channels,
                            info.image_size, info.num_classes)


def _check_against_model(space: SearchSpace, top: TableReader) -> None:
    """The data, the spec and the weights must be readable and fit together; strength keys must
    name group types/scopes this model has (checked on the real model)."""
    from hwssl.data import DatasetUnavailable
    from hwssl.models import build_model
    from hwssl.models.specfile import SpecError
    from hwssl.models.weights import WeightsError, load_weights
    from hwssl.sparsity.groups import StrengthError, ssl_sites, validate_strength_keys

    try:
        info = space_data_info(space)
    except DatasetUnavailable as exc:
        raise ConfigError(space.path, "data.path", str(exc)) from None
    try:
        spec = space_model_spec(space, info)
    except SpecError as exc:
        raise ConfigError(space.path, "model.spec", str(exc)) from None
    except ValueError as exc:
        raise ConfigError(space.path, "model.name", f"{exc} (data set {space.data.name} is "
                                                    f"{info.in_channels}x{info.image_size[0]}x{info.image_size[1]})")
    if spec["family"] not in INT8_FAMILIES:
        if "int8" in space.search.precision:
            raise ConfigError(space.path, "search.precision", f"int8 is not available for {spec['family']} "
                                                              f"networks (hwssl.quant converts {list(INT8_FAMILIES)})")
        if space.quant.every_trial:
            raise ConfigError(space.path, "quant.every_trial", f"int8 is not available for {spec['family']} "
                                                               f"networks (hwssl.quant converts {list(INT8_FAMILIES)})")
    model = build_model(spec)
    if space.model.weights:
        try:
            load_weights(model, space.model.weights)
        except WeightsError as exc:
            raise ConfigError(space.path, "model.weights", str(exc)) from None
    sites = ssl_sites(model)
    for prefix, keys in (("strengths", space.strengths), ("search.strengths", space.search.strengths),
                         ("search.budget.mix", space.search.budget_mix)):
        try:
            validate_strength_keys(sites, {k: v if prefix == "strengths" else 1.0 for k, v in keys.items()})
        except StrengthError as exc:
            raise ConfigError(space.path, f"{prefix}.{exc.key}", str(exc)) from None


def load_search_space(path: str | Path, overrides: list[str] | None = None) -> SearchSpace:
    """Load and validate a search-space file; ``overrides`` are ``KEY=VALUE`` strings."""
    raw = load_toml(path)
    if overrides:
        raw = apply_overrides(raw, overrides, str(path))
    return parse_search_space(raw, path)
