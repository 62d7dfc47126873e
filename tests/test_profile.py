"""Hardware profiles: the shipped files load, keys are stable, bad files fail with file + key."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from hwssl.config import ConfigError
from hwssl.config.profile import load_profile
from hwssl.deploy.availability import gpu_available, list_profiles, needs_cross_compiler, profile_availability
from hwssl.deploy.target import check_target

PROFILES = Path(__file__).resolve().parent.parent / "hardware_profiles"

MINIMAL = 'target = { kind = "llvm" }\n'


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["x86_cpu", "cuda_gpu", "arm_cortex_a72"])
def test_shipped_profiles_load(name: str) -> None:
    p = load_profile(PROFILES / f"{name}.toml")
    assert p.name == name
    assert p.target_kind in ("llvm", "cuda")
    assert p.tuning.builder_timeout_s >= 180
    assert p.channel_round in (4, 8)
    check_target(p)  # TVM accepts every attribute


def test_shipped_profile_details() -> None:
    x86 = load_profile(PROFILES / "x86_cpu.toml")
    assert x86.threads == 2 and x86.target["num-cores"] == 2 and not x86.is_remote
    cuda = load_profile(PROFILES / "cuda_gpu.toml")
    assert cuda.target["arch"].startswith("sm_")
    arm = load_profile(PROFILES / "arm_cortex_a72.toml")
    assert arm.target["mtriple"] == "aarch64-linux-gnu" and "+neon" in arm.target["mattr"]
    assert arm.is_remote and arm.cross_compiler == "aarch64-linux-gnu-g++"
    assert needs_cross_compiler(arm) and not needs_cross_compiler(x86)


def test_key_is_stable_and_tracks_latency_fields(tmp_path: Path) -> None:
    base = MINIMAL + "threads = 2\n"
    a = load_profile(write(tmp_path, base, "a.toml"))
    b = load_profile(write(tmp_path, base + 'description = "other words"\n[tuning]\ntrials_per_task = 3\n'
                           '[timing]\nfinal_timings = 2\n', "b.toml"))
    c = load_profile(write(tmp_path, MINIMAL + "threads = 1\n", "c.toml"))
    d = load_profile(write(tmp_path, base + "[timing]\nnumber = 7\n", "d.toml"))
    assert a.key() == load_profile(tmp_path / "a.toml").key()
    assert a.key() == b.key()  # description, tuning budget and re-timing count do not change a latency
    assert b.timing.final_timings == 2 and a.timing.final_timings == 5
    assert len({a.key(), c.key(), d.key()}) == 3
    assert hash(a) == hash(load_profile(tmp_path / "a.toml"))


def test_batch_sets_the_timed_input(tmp_path: Path) -> None:
    import torch

    one = load_profile(write(tmp_path, MINIMAL, "one.toml"))
    four = load_profile(write(tmp_path, MINIMAL + "batch = 4\n", "four.toml"))
    images = torch.arange(3 * 2 * 5 * 5, dtype=torch.float32).reshape(3, 2, 5, 5)
    assert one.batch == 1 and one.example_input(images).shape == (1, 2, 5, 5)
    x = four.example_input(images)  # fewer images than the batch: repeated
    assert x.shape == (4, 2, 5, 5) and torch.equal(x[3], images[0]) and torch.equal(x[:3], images)


def test_database_dir_resolution(tmp_path: Path) -> None:
    p = load_profile(write(tmp_path, MINIMAL + 'name = "box"\n'))
    assert p.database_dir(tmp_path / "cache") == (tmp_path / "cache" / "tuning" / "box").resolve()
    q = load_profile(write(tmp_path, MINIMAL + '[tuning]\ndatabase = "mydb"\n', "q.toml"))
    assert q.database_dir(tmp_path / "cache") == (tmp_path / "cache" / "mydb").resolve()
    r = load_profile(write(tmp_path, MINIMAL + f'[tuning]\ndatabase = "{tmp_path / "abs"}"\n', "r.toml"))
    assert r.database_dir(tmp_path / "cache") == (tmp_path / "abs").resolve()


def _gpu_device_nodes() -> bool:
    """Independent evidence of a usable NVIDIA GPU: the driver's device nodes exist."""
    return Path("/dev/nvidiactl").exists() and any(Path("/dev").glob("nvidia[0-9]*"))


def test_availability_here() -> None:
    ok, why = profile_availability(load_profile(PROFILES / "x86_cpu.toml"))
    assert ok, why
    gpu, gpu_why = gpu_available()
    assert gpu == _gpu_device_nodes(), gpu_why  # the driver probe agrees with the device nodes
    ok, why = profile_availability(load_profile(PROFILES / "cuda_gpu.toml"))
    assert ok == gpu
    if not gpu:
        assert "CUDA" in why and ("libcuda.so.1" in why or "no usable GPU" in why)


