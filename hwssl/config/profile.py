"""Hardware profiles: where and how a compacted network is compiled and timed.

A profile is a TOML file (see ``hardware_profiles/``)::

    name = "x86_cpu"                    # defaults to the file stem
    description = "this machine's CPU"
    threads = 2                         # most threads: TVM and ONNX Runtime are timed at every count
                                        # 1..threads and the fastest count is the latency; PyTorch at threads
    batch = 1                           # images per inference the deployment runs (latency is per batch)
    channel_round = 4                   # round kept channels to a multiple of this
    cross_compiler = ""                 # e.g. "aarch64-linux-gnu-g++"; "" = the host's compiler

    target = { kind = "llvm", mcpu = "host", num-cores = 2 }   # required; passed to tvm.target.Target(dict)
    target_host = { kind = "llvm" }     # optional (GPU targets)

    [timing]
    warmup = 10                         # untimed runs first
    number = 20                         # runs averaged per sample
    repeat = 5                          # samples per round; the median of all rounds is reported
    min_repeat_ms = 20                  # grow `number` until one sample takes this long
    cooldown_ms = 0                     # pause between samples
    rounds = 3                          # at least this many rounds; a candidate and its dense
                                        # reference alternate within each round (same process)
    max_rounds = 9                      # more rounds while a series' spread is above max_spread;
                                        # still above after max_rounds: the latency is flagged noisy
    max_spread = 0.1                    # spread = interquartile range / median of a series
    pin_threads = true                  # pin each TVM worker thread to one of the CPUs this process
                                        # may use (false: threads float over those CPUs)
    final_timings = 5                   # full re-timing (`hwssl retime`, the search's end): timings per
                                        # network, in passes over the front, the fastest kept (a
                                        # 2-thread net's time on a shared 2-core box has slow spells)

    [tuning]
    trials_per_task = 8                 # cheap budget used during a search
    full_trials_per_task = 64           # budget for Pareto candidates
    database = ""                       # "" = <cache root>/tuning/<name>; relative = under the cache root
    builder_timeout_s = 180             # each fresh build worker pays a ~20 s import
    builder_workers = 0                 # 0 = number of CPUs

    [runner]
    kind = "local"                      # local | rpc
    host = "127.0.0.1"                  # rpc: a `python -m tvm.exec.rpc_server` ...
    port = 9090
    tracker_host = ""                   # ... or a tracker (`python -m tvm.exec.rpc_tracker`) and a key
    tracker_port = 9190
    key = ""
    session_timeout_s = 60
    reconnect_s = 30                    # a device that does not answer is retried this long (a board
                                        # rebooting, a server restarted) before the trial fails

An llvm target without ``num-cores`` gets ``num-cores = threads`` (MetaSchedule
needs it). ``mcpu = "host"`` in an llvm target is an hwssl extension: it becomes the LLVM
name of this machine's CPU when the target is built (LLVM itself rejects
``native`` for TVM's triples and silently falls back to generic code).

Loading checks every key (unknown keys, types, ranges, the target kind); a
target attribute that TVM rejects is reported when
:func:`hwssl.deploy.target.check_target` runs (it imports TVM). Whether the profile
can be timed *from this machine now* (drivers, sockets, PATH) is a separate question
answered by :func:`hwssl.deploy.availability.profile_availability`: this module only
parses and validates.
"""

from __future__ import annotations

import copy
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwssl.config._reader import ConfigError, TableReader, load_toml

#: Target kinds this deployment layer can build and time (llvm: CPUs, cuda: NVIDIA GPUs).
TARGET_KINDS = ("llvm", "cuda")
RUNNER_KINDS = ("local", "rpc")
# Machine names as LLVM triples spell them, keyed by what platform.machine() says.
_ARCH_ALIASES = {"x86_64": {"x86_64", "amd64"}, "aarch64": {"aarch64", "arm64"}}


@dataclass(frozen=True)
class TimingSettings:
    warmup: int = 10
    number: int = 20
    repeat: int = 5
    min_repeat_ms: int = 20
    cooldown_ms: int = 0
    rounds: int = 3
    max_rounds: int = 9
    max_spread: float = 0.1
    pin_threads: bool = True
    final_timings: int = 5


@dataclass(frozen=True)
class TuningSettings:
    trials_per_task: int = 8
    full_trials_per_task: int = 64
    database: str = ""
    builder_timeout_s: float = 180.0
    builder_workers: int = 0


