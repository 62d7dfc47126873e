"""One candidate, end to end: dense checkpoint (cached) -> SSL fine-tune with the given
strengths -> compaction (verified) -> recovery fine-tune -> accuracy, cost and
(optionally) latency on hardware profiles. Returns one JSON-serialisable dict."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch
from torch import nn

from hwssl.budget import hw_options_on, hw_ssl
from hwssl.cache import cache_root, file_lock, stable_hash
from hwssl.compact import arch_key, architecture_summary, compact_model, conv_layer_count, save_compacted
from hwssl.config.space import SearchSpace, space_model_spec
from hwssl.data import DataSplits, first_images, images, load_dataset, plain
from hwssl.models import build_model
from hwssl.progress import Progress, phase_progress
from hwssl.record import TrialRecord
from hwssl.settings import MeasureSettings
from hwssl.sparsity import GroupLasso, count_macs, count_params, sparsity_stats
from hwssl.train import PhaseResult, Retried, accuracy, halving_on_divergence, recover_phase, train_phase

T = TypeVar("T")

COMPACTION_TOLERANCE = 1e-4  # per-trial guard; tests pin 1e-5 on random inputs


def load_space_data(space: SearchSpace) -> DataSplits:
    d = space.data
    return load_dataset(d.name, val_fraction=d.val_fraction, train_subset=d.train_subset or None,
                        val_subset=d.val_subset or None, test_subset=d.test_subset or None,
                        seed=space.seed, path=d.path or None, test_fraction=d.test_fraction,
                        image_size=d.image_size, augment=d.augment)


def dense_spec(space: SearchSpace, splits: DataSplits) -> dict[str, Any]:
    return space_model_spec(space, splits.info)


def _non_default(config: Any) -> dict[str, Any]:
    """A config's fields, leaving out those at their default that older keys did not have (so
    adding a key does not invalidate every cached checkpoint)."""
    new = {"spec", "weights", "test_fraction", "image_size", "augment"}
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in new or v != defaults[k]}


def dense_key(space: SearchSpace) -> str:
    """Cache key of the dense checkpoint: everything that shapes dense training, including the
    content of the spec, weights and .npz files (not only their names)."""
    from hwssl.models.weights import file_digest

    t = space.train
    files = {k: file_digest(p) for k, p in (("spec", space.model.spec), ("weights", space.model.weights),
                                            ("npz", space.data.path if space.data.name == "npz" else ""))
             if p and Path(p).is_file()}
    # epochs hashed as a float: they were read as one before they became integers (keeps cached checkpoints)
    return stable_hash({"model": _non_default(space.model), "data": _non_default(space.data), **files,
                        "seed": space.seed, "batch": t.batch_size, "epochs": float(t.dense_epochs), "lr": t.dense_lr,
                        "momentum": t.momentum, "wd": t.weight_decay, "version": 2})


def dense_checkpoint(space: SearchSpace, splits: DataSplits, progress: Progress | None = None
                     ) -> tuple[dict[str, Any], bool]:
    """The trained dense model's state and metrics, trained once per space and cached on disk.
    Concurrent workers wait on a file lock instead of training twice."""
    path = cache_root() / "dense" / f"{space.model.name}-{space.data.name}-{dense_key(space)}.pt"
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            return torch.load(path, weights_only=True), True
        torch.manual_seed(space.seed)  # weight initialisation is part of what the key pins down
        model = build_model(dense_spec(space, splits))
        t = space.train
        if space.model.weights:  # the user's weights replace dense training
            from hwssl.models.weights import load_weights
            load_weights(model, space.model.weights)
            result = PhaseResult("dense-from-weights", 0, 0, 0.0, 0.0, 0.0)
        else:
            result = train_phase(model, splits.train, phase="dense", epochs=t.dense_epochs, lr=t.dense_lr,
                                 batch_size=t.batch_size, momentum=t.momentum, weight_decay=t.weight_decay,
                                 seed=space.seed, threads=t.threads,
                                 on_step=(lambda i, n, _l: progress("dense", i, n)) if progress else None)
        ckpt = {"state": model.state_dict(), "accuracy_val": accuracy(model, splits.val),
                "accuracy_test": accuracy(model, splits.test), "train": result.to_dict()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(path)
        return ckpt, False


@dataclass
class DenseStart:
    """What every candidate of a space starts from: data, dense spec and the cached dense checkpoint."""

    space: SearchSpace
    splits: DataSplits
    spec: dict[str, Any]
    ckpt: dict[str, Any]
    cached: bool
    wall: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)
    profiles: tuple[Any, ...] = ()     # the candidate's target profiles (hardware-aware SSL prices on the first)
    tune: bool = True                  # whether it is measured tuned (which latency model prices it)
    trials_per_task: int | None = None # its MetaSchedule budget per new workload (None: the profile's)

    def dense_model(self) -> nn.Module:
        model = build_model(self.spec)
        model.load_state_dict(self.ckpt["state"])
        return model

    def for_profiles(self, profiles: Sequence[Any], measure: MeasureSettings = MeasureSettings()) -> "DenseStart":
        """This start, aimed at ``profiles`` measured as ``measure`` says."""
        return dataclasses.replace(self, profiles=tuple(profiles), tune=measure.tune,
                                   trials_per_task=measure.trials_per_task)

    def at_ssl_lr(self, lr: float) -> "DenseStart":
        """This start with the sparsification phase's learning rate (``train.ssl_lr``) set to ``lr``."""
        space = dataclasses.replace(self.space, train=dataclasses.replace(self.space.train, ssl_lr=lr))
        return dataclasses.replace(self, space=space)


