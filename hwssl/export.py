"""Export one trial of a study for deployment.

``<out>/`` receives:

* ``arch.json`` + ``weights.pt``: the compacted PyTorch network (the spec is
  plain JSON; the state dict loads with ``torch.load(weights_only=True)``);
  :func:`load_exported` rebuilds it;
* ``model.so`` (with a profile): the network compiled by TVM for the profile's
  target, with the profile's MetaSchedule database applied when one exists;
  :func:`load_library` opens it in a Relax VM;
* ``deploy.json``: what a deployment needs to feed the network (input shape,
  pixel scaling, normalisation mean/std, class names) and what it was chosen
  for (trial, strengths, accuracies, latencies, profile and target), plus the
  checks made while exporting (test accuracy reproduced from the exported
  files, TVM output against PyTorch).

The export rebuilds the data split from the study's search-space file and
refuses to continue when it is not the split the trial was evaluated on, so
the recorded mean/std and accuracies always belong to the exported model.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

import hwssl
from hwssl.compact import load_compacted
from hwssl.data.sets import first_images
from hwssl.record import TrialRecord
from hwssl.results import RecordedTrial, trial_records

EXPORT_FORMAT = "hwssl-export/1"
CONFIG_FILE = "deploy.json"
LIBRARY_FILE = "model.so"
TVM_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """A trial cannot be exported; the message says why and what to do."""


@dataclass
class ExportResult:
    directory: Path
    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def library(self) -> Path | None:
        lib = self.config.get("library")
        return self.directory / lib["file"] if lib else None


# -- finding what to export ----------------------------------------------------------------------------------------


def _trial(study: optuna.Study, number: int) -> RecordedTrial:
    found = [t for t in trial_records(study) if t.number == number]
    if not found:
        raise ExportError(f"study {study.study_name!r} has no trial {number} "
                          f"(trials 0..{len(study.get_trials(deepcopy=False)) - 1})")
    trial = found[0]
    if not trial.complete:
        why = trial.trial.user_attrs.get("fail_reason")
        raise ExportError(f"trial {number} is {trial.state.name}{': ' + why if why else ''}; only complete "
                          f"trials can be exported")
    return trial


def _model_dir(study: optuna.Study, trial: RecordedTrial) -> Path:
    saved = trial.record.extra.get("saved_to") if trial.record else None
    candidates = [Path(saved)] if saved else []
    if study.user_attrs.get("artifacts"):
        candidates.append(Path(study.user_attrs["artifacts"]) / study.study_name / f"trial-{trial.number:04d}")
    for d in candidates:
        if (d / "arch.json").is_file() and (d / "weights.pt").is_file():
            return d
    raise ExportError(f"the compacted model of trial {trial.number} is not on this machine (looked in "
                      f"{', '.join(str(d) for d in candidates) or 'nowhere: the study records no artifacts folder'});"
                      f" run the export where the search's --artifacts folder is, or copy it here")


def _profile(study: optuna.Study, name_or_path: str) -> Any:
    from hwssl.config.profile import load_profile

    recorded = {p["name"]: p for p in study.user_attrs.get("profiles", [])}
    if name_or_path in recorded:
        path = recorded[name_or_path].get("path", "")
        if path and Path(path).is_file():
            return load_profile(path)
        raise ExportError(f"profile {name_or_path!r} of the study was loaded from {path or '?'}, which no longer "
                          f"exists; pass the profile file instead (--profile PATH)")
    if Path(name_or_path).is_file():
        return load_profile(name_or_path)
    known = ", ".join(repr(n) for n in recorded) or "none (the study timed no profile)"
    raise ExportError(f"--profile {name_or_path!r} is neither a profile of the study ({known}) nor a file")


def _splits(study: optuna.Study, record: TrialRecord, space_path: str | None) -> tuple[Any, Any]:
    """The trial's data split, rebuilt and checked against the split note stored with the trial."""
    from hwssl.config.space import load_search_space
    from hwssl.evaluate import load_space_data

    path = space_path or study.user_attrs.get("space_path")
    if not path or not Path(path).is_file():
        raise ExportError(f"the search-space file {path or '(none recorded)'} is needed to rebuild the data "
                          f"normalisation and the test split; pass it with --space FILE")
    space = load_search_space(path)
    splits = load_space_data(space)
    split = record.extra.get("split")
    if split and splits.split_note != split:
        raise ExportError(f"the data split rebuilt from {path} is not the one the trial was evaluated on (was the "
                          f"file edited, or the search run with --set data.*=...?). Pass the search's exact "
                          f"settings with --space FILE.\n  trial: {split}\n  now:   {splits.split_note}")
    return space, splits


def _pixel_scale(data_name: str, data_path: str) -> float | None:
    """What raw pixel values are divided by before normalisation (255 for 8-bit images)."""
    try:  # hwssl.data does not expose the scale publicly yet
        from hwssl.data import _entry
        return float(_entry(data_name).load(data_path or None).scale)
    except Exception:
        return None