def test_availability_rpc_and_cross_compiler(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    rpc = f'target = {{ kind = "llvm" }}\n[runner]\nkind = "rpc"\nhost = "127.0.0.1"\nport = {port}\n'
    ok, why = profile_availability(load_profile(write(tmp_path, rpc)))
    assert not ok and f"127.0.0.1:{port}" in why
    arm = ('cross_compiler = "no-such-aarch64-g++"\n'
           'target = { kind = "llvm", mtriple = "aarch64-linux-gnu" }\n'
           f'[runner]\nkind = "rpc"\nhost = "127.0.0.1"\nport = {port}\n')
    ok, why = profile_availability(load_profile(write(tmp_path, arm, "arm.toml")))
    assert not ok and "no-such-aarch64-g++" in why


def test_list_profiles_rows(tmp_path: Path) -> None:
    for f in PROFILES.glob("*.toml"):
        shutil.copy(f, tmp_path / f.name)
    write(tmp_path, "target = 3\n", "broken.toml")
    rows = {r["name"]: r for r in list_profiles(tmp_path)}
    assert {"x86_cpu", "cuda_gpu", "arm_cortex_a72", "broken"} <= set(rows)
    assert rows["x86_cpu"]["available"] is True and rows["x86_cpu"]["device"] == "local"
    assert rows["arm_cortex_a72"]["device"].startswith("rpc://")
    assert rows["broken"]["available"] is False and "invalid" in rows["broken"]["reason"]
    for row in rows.values():
        assert set(row) == {"name", "file", "target", "device", "available", "reason"}


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (MINIMAL + "threds = 2\n", "threds", "did you mean 'threads'"),
        (MINIMAL + "[timing]\nnumbr = 3\n", "timing.numbr", "unknown key"),
        (MINIMAL + "[timing]\nnumber = 0\n", "timing.number", "expected an integer >= 1, got 0"),
        (MINIMAL + "[timing]\nrounds = 4\nmax_rounds = 2\n", "timing.max_rounds", ">= timing.rounds (4), got 2"),
        (MINIMAL + "[timing]\nmax_spread = -0.1\n", "timing.max_spread", "expected a number >= 0"),
        (MINIMAL + "[timing]\nrounds = 0\n", "timing.rounds", "expected an integer >= 1, got 0"),
        (MINIMAL + "[timing]\nfinal_timings = 0\n", "timing.final_timings", "expected an integer >= 1, got 0"),
        (MINIMAL + '[timing]\npin_threads = "yes"\n', "timing.pin_threads", "expected true or false"),
        (MINIMAL + 'threads = "2"\n', "threads", "expected an integer"),
        (MINIMAL + "channel_round = 1.5\n", "channel_round", "expected an integer"),
        (MINIMAL + "batch = 0\n", "batch", "expected an integer >= 1, got 0"),
        (MINIMAL + "[tuning]\nbuilder_timeout_s = -1\n", "tuning.builder_timeout_s", ">= 1"),
        ('target = { kind = "opencl" }\n', "target.kind", "expected one of ['llvm', 'cuda']"),
        ('target = { kind = "lvm" }\n', "target.kind", "did you mean 'llvm'"),
        ('target = { kind = "llvm", num-cores = 0 }\n', "target.num-cores", ">= 1"),
        ('target = { kind = "llvm", mcpu = 3.5 }\n', "target.mcpu", "expected a string"),
        ('target = { kind = "cuda", arch = "90" }\n', "target.arch", "sm_90"),
        ('target = "llvm -mcpu=x"\n', "target", "expected a table"),
        ("threads = 1\n", "target", "required key is missing"),
        ('target = { kind = "cuda" }\ntarget_host = { kind = "cuda" }\n', "target_host.kind", "'llvm'"),
        (MINIMAL + '[runner]\nkind = "ssh"\n', "runner.kind", "expected one of ['local', 'rpc']"),
        (MINIMAL + '[runner]\nkind = "rpc"\n', "runner.host", "rpc_server"),
        (MINIMAL + '[runner]\nkind = "rpc"\ntracker_host = "t"\n', "runner.key", "required"),
        (MINIMAL + '[runner]\nkind = "rpc"\nhost = "h"\nport = 70000\n', "runner.port", "<= 65535"),
        ('target = { kind = "llvm", mtriple = "aarch64-linux-gnu" }\n', "target.mtriple", "runner.kind = 'rpc'"),
        ('name = "a b"\n' + MINIMAL, "name", "plain name"),
    ],
)
def test_bad_profiles_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert info.value.path == str(path)
    assert info.value.key == key
    assert str(info.value).startswith(f"{path}: key '{key}': ")
    assert fragment in str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(write(tmp_path, "target = {", "x.toml"))
    with pytest.raises(ConfigError, match="file not found"):
        load_profile(tmp_path / "nope.toml")


def test_target_attribute_tvm_rejects(tmp_path: Path) -> None:
    path = write(tmp_path, 'target = { kind = "llvm", mtripel = "x86_64-linux-gnu" }\n')
    profile = load_profile(path)  # the kind is fine; the attribute is TVM's business
    with pytest.raises(ConfigError) as info:
        check_target(profile)
    assert info.value.key == "target" and str(path) in str(info.value) and "mtripel" in str(info.value)


PROFILE_INTEGER_KEYS = ["threads", "batch", "channel_round", "timing.warmup", "timing.number", "timing.repeat",
                        "timing.min_repeat_ms", "timing.cooldown_ms", "tuning.trials_per_task",
                        "tuning.full_trials_per_task", "tuning.builder_workers", "runner.port", "runner.tracker_port"]


@pytest.mark.parametrize("value", ["2.5", "true"])
@pytest.mark.parametrize("key", PROFILE_INTEGER_KEYS)
def test_integer_keys_refuse_non_integers(tmp_path: Path, key: str, value: str) -> None:
    section, _, name = key.rpartition(".")
    text = f"{name} = {value}\n{MINIMAL}" if not section else f"{MINIMAL}[{section}]\n{name} = {value}\n"
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert str(info.value) == f"{path}: key '{key}': expected an integer, got {value.replace('true', 'True')}"


@pytest.mark.parametrize("value", ["2.5", "true"])
def test_target_num_cores_refuses_non_integers(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f'target = {{ kind = "llvm", num-cores = {value} }}\n', "bad.toml")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert info.value.key == "target.num-cores" and str(path) in str(info.value)