def sparsify_halving(run: Callable[[DenseStart], T], start: DenseStart, retries: int = 2) -> Retried[T]:
    """``run(start)``, a method's sparsification phase (SSL's group Lasso, L1's masked fine-tune,
    Torch-Pruning's sparse learning, a regularisation path); when its loss diverges, again from the
    dense net at half ``train.ssl_lr`` (at most ``retries`` times), as :func:`recover_phase` does
    for recovery. Every method sparsifies through this call, so none gets a retry the others lack."""
    return halving_on_divergence(lambda lr: run(start.at_ssl_lr(lr)), start.space.train.ssl_lr, retries)


def prepare(space: SearchSpace, progress: Progress | None = None) -> DenseStart:
    t0 = time.perf_counter()
    splits = load_space_data(space)
    ckpt, cached = dense_checkpoint(space, splits, progress)
    start = DenseStart(space, splits, dense_spec(space, splits), ckpt, cached, t0=t0)
    start.wall["dense"] = 0.0 if cached else ckpt["train"]["wall_s"]
    return start


def compaction_round(space: SearchSpace, profiles: Sequence[Any] = ()) -> int:
    """Kept widths are rounded to the coarsest multiple the space or any target profile asks for."""
    return max([space.compact.channel_round] + [getattr(p, "channel_round", 1) for p in profiles])


def ssl_sparsify(start: DenseStart, strengths: dict[str, float], progress: Progress | None = None, *,
                 target: float | None = None) -> tuple[nn.Module, PhaseResult]:
    """SSL fine-tuning of the dense model with the given per-group strengths. With the space's
    hardware-aware ``[ssl]`` options on (or a budget ``target``, a fraction of the dense net's
    predicted cost, overriding ``ssl.target``), :func:`hwssl.budget.hw_ssl` runs it on the
    profiles in ``start.profiles`` (its facts land in ``phase.record``)."""
    space, t = start.space, start.space.train
    target = space.ssl.target if target is None else target
    if hw_options_on(space.ssl) or target > 0:
        from hwssl.budget.cost import MAC_ORACLE, start_oracle

        prices = space.ssl.latency_weighted or target > 0   # filter blocks alone price nothing
        cost = start_oracle(start) if prices else MAC_ORACLE
        run = hw_ssl(start, strengths, targets=[target] if target > 0 else [], predict=cost.predict,
                     weigh=cost.weigh, channel_round=compaction_round(space, start.profiles), progress=progress)
        if prices:
            run.phase.record.update(cost.record(run.phase.record))
        return run.model, run.phase
    model = start.dense_model()
    reg = GroupLasso(model, strengths, scale_by_group_size=space.ssl.scale_by_group_size,
                     filter_bn=space.ssl.filter_bn)
    phase = train_phase(model, start.splits.train, phase="ssl", epochs=t.ssl_epochs, lr=t.ssl_lr,
                        batch_size=t.batch_size, momentum=t.momentum, weight_decay=t.weight_decay,
                        seed=space.seed + 1, regularizer=reg, mode=space.ssl.mode,
                        zero_threshold=space.ssl.zero_threshold, threads=t.threads,
                        on_step=phase_progress(progress, "ssl"))
    start.wall["ssl"] = phase.wall_s
    return model, phase