# -- TVM library ---------------------------------------------------------------------------------------------------


def _tuning_records(profile: Any) -> tuple[Any, Path]:
    """The profile's tuning database (None when it has no records yet) and its folder."""
    db_dir = profile.database_dir()
    if not (db_dir / "database_tuning_record.json").is_file():
        return None, db_dir
    from hwssl.deploy.tune import open_database
    return open_database(db_dir), db_dir


def _export_built(compiled: Any, profile: Any, path: Path, builder: str, database: Any, db_dir: Path
                  ) -> dict[str, Any]:
    """Write the library; what deploy.json says about how it was built."""
    from hwssl.deploy import export_library

    export_library(compiled, profile, path)
    return {"target": str(compiled.target), "builder": builder, "database": str(db_dir) if database else None,
            "scheduled_kernels": compiled.scheduled_kernels, "total_kernels": compiled.total_kernels,
            "tuned": bool(database is not None and compiled.scheduled_kernels > 0)}


def _build_library(model: nn.Module, example: torch.Tensor, profile: Any, path: Path) -> dict[str, Any]:
    """Through hwssl.deploy: same fusion as tuning, the profile's database, cross-linking."""
    from hwssl.deploy import compile_model, make_target

    database, db_dir = _tuning_records(profile)
    compiled = compile_model(model, example, profile, make_target(profile), database)
    return _export_built(compiled, profile, path, "hwssl.deploy", database, db_dir)


def _int8_network(model: nn.Module, splits: Any, space: Any) -> nn.Module:
    """The int8 network an int8 trial measured: same calibration images, same calibration."""
    from hwssl.evaluate import calibration_subset
    from hwssl.quant import quantize_model

    calib = calibration_subset(splits.train, space.seed, space.quant.calib_images)
    return quantize_model(model, calib, calibration=space.quant.calibration)


def _build_int8_library(qnet: nn.Module, example: torch.Tensor, profile: Any, path: Path) -> dict[str, Any]:
    """The integer network through hwssl.quant (int8 x int8 -> int32 kernels), with the profile's
    tuning records when there are any."""
    from hwssl.quant import compile_int8

    database, db_dir = _tuning_records(profile)
    compiled, _report, _stats = compile_int8(qnet, example, profile, database=database)
    return _export_built(compiled, profile, path, "hwssl.quant", database, db_dir)


def _runs_here(profile: Any) -> bool:
    from hwssl.deploy.availability import gpu_available, needs_cross_compiler
    if needs_cross_compiler(profile):
        return False
    return profile.target_kind != "cuda" or gpu_available()[0]


def load_library(directory: str | Path, device: Any = None) -> Any:
    """The exported TVM library of ``directory`` in a ``tvm.relax.VirtualMachine`` (call ``vm["main"](x)``)."""
    import tvm

    lib = tvm.runtime.load_module(str(Path(directory) / LIBRARY_FILE))
    return tvm.relax.VirtualMachine(lib, device if device is not None else tvm.cpu())


def _check_library(directory: Path, model: nn.Module, example: torch.Tensor, cuda: bool) -> float:
    import numpy as np
    import tvm

    vm = load_library(directory, tvm.cuda(0) if cuda else tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(example.numpy(), device=tvm.cuda(0) if cuda else tvm.cpu()))
    with torch.no_grad():
        ref = model(example).numpy()
    return float(np.max(np.abs(out.numpy().astype(np.float64) - ref.astype(np.float64))))


# -- the export ----------------------------------------------------------------------------------------------------