@dataclass(frozen=True)
class RunnerSettings:
    kind: str = "local"
    host: str = ""
    port: int = 9090
    tracker_host: str = ""
    tracker_port: int = 9190
    key: str = ""
    session_timeout_s: float = 60.0
    reconnect_s: float = 30.0

    @property
    def uses_tracker(self) -> bool:
        return bool(self.tracker_host)

    def address(self) -> str:
        """``rpc://host:port`` (direct) or ``rpc://key@tracker:port`` (tracker), or ``local``."""
        if self.kind == "local":
            return "local"
        if self.uses_tracker:
            return f"rpc://{self.key}@{self.tracker_host}:{self.tracker_port}"
        return f"rpc://{self.host}:{self.port}"


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    path: str
    target: dict[str, Any]
    target_host: dict[str, Any] | None = None
    description: str = ""
    threads: int = 1
    channel_round: int = 1
    cross_compiler: str = ""
    batch: int = 1
    timing: TimingSettings = field(default_factory=TimingSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    runner: RunnerSettings = field(default_factory=RunnerSettings)

    def __hash__(self) -> int:  # dict fields: hash the stable key instead
        return hash(self.key())

    @property
    def target_kind(self) -> str:
        return str(self.target["kind"])

    @property
    def is_remote(self) -> bool:
        return self.runner.kind == "rpc"

    def example_input(self, images: Any) -> Any:
        """The input a timing uses: the first ``batch`` of ``images`` (a tensor N x C x H x W), repeated
        when there are fewer."""
        n = len(images)
        if n >= self.batch:
            return images[:self.batch]
        return images.repeat((self.batch + n - 1) // n, *([1] * (images.dim() - 1)))[:self.batch]

    def target_dict(self) -> dict[str, Any]:
        """A fresh copy of the target table (safe to mutate)."""
        return copy.deepcopy(self.target)

    def key(self) -> str:
        """Stable hash of everything that changes a measured latency.

        Target, host target, threads, timing protocol and which device is used
        (runner kind and address). Not: name, description, file path, tuning
        budgets or database location (the tuning state is keyed separately),
        channel rounding (it changes the architecture, which has its own key), the
        number of timings a full re-timing takes (``timing.final_timings``).
        """
        from hwssl.cache import stable_hash

        runner = {"kind": self.runner.kind}
        if self.is_remote:
            runner["address"] = self.runner.address()
        timing = asdict(self.timing)
        timing.pop("final_timings")  # how many timings a re-timing takes, not how each is taken
        return stable_hash({"target": self.target, "target_host": self.target_host, "threads": self.threads,
                            "timing": timing, "runner": runner})

    def database_dir(self, cache_root: str | os.PathLike[str] | None = None) -> Path:
        """Directory of this profile's MetaSchedule database (absolute)."""
        if cache_root is None:
            from hwssl.cache import cache_root as default_root
            cache_root = default_root()
        root = Path(cache_root)
        db = self.tuning.database
        if not db:
            return (root / "tuning" / self.name).resolve()
        p = Path(db).expanduser()
        return (p if p.is_absolute() else root / p).resolve()

    def error(self, key: str | None, message: str) -> ConfigError:
        """A :class:`ConfigError` that names this profile's file and ``key``."""
        return ConfigError(self.path, key, message)


# -- loading ---------------------------------------------------------------------------------


def _target_table(r: TableReader, name: str, required: bool) -> dict[str, Any] | None:
    if not r.has(name):
        if required:
            raise r.error(name, "required key is missing (a table such as { kind = \"llvm\" })")
        r.raw(name, None)
        return None
    t = r.sub(name)
    kind = t.string("kind", choices=TARGET_KINDS)
    out: dict[str, Any] = {"kind": kind}
    for attr, value in t.table.items():
        if attr == "kind":
            continue
        t.raw(attr)
        ok = isinstance(value, (str, int, bool)) or (
            isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value))
        if isinstance(value, float) or not ok:
            raise t.error(attr, f"expected a string, integer, boolean or list of strings, got {value!r}")
        out[attr] = copy.deepcopy(value)
    if "num-cores" in out and (isinstance(out["num-cores"], bool) or not isinstance(out["num-cores"], int)
                               or out["num-cores"] < 1):
        raise t.error("num-cores", f"expected an integer >= 1, got {out['num-cores']!r}")
    if kind == "cuda" and "arch" in out and not (isinstance(out["arch"], str) and out["arch"].startswith("sm_")):
        raise t.error("arch", f"expected a CUDA architecture such as 'sm_90', got {out['arch']!r}")
    t.finish()
    return out


def load_profile(path: str | os.PathLike[str]) -> HardwareProfile:
    """Read and validate one profile file; errors are :class:`ConfigError` naming file and key."""
    path = str(path)
    r = TableReader(path, load_toml(path))
    name = r.string("name", Path(path).stem)
    if not name or any(ch in name for ch in "/\\ ") or name.startswith("."):
        raise r.error("name", f"expected a plain name (no spaces or slashes), got {name!r}")
    description = r.string("description", "")
    target = _target_table(r, "target", required=True)
    assert target is not None
    target_host = _target_table(r, "target_host", required=False)
    if target_host is not None and target_host["kind"] != "llvm":
        raise r.error("target_host.kind", f"expected 'llvm' (the host runs the CPU side), got {target_host['kind']!r}")
    threads = r.integer("threads", 1, minimum=1)
    batch = r.integer("batch", 1, minimum=1)
    channel_round = r.integer("channel_round", 1, minimum=1)
    cross_compiler = r.string("cross_compiler", "")

    t = r.sub("timing")
    timing = TimingSettings(
        warmup=t.integer("warmup", TimingSettings.warmup, minimum=0),
        number=t.integer("number", TimingSettings.number, minimum=1),
        repeat=t.integer("repeat", TimingSettings.repeat, minimum=1),
        min_repeat_ms=t.integer("min_repeat_ms", TimingSettings.min_repeat_ms, minimum=0),
        cooldown_ms=t.integer("cooldown_ms", TimingSettings.cooldown_ms, minimum=0),
        rounds=t.integer("rounds", TimingSettings.rounds, minimum=1),
        max_rounds=t.integer("max_rounds", TimingSettings.max_rounds, minimum=1),
        max_spread=t.number("max_spread", TimingSettings.max_spread, minimum=0),
        pin_threads=t.boolean("pin_threads", TimingSettings.pin_threads),
        final_timings=t.integer("final_timings", TimingSettings.final_timings, minimum=1),
    )
    if timing.max_rounds < timing.rounds:
        raise t.error("max_rounds", f"expected an integer >= timing.rounds ({timing.rounds}), got {timing.max_rounds}")
    t.finish()

    t = r.sub("tuning")
    tuning = TuningSettings(
        trials_per_task=t.integer("trials_per_task", TuningSettings.trials_per_task, minimum=1),
        full_trials_per_task=t.integer("full_trials_per_task", TuningSettings.full_trials_per_task, minimum=1),
        database=t.string("database", ""),
        builder_timeout_s=t.number("builder_timeout_s", TuningSettings.builder_timeout_s, minimum=1),
        builder_workers=t.integer("builder_workers", 0, minimum=0),
    )
    t.finish()

    t = r.sub("runner")
    kind = t.string("kind", "local", choices=RUNNER_KINDS)
    runner = RunnerSettings(
        kind=kind,
        host=t.string("host", ""),
        port=t.integer("port", RunnerSettings.port, minimum=1, maximum=65535),
        tracker_host=t.string("tracker_host", ""),
        tracker_port=t.integer("tracker_port", RunnerSettings.tracker_port, minimum=1, maximum=65535),
        key=t.string("key", ""),
        session_timeout_s=t.number("session_timeout_s", RunnerSettings.session_timeout_s, positive=True),
        reconnect_s=t.number("reconnect_s", RunnerSettings.reconnect_s, minimum=0),
    )
    if kind == "rpc":
        if runner.tracker_host and not runner.key:
            raise t.error("key", "required with runner.tracker_host (the device key the board registered with)")
        if not runner.tracker_host and not runner.host:
            raise t.error("host", "runner.kind = 'rpc' needs host/port of an rpc_server, or tracker_host + key")
    t.finish()
    r.finish()

    if kind == "local" and target["kind"] == "llvm" and not triple_runs_here(target.get("mtriple")):
        raise ConfigError(path, "target.mtriple",
                          f"{target['mtriple']!r} cannot run on this {platform.machine()} host with "
                          "runner.kind = 'local'; use runner.kind = 'rpc' and a cross_compiler")
    return HardwareProfile(name=name, path=path, target=target, target_host=target_host, description=description,
                           threads=threads, channel_round=channel_round, cross_compiler=cross_compiler, batch=batch,
                           timing=timing, tuning=tuning, runner=runner)


# -- target triples (pure: no driver, socket or PATH probe; those live in hwssl.deploy.availability) ----


def triple_arch(mtriple: str | None) -> str:
    """``aarch64-linux-gnu`` -> ``aarch64``; ``None`` -> this machine's architecture."""
    if not mtriple:
        return platform.machine()
    return mtriple.split("-", 1)[0]


def triple_runs_here(mtriple: str | None) -> bool:
    arch = triple_arch(mtriple)
    here = platform.machine()
    return arch == here or arch in _ARCH_ALIASES.get(here, {here})