def unused_ssl_epochs(start: DenseStart, sparsify: PhaseResult | None) -> int:
    """Whole SSL epochs a budget-targeted phase left unused by meeting its target early, when the
    space gives them to recovery (``ssl.recover_unused``): the candidate then trains for the same
    total epochs as a method that runs every sparsification epoch."""
    space = start.space
    if not space.ssl.recover_unused or sparsify is None or sparsify.phase != "ssl":
        return 0
    per_epoch = math.ceil(len(start.splits.train) / space.train.batch_size)
    return max(0, int(space.train.ssl_epochs - sparsify.steps / per_epoch))


def recovery_start(start: DenseStart, sparse: nn.Module) -> nn.Module:
    """What an SSL candidate's recovery fine-tunes (``ssl.recover_from``): ``sparse`` itself (the
    paper), or the dense checkpoint with ``sparse``'s zero pattern (every parameter ``sparse`` holds
    at exactly 0 set to 0). Group Lasso shrinks the groups it keeps as well as those it removes;
    the dense start keeps SSL's choice of groups (the compacted architecture is the same) and
    recovers from the weights the pruning baselines fine-tune from."""
    if start.space.ssl.recover_from != "dense":
        return sparse
    model = start.dense_model()
    zero = {name: p == 0 for name, p in sparse.named_parameters()}
    with torch.no_grad():
        for name, param in model.named_parameters():
            param[zero[name]] = 0
    return model


