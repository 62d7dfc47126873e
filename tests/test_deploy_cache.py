"""The latency cache's keys: a tuned timing belongs to one life of its tuning database."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

from deploy_support import fast_cpu_profile
from hwssl.config.profile import load_profile
from hwssl.deploy.cache import database_generation, latency_key


def _key(profile, generation: str, tuned: bool = True) -> str:
    return latency_key(arch_key="net", profile=profile, target="llvm", tuned=tuned,
                       trials_per_task=4 if tuned else None, versions={"tvm": "x"}, input_shape=(1, 1, 28, 28),
                       database=generation)


def test_a_tuned_timing_is_not_reused_after_its_tuning_database_is_made_again(tmp_path):
    """bench/compare.py --fresh deletes a method's database; builds and timings made with the schedules
    it held must not come back from the cache (a LeNet re-run re-timed its front in 0 s that way)."""
    profile = load_profile(fast_cpu_profile(tmp_path, threads=1))
    db = profile.database_dir(tmp_path / "cache")
    first = database_generation(db)
    assert first and database_generation(db) == first
    shutil.rmtree(db)
    second = database_generation(db)
    assert second != first
    assert _key(profile, first) != _key(profile, second)
    assert _key(profile, first, tuned=False) == _key(profile, second, tuned=False)  # untuned: no database


def test_concurrent_workers_agree_on_a_new_database_generation(tmp_path):
    db = tmp_path / "tuning" / "x86"
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: database_generation(db), range(32)))
    assert len(tokens) == 1