def export_trial(study: optuna.Study, trial_number: int, out_dir: str | Path, *, profile: str | None = None,
                 storage: str = "", space_path: str | None = None) -> ExportResult:
    """Write the model, the TVM library for ``profile`` (a study profile name or a profile file; none =
    no library) and ``deploy.json`` to ``out_dir``; see the module docstring."""
    from hwssl.storage import display_url
    from hwssl.train import accuracy

    trial = _trial(study, trial_number)
    rec = trial.record
    assert rec is not None  # _trial accepts complete trials only
    x = rec.extra
    source = _model_dir(study, trial)
    prof = _profile(study, profile) if profile else None
    space, splits = _splits(study, rec, space_path)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("arch.json", "weights.pt"):
        shutil.copy2(source / name, out / name)
    model = load_exported(out)
    precision = rec.precision
    deployed = _int8_network(model, splits, space) if precision == "int8" else model
    warnings: list[str] = []
    test_acc = accuracy(deployed, splits.test)
    if test_acc != rec.accuracy_test:
        warnings.append(f"test accuracy of the exported model is {test_acc:.6f}, the study recorded "
                        f"{rec.accuracy_test:.6f}")

    info = splits.info
    spec = json.loads((out / "arch.json").read_text())
    batch = prof.batch if prof is not None else 1  # the library is compiled for the profile's batch
    input_shape = [batch, *spec["input"]]
    example = prof.example_input(first_images(splits.test, prof.batch)) if prof is not None else first_images(splits.test, 1)
    d = space.data
    config: dict[str, Any] = {
        "format": EXPORT_FORMAT, "hwssl_version": hwssl.__version__, "torch_version": torch.__version__,
        "exported_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "study": study.study_name, "storage": display_url(storage) if storage else None, "trial": trial.number,
        "model": x.get("model"), "arch_key": x.get("arch_key"), "precision": precision,
        "files": {"arch": "arch.json", "weights": "weights.pt", "library": None},
        "input": {"shape": input_shape, "dtype": "float32", "layout": "NCHW",
                  "pixel_scale": _pixel_scale(d.name, d.path),
                  "mean": list(splits.mean), "std": list(splits.std),
                  "preprocess": "x = (pixels / pixel_scale - mean[c]) / std[c] per channel c"},
        "output": {"shape": [batch, info.num_classes], "kind": "logits",
                   "classes": list(info.class_names) or [str(i) for i in range(info.num_classes)]},
        "data": {"name": d.name, "description": info.description, "split": x.get("split"),
                 "load_dataset": {"name": d.name, "val_fraction": d.val_fraction,
                                  "train_subset": d.train_subset or None, "val_subset": d.val_subset or None,
                                  "test_subset": d.test_subset or None, "seed": space.seed,
                                  "path": d.path or None}},
        "strengths": dict(trial.trial.user_attrs.get("strengths") or x.get("strengths") or {}),
        "accuracy": {"validation": rec.accuracy, "test": rec.accuracy_test,
                     "dense_validation": rec.dense.accuracy, "dense_test": rec.dense.accuracy_test,
                     "test_reproduced": test_acc},
        "macs": rec.flops, "macs_dense": rec.flops_dense, "params": rec.params, "params_dense": rec.params_dense,
        # per profile, by the record's rule: the final re-timing where there is one, else the cheap one
        "latency_ms": {p: lat.to_dict() for p in rec.profiles if (lat := rec.latency(p)) is not None},
        "latency_ms_dense": {p: lat.to_dict() for p in rec.profiles if (lat := rec.dense_latency(p)) is not None},
        "profile": None, "library": None,
    }
    if precision == "int8":
        config["int8"] = {"note": "model.so runs the post-training int8 network (float image in, float logits "
                                  "out); arch.json/weights.pt are the fp32 network it was quantised from",
                          "accuracy_fp32": {"validation": rec.fp32.accuracy, "test": rec.fp32.accuracy_test},
                          "integer_only": x.get("integer_only"), "float_ops": x.get("float_ops"),
                          "calibration": dataclasses.asdict(space.quant), "scales": deployed.info}
    for timings in (config["latency_ms"], config["latency_ms_dense"]):
        for value in timings.values():
            if isinstance(value, dict):
                value.pop("per_layer", None)

    if prof is not None:
        lib_path = out / LIBRARY_FILE
        built = (_build_int8_library(deployed, example, prof, lib_path) if precision == "int8"
                 else _build_library(model, example, prof, lib_path))
        config["files"]["library"] = LIBRARY_FILE
        config["profile"] = {"name": prof.name, "path": prof.path, "target": prof.target,
                             "threads": prof.threads, "runner": prof.runner.address()}
        import tvm
        library = {"file": LIBRARY_FILE, "batch": batch, **built, "tvm_version": tvm.__version__}
        if not built["tuned"]:
            warnings.append(f"the library for {prof.name} is built WITHOUT tuned schedules (no MetaSchedule "
                            f"records in {prof.database_dir()}); it will run slower than tuned code")
        if prof.name not in config["latency_ms"]:
            warnings.append(f"the study recorded no latency on {prof.name}; time the library before relying on it")
        if _runs_here(prof):
            diff = _check_library(out, deployed, example, prof.target_kind == "cuda")
            library["max_abs_diff_vs_pytorch"] = diff
            if not diff <= TVM_TOLERANCE:
                warnings.append(f"TVM output differs from PyTorch by {diff:.3g} (> {TVM_TOLERANCE})")
        else:
            library["max_abs_diff_vs_pytorch"] = None
            library["not_checked"] = "the library targets another device; load it there to check it"
        config["library"] = library
    config["warnings"] = warnings
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1, default=str))
    return ExportResult(directory=out, config=config, warnings=warnings)


def load_config(directory: str | Path) -> dict[str, Any]:
    """The ``deploy.json`` of an export directory."""
    return json.loads((Path(directory) / CONFIG_FILE).read_text())


def load_exported(directory: str | Path) -> nn.Module:
    """Rebuild the exported PyTorch model (eval mode) from ``arch.json`` + ``weights.pt``."""
    directory = Path(directory)
    if not (directory / "arch.json").is_file() or not (directory / "weights.pt").is_file():
        raise ExportError(f"{directory} is not an hwssl export (arch.json and weights.pt expected)")
    return load_compacted(directory)


__all__ = ["EXPORT_FORMAT", "ExportError", "ExportResult", "export_trial", "load_exported", "load_config",
           "load_library"]