def finish_candidate(start: DenseStart, sparse: nn.Module, *, method: str, params: dict[str, Any],
                     sparsify: PhaseResult | None, profiles: Sequence[Any] = (),
                     measure: MeasureSettings = MeasureSettings(), save_dir: str | Path | None = None,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Shared by every method (SSL and the baselines): compact the sparse dense-architecture
    model (verified), fine-tune it, and measure accuracy, cost and latency.

    ``measure.precision`` is what the candidate deploys as: with ``"int8"`` the record's
    headline (accuracy, latency) is its int8 variant, so the search, Pareto fronts and report
    treat both precisions alike (see :mod:`hwssl.record` for the stored layout).
    """
    tune, trials_per_task, per_layer = measure.tune, measure.trials_per_task, measure.per_layer
    space, splits, spec, ckpt, wall = start.space, start.splits, start.spec, start.ckpt, start.wall
    t = space.train
    dense = start.dense_model()
    flops_dense, flops_dense_layers = count_macs(dense, spec["input"])
    stats = sparsity_stats(sparse)
    accuracy_sparse = accuracy(sparse, splits.val)
    if method == "ssl":
        sparse = recovery_start(start, sparse)

    tc = time.perf_counter()
    check = first_images(splits.val, 64)
    channel_round = compaction_round(space, profiles)
    compacted = compact_model(sparse, channel_round=channel_round,
                              min_shape_sparsity=space.compact.min_shape_sparsity, check_inputs=check,
                              tolerance=COMPACTION_TOLERANCE)
    wall["compact"] = time.perf_counter() - tc
    small = compacted.model
    recover_epochs = t.recover_epochs + unused_ssl_epochs(start, sparsify)
    recover = recover_phase(small, splits.train, phase="recover", epochs=recover_epochs, lr=t.recover_lr,
                            batch_size=t.batch_size, momentum=t.momentum, weight_decay=t.weight_decay,
                            seed=space.seed + 2, threads=t.threads, on_step=phase_progress(progress, "recover"))
    wall["recover"] = recover.wall_s
    flops, flops_layers = count_macs(small, spec["input"])
    dense_summary = architecture_summary(spec)["layers"]
    layers = {name: dict(kept, dense={k: dense_summary[name][k] for k in ("filters", "channels", "columns")})
              for name, kept in compacted.summary["layers"].items()}

    result: dict[str, Any] = {
        "space": space.name, "model": space.model.name, "data": space.data.name,
        "method": method, "method_params": params, "strengths": params if method == "ssl" else {},
        "ssl_mode": space.ssl.mode,
        "accuracy_dense": ckpt["accuracy_val"], "accuracy_dense_test": ckpt["accuracy_test"],
        "accuracy_sparse": accuracy_sparse,
        "accuracy": accuracy(small, splits.val), "accuracy_test": accuracy(small, splits.test),
        "flops_dense": flops_dense, "flops": flops, "flops_ratio": flops_dense / max(flops, 1),
        "params_dense": count_params(dense), "params": count_params(small),
        "flops_per_layer_dense": flops_dense_layers, "flops_per_layer": flops_layers,
        "layers": layers, "blocks_removed": compacted.summary["blocks_removed"],
        "conv_layers_dense": conv_layer_count(spec), "conv_layers": conv_layer_count(compacted.spec),
        "sparsity": stats, "max_abs_diff_compacted": compacted.max_abs_diff,
        "ssl_step_overhead": sparsify.ssl_step_overhead if sparsify else 1.0,
        "step_ms": {"plain": sparsify.step_ms if sparsify else None,
                    "ssl": (sparsify.step_ms + sparsify.ssl_ms) if sparsify else None,
                    "dense_phase": ckpt["train"]["step_ms"]},
        "dense_cached": start.cached, "split": splits.split_note, "channel_round": channel_round,
        "recover_epochs": recover_epochs, **({"recover_from": space.ssl.recover_from} if method == "ssl" else {}),
        **({"recover_diverged": recover.record} if recover.record else {}),
        "arch_key": arch_key(compacted.spec), "arch": compacted.spec,
    }
    result.update(getattr(sparsify, "record", None) or {})  # hardware-aware SSL: budget, oracle, weights
    if profiles:
        td = time.perf_counter()
        from hwssl.latency.record import measure_pair_with_model  # deferred: TVM import is slow
        result["latency_ms"], result["latency_ms_dense"] = {}, {}
        for profile in profiles:
            # the candidate and its dense reference are timed together (interleaved rounds), so their ratio
            # holds under load; both builds come from the cache after the first time. Each timing also
            # records the profile latency model's prediction.
            example = profile.example_input(first_images(splits.val, profile.batch))
            result["latency_ms"][profile.name], result["latency_ms_dense"][profile.name] = measure_pair_with_model(
                small.eval(), dense.eval(), example, profile, spec=compacted.spec, dense_spec=spec,
                arch_key=result["arch_key"], dense_arch_key=arch_key(spec), tune=tune,
                trials_per_task=trials_per_task, per_layer=per_layer)
        wall["deploy"] = time.perf_counter() - td
    if measure.measures_int8(space.quant.every_trial):
        ti = time.perf_counter()
        add_int8_variant(result, start, small, profiles, tune=tune, trials_per_task=trials_per_task)
        wall["int8"] = time.perf_counter() - ti
    if save_dir is not None:
        save_compacted(small, save_dir)
        result["saved_to"] = str(save_dir)
    wall["total"] = time.perf_counter() - start.t0
    result["wall_s"] = {k: round(v, 3) for k, v in wall.items()}
    record = TrialRecord.from_dict(result)  # measured as fp32 (+ its int8 variant) ...
    record.precision = measure.precision    # ... deployed as asked: the record lays out the headline
    return record.to_dict()


def calibration_subset(train: Any, seed: int, count: int) -> torch.Tensor:
    """``count`` training images for int8 calibration (never augmented): a fixed random subset per
    space seed (so an export reproduces the int8 network a trial measured). ``train`` is the train
    split (any data set) or a tensor of its images."""
    g = torch.Generator().manual_seed(seed + 3)
    pick = torch.randperm(len(train), generator=g)[:count]
    return train[pick] if isinstance(train, torch.Tensor) else images(plain(train), pick)


def calibration_images(start: DenseStart) -> torch.Tensor:
    return calibration_subset(start.splits.train, start.space.seed, start.space.quant.calib_images)


def add_int8_variant(result: dict[str, Any], start: DenseStart, compacted: nn.Module, profiles: Sequence[Any], *,
                     tune: bool, trials_per_task: int | None) -> None:
    """Quantise the compacted candidate and add ``accuracy_int8``, ``accuracy_int8_test``,
    ``latency_ms_int8``, ``integer_only``, ``strict_integer_only``, ``float_ops`` and ``int8``."""
    from hwssl.quant.candidate import int8_variant  # deferred: TVM import is slow

    q = start.space.quant
    result.update(int8_variant(compacted, calibration_images(start), start.splits.val, start.splits.test, profiles,
                               arch_key=result["arch_key"], calibration=q.calibration, tune=tune,
                               trials_per_task=trials_per_task))


def evaluate_candidate(space: SearchSpace, strengths: dict[str, float] | None = None, *,
                       profiles: Sequence[Any] = (), measure: MeasureSettings = MeasureSettings(),
                       save_dir: str | Path | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Train, sparsify with SSL, compact, fine-tune and measure one strength setting."""
    strengths = dict(space.strengths if strengths is None else strengths)
    start = prepare(space, progress)
    start = start.for_profiles(profiles, measure)
    sparse, phase = ssl_sparsify(start, strengths, progress)
    return finish_candidate(start, sparse, method="ssl", params=strengths, sparsify=phase, profiles=profiles,
                            measure=measure, save_dir=save_dir, progress=progress)
