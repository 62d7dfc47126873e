"""MetaSchedule tuning with one persistent database per profile.

The database (``JSONDatabase``) lives in ``profile.database_dir()`` and is
shared by every trial and study on this machine: a workload (one fused
kernel with its shapes) is tuned once for a given budget and reused by every
later network that contains it. Next to MetaSchedule's two JSON files a small
ledger (``hwssl_budgets.json``) records the largest per-task budget each
workload was tuned with, so a later request with a larger budget (a Pareto
candidate's full tuning) tunes it again, while equal or smaller budgets reuse
it. A file lock serialises processes that share the directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms

from hwssl import runlog
from hwssl.cache import file_lock
from hwssl.config.profile import HardwareProfile
from hwssl.deploy import _workers
from hwssl.deploy._builder import warm_builder_for
from hwssl.deploy.compile import fuse
from hwssl.deploy.errors import DeployError
from hwssl.deploy.kernels import worth_tuning
from hwssl.deploy.replay_check import drop_unreplayable

LEDGER = "hwssl_budgets.json"
TARGET_MARKER = "hwssl_target.json"
_MS_LOGGER = "tvm.s_tir.meta_schedule"


@dataclass
class TuneStats:
    new_tasks: int
    reused_tasks: int
    tune_s: float
    trials_per_task: int
    database: str


@contextlib.contextmanager
def locked_database(db_dir: Path, target: tvm.target.Target | None = None,
                    profile: HardwareProfile | None = None) -> Iterator[Any]:
    """The profile's JSONDatabase, loaded while holding the directory's lock.

    With ``target``, the directory is claimed for that exact target on first
    use (``hwssl_target.json``) and refused for any other: MetaSchedule's
    database does not filter records by target, so schedules tuned for one
    CPU (say with AVX-512 or VNNI tensorization) would otherwise be applied to
    another.
    """
    db_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(db_dir / ".lock"):
        if target is not None:
            _claim(db_dir, str(target), profile)
        drop_unreplayable(db_dir)
        yield ms.database.JSONDatabase(work_dir=str(db_dir), module_equality="structural")


def _claim(db_dir: Path, target: str, profile: HardwareProfile | None) -> None:
    marker = db_dir / TARGET_MARKER
    if marker.is_file():
        owner = json.loads(marker.read_text()).get("target")
        if owner != target:
            where = profile.path if profile is not None else str(db_dir)
            raise DeployError(where, f"the tuning database {db_dir} was made for target {owner}, not {target}; "
                              "delete it or point tuning.database elsewhere", key="tuning.database")
        return
    marker.write_text(json.dumps({"target": target}, indent=1))


def open_database(db_dir: Path, target: tvm.target.Target | None = None,
                  profile: HardwareProfile | None = None) -> Any:
    """Load the database (under the lock) for building; returns an in-memory snapshot."""
    with locked_database(db_dir, target, profile) as db:
        return db


def workload_key(task: Any, target: tvm.target.Target) -> str:
    return f"{tvm_ffi.structural_hash(task.dispatched[0]):x}:{target.kind.name}"


def _read_ledger(db_dir: Path) -> dict[str, int]:
    path = db_dir / LEDGER
    if not path.is_file():
        return {}
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, OSError):
        return {}


def _write_ledger(db_dir: Path, ledger: dict[str, int]) -> None:
    tmp = db_dir / (LEDGER + ".tmp")
    tmp.write_text(json.dumps(ledger, indent=0, sort_keys=True))
    tmp.replace(db_dir / LEDGER)


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


_runner_lock = threading.Lock()
_local_runners: dict[tuple[Any, ...], Any] = {}


def _evaluator(profile: HardwareProfile) -> Any:
    t = profile.timing
    return ms.runner.EvaluatorConfig(number=t.number, repeat=min(t.repeat, 3), min_repeat_ms=t.min_repeat_ms,
                                     enable_cpu_cache_flush=False)


def make_runner(profile: HardwareProfile) -> Any:
    """Local runner (process-wide, threads from the profile) or an RPC runner."""
    evaluator = _evaluator(profile)
    cooldown = profile.timing.cooldown_ms / 1000.0
    if not profile.is_remote:
        key = (profile.threads, tuple(evaluator), cooldown)
        with _runner_lock:
            runner = _local_runners.get(key)
            if runner is None:
                # The runner's worker process reads TVM_NUM_THREADS when its runtime starts.
                with _env("TVM_NUM_THREADS", str(profile.threads)):
                    runner = ms.runner.LocalRunner(timeout_sec=max(60.0, profile.tuning.builder_timeout_s),
                                                   evaluator_config=evaluator, cooldown_sec=cooldown)
                _local_runners[key] = runner
            return runner
    run = profile.runner
    _workers.register()
    if run.uses_tracker:
        cfg = ms.runner.RPCConfig(tracker_host=run.tracker_host, tracker_port=run.tracker_port, tracker_key=run.key,
                                  session_timeout_sec=int(run.session_timeout_s))
        return ms.runner.RPCRunner(rpc_config=cfg, evaluator_config=evaluator, cooldown_sec=cooldown, max_workers=1)
    # MetaSchedule only knows trackers; a direct server's host/port travel in the tracker fields.
    cfg = ms.runner.RPCConfig(tracker_host=run.host, tracker_port=run.port, tracker_key="direct",
                              session_timeout_sec=int(run.session_timeout_s))
    return ms.runner.RPCRunner(rpc_config=cfg, evaluator_config=evaluator, cooldown_sec=cooldown, max_workers=1,
                               f_create_session=_workers.direct_session)


@contextlib.contextmanager
def _quiet_metaschedule() -> Iterator[None]:
    """MetaSchedule prints a task table per batch to stdout; keep warnings only (full log in <db>/logs),
    and send those to the run's log when :mod:`hwssl.runlog` captures it.

    Its logging setup also re-lists every handler of its logger by name and
    fails on unnamed ones (e.g. a test runner's capture handler), so foreign
    handlers are detached for the duration and put back afterwards.
    """
    logger = logging.getLogger(_MS_LOGGER)
    saved = logger.level
    foreign = [h for h in logger.handlers if not (h.get_name() or "").startswith(_MS_LOGGER)]
    for handler in foreign:
        logger.removeHandler(handler)
    logger.setLevel(logging.WARNING)
    # its console handler binds to sys.stdout when tuning starts: during a quiet run, that is the run's log
    stdout, log = sys.stdout, runlog.log_stream()
    if log is not None:
        sys.stdout = log
    try:
        yield
    finally:
        sys.stdout = stdout
        logger.setLevel(saved)
        for handler in foreign:
            logger.addHandler(handler)


def search_strategy(trials_per_task: int) -> Any:
    """Evolutionary search sized to the budget.

    MetaSchedule's defaults (population 512, 4 generations) cost tens of
    seconds of cost-model work per task on 2 cores before the first
    measurement, whatever the budget; a search-time budget of a few trials
    per task does not need them. Full budgets (>= 64) keep the defaults.
    """
    if trials_per_task >= 64:
        return ms.search_strategy.EvolutionarySearch()
    population = max(64, min(512, 16 * trials_per_task))
    return ms.search_strategy.EvolutionarySearch(population_size=population,
                                                 init_min_unmeasured=min(50, population // 2),
                                                 genetic_num_iters=2 if trials_per_task < 32 else 4)


def tune_and_open(prepared: tvm.IRModule, target: tvm.target.Target, profile: HardwareProfile, *,
                  trials_per_task: int | None, db_dir: Path) -> tuple[TuneStats, Any]:
    """:func:`tune` the new workloads of ``prepared`` (``trials_per_task`` defaults to the profile's
    cheap budget), then the database to build with."""
    trials = int(trials_per_task or profile.tuning.trials_per_task)
    stats = tune(prepared, target, profile, trials_per_task=trials, db_dir=db_dir)
    return stats, open_database(db_dir, target, profile)


def tune(prepared: tvm.IRModule, target: tvm.target.Target, profile: HardwareProfile, *, trials_per_task: int,
         db_dir: Path, seed: int | None = 0, builder: Any = None, strategy: Any = None) -> TuneStats:
    """Tune the workloads of ``prepared`` that this database has not seen with this budget yet.

    ``builder``/``strategy`` override the warm builder and the budget-sized
    search (used by benchmarks to compare against MetaSchedule's defaults).
    """
    t0 = time.perf_counter()
    if builder is None:
        builder = warm_builder_for(profile)  # starts warming now, overlapping task extraction
    tasks = [t for t in ms.relax_integration.extract_tasks(fuse(prepared, target), target) if worth_tuning(t.task_name)]
    with locked_database(db_dir, target, profile) as db:
        ledger = _read_ledger(db_dir)
        keys = [workload_key(t, target) for t in tasks]
        new = [(t, k) for t, k in zip(tasks, keys) if ledger.get(k, 0) < trials_per_task]
        # the same workload can appear under two names only if structurally equal: tune it once
        seen: set[str] = set()
        new = [(t, k) for t, k in new if not (k in seen or seen.add(k))]
        reused = len(set(keys)) - len(new)
        if new:
            _workers.import_intrinsics(target.kind.name)  # before TuneContext imports all of them
            with _quiet_metaschedule():
                contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                    [t for t, _ in new], work_dir=str(db_dir), num_threads=os.cpu_count() or 1, seed=seed,
                    strategy=strategy if strategy is not None else search_strategy(trials_per_task))
                if contexts:
                    try:
                        ms.tune.tune_tasks(
                            tasks=contexts, task_weights=weights, work_dir=str(db_dir),
                            max_trials_global=trials_per_task * len(contexts), max_trials_per_task=trials_per_task,
                            num_trials_per_iter=min(64, trials_per_task), builder=builder,
                            runner=make_runner(profile), database=db, cost_model="xgb")
                    except Exception as exc:
                        raise DeployError(profile.path, f"MetaSchedule tuning failed: {type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0] if str(exc) else ''} (log in {db_dir}/logs)"
                                          ) from exc
            for _, k in new:
                ledger[k] = max(ledger.get(k, 0), trials_per_task)
            _write_ledger(db_dir, ledger)
    return TuneStats(new_tasks=len(new), reused_tasks=reused, tune_s=time.perf_counter() - t0,
                     trials_per_task=trials_per_task, database=str(db_dir))

