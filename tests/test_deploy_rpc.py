"""A device that dies does not kill the study; several workers share boards through a real tracker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from rpc_support import start, stop, wait_for_text
from deploy_support import fast_cpu_profile, free_port, tiny_net
from hwssl.config.profile import load_profile
from hwssl.deploy import DeployError, measure_candidate

# long enough that a kill lands while timing runs: >= 40 rounds of >= 3 x 30 ms
SLOW_TIMING = "rounds = 40\nmax_rounds = 40\n"


def _rpc_profile(tmp_path: Path, port: int, *, name: str = "rpc_dies", slow: bool = True,
                 reconnect_s: float = 0) -> Path:
    path = fast_cpu_profile(tmp_path, name=name, extra=f'[runner]\nkind = "rpc"\nhost = "127.0.0.1"\nport = {port}\n'
                            f'session_timeout_s = 120\nreconnect_s = {reconnect_s}\n')
    if slow:
        text = path.read_text().replace("min_repeat_ms = 5\nrounds = 1\nmax_rounds = 2\n",
                                        "min_repeat_ms = 30\n" + SLOW_TIMING)
        assert SLOW_TIMING in text
        path.write_text(text)
    return path


def test_killed_rpc_server_fails_the_measurement_with_the_reason_and_the_next_one_reconnects(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    server = start("rpc_server", port, log)
    profile = load_profile(_rpc_profile(tmp_path, port))
    model, x = tiny_net()
    outcome: dict[str, BaseException | dict] = {}

    def measure() -> None:
        try:
            outcome["result"] = measure_candidate(model, x, profile, arch_key="dies", tune=False, cache_dir=tmp_path)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=measure, daemon=True)
    try:
        worker.start()
        assert wait_for_text(log, "load_module", timeout_s=240), "the library never reached the server"
        stop(server)  # mid-measurement: the timing rounds take several seconds
        worker.join(timeout=120)
        assert not worker.is_alive(), "the measurement hung after the server died"
        err = outcome.get("error")
        assert isinstance(err, DeployError), outcome
        assert f"lost the RPC device rpc://127.0.0.1:{port} during measurement" in str(err)
        assert str(err).startswith(f"{profile.path}: key 'runner': ")

        with pytest.raises(DeployError, match="cannot reach|unreachable"):  # nothing listening: fails fast
            measure_candidate(model, x, profile, arch_key="dies", tune=False, cache_dir=tmp_path)

        server = start("rpc_server", port, log)  # the board comes back: the next measurement reconnects
        quick = load_profile(_rpc_profile(tmp_path, port, name="rpc_back", slow=False))
        r = measure_candidate(model, x, quick, arch_key="dies", tune=False, cache_dir=tmp_path)
        assert r["tvm"] > 0 and r["device"] == f"rpc://127.0.0.1:{port}" and r["max_abs_diff"] <= 1e-5
    finally:
        stop(server)


def test_a_search_goes_on_after_the_device_dies_mid_trial(tiny_space_file: Path, tmp_path: Path) -> None:
    """The server is killed while trial 0 is being timed and restarted: trial 0 fails with the reason,
    the study goes on, and the next trial waits for the device (runner.reconnect_s) and completes
    on the restarted server."""
    from hwssl.config import load_search_space
    from hwssl.search import SearchOptions, run_search

    port = free_port()
    log = tmp_path / "server.log"
    servers = [start("rpc_server", port, log)]
    profile = load_profile(_rpc_profile(tmp_path, port, reconnect_s=240))

    def kill_then_restart() -> None:
        if wait_for_text(log, "load_module", timeout_s=600):
            stop(servers[0])
            servers.append(start("rpc_server", port, log))

    killer = threading.Thread(target=kill_then_restart, daemon=True)
    killer.start()
    try:
        study = run_search(SearchOptions(space=load_search_space(tiny_space_file), profiles=[profile], tune=False,
                                         storage=f"sqlite:///{tmp_path / 's.db'}", study_name="dies", trials=1,
                                         artifacts=str(tmp_path / "a"), quiet=True))
        killer.join(timeout=60)
    finally:
        for s in servers:
            stop(s)
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert failed and "lost the RPC device" in failed[0].user_attrs["fail_reason"]
    assert len(complete) == 1 and failed[0].number < complete[0].number
    assert complete[0].user_attrs["result"]["latency_ms"]["rpc_dies"]["tvm"] > 0


def test_two_search_workers_time_through_a_real_tracker_with_two_boards(tiny_space_file: Path,
                                                                      tmp_path: Path) -> None:
    tracker_port, key = free_port(), "hwssl-test-board"
    procs = [start("rpc_tracker", tracker_port, tmp_path / "tracker.log")]
    try:
        for i in range(2):
            procs.append(start("rpc_server", free_port(), tmp_path / f"board{i}.log",
                               "--tracker", f"127.0.0.1:{tracker_port}", "--key", key))
        profile = fast_cpu_profile(tmp_path, name="boards", extra=f'[runner]\nkind = "rpc"\n'
                                   f'tracker_host = "127.0.0.1"\ntracker_port = {tracker_port}\nkey = "{key}"\n'
                                   "session_timeout_s = 120\n")
        storage = f"sqlite:///{tmp_path / 'pool.db'}"
        cmd = [sys.executable, "-m", "hwssl.cli", "search", "--space", str(tiny_space_file), "--storage", storage,
               "--study", "pool", "--profile", str(profile), "--no-tune", "--trials", "2", "--resume", "--quiet",
               "--no-report",
               "--artifacts", str(tmp_path / "a")]
        workers = [subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                   for _ in range(2)]
        for w in workers:
            try:
                _, err = w.communicate(timeout=900)
            finally:
                if w.poll() is None:
                    w.kill()
            assert w.returncode == 0, err.decode()[-2000:]
    finally:
        for p in procs:
            stop(p)
    study = optuna.load_study(study_name="pool", storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 2
    for t in complete:
        lat = t.user_attrs["result"]["latency_ms"]["boards"]
        assert lat["device"] == f"rpc://{key}@127.0.0.1:{tracker_port}" and lat["tvm"] > 0
    loads = sum((tmp_path / f"board{i}.log").read_text().count("load_module") for i in range(2))
    assert loads >= 2 * len(complete)  # candidate and dense of every trial ran on a board
