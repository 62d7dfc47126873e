"""A tuning database holding a record that no longer replays still loads: the record is dropped
(issue 11's ResNet comparison: a reduction tuned under two block names made the directory unloadable)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from deploy_support import ConvReLU, fast_cpu_profile
from hwssl.config.profile import load_profile
from hwssl.deploy import measure_candidate
from hwssl.deploy.replay_check import CHECKED, RECORDS, drop_unreplayable
from hwssl.deploy.tune import LEDGER, open_database


def _renamed(line: str) -> str:
    """The record with its first block looked up under a name its kernel does not have."""
    index, record = json.loads(line)
    text = json.dumps(record)
    name = re.search(r'"GetSBlock", \[\], \["([^"]+)"', text).group(1)
    return json.dumps([index, json.loads(text.replace(f'"{name}"', '"renamed_elsewhere"', 1))])


def test_a_record_that_does_not_replay_or_is_torn_is_dropped(tmp_path: Path, capsys) -> None:
    profile = load_profile(fast_cpu_profile(tmp_path))
    torch.manual_seed(0)
    model, x = ConvReLU().eval(), torch.randn(1, 2, 6, 6)
    first = measure_candidate(model, x, profile, arch_key="a", tune=True, trials_per_task=2, cache_dir=tmp_path,
                              torch_timing=False)
    assert first["new_tasks"] >= 1
    db = profile.database_dir(tmp_path)
    records = db / RECORDS
    good = records.read_text().splitlines()
    assert good and json.loads((db / LEDGER).read_text())
    bad = _renamed(good[0])
    records.write_text("\n".join(good + [bad, good[-1][: len(good[-1]) // 2]]) + "\n")  # + a torn last line

    open_database(db)                             # loads instead of failing on the two bad lines
    assert records.read_text().splitlines() == good
    assert "dropped 2 tuning record(s)" in capsys.readouterr().err
    assert json.loads((db / CHECKED).read_text()) == {"records_bytes": records.stat().st_size}
    assert drop_unreplayable(db) == 0             # checked records are not checked again

    again = measure_candidate(model, x, profile, arch_key="b", tune=True, trials_per_task=2, cache_dir=tmp_path,
                              torch_timing=False)
    assert again["new_tasks"] == 0 and again["scheduled_kernels"] == first["scheduled_kernels"]


class _Pooled(nn.Module):
    """``depth`` conv + ReLU layers, then a global mean: the mean's block is named after its input
    variable, so the same mean kernel gets another block name at another depth (as in a ResNet
    with blocks removed)."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(2 if i == 0 else 4, 4, 3, padding=1) for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x.mean((2, 3))


def test_the_same_kernel_under_another_block_name_leaves_the_database_loadable(tmp_path: Path, capsys) -> None:
    profile = load_profile(fast_cpu_profile(tmp_path))
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 6)
    shallow, deep = _Pooled(1).eval(), _Pooled(3).eval()
    measure_candidate(shallow, x, profile, arch_key="shallow", tune=True, trials_per_task=1, cache_dir=tmp_path,
                      torch_timing=False)
    # the deeper net's mean is the shallow one's kernel under another name; a larger budget tunes it again
    deep_result = measure_candidate(deep, x, profile, arch_key="deep", tune=True, trials_per_task=2,
                                    cache_dir=tmp_path, torch_timing=False)
    assert deep_result["max_abs_diff"] <= 1e-5 and deep_result["tvm"] > 0
    db = open_database(profile.database_dir(tmp_path))  # MetaSchedule alone fails to load this directory
    assert len(db) > 0
    assert "dropped" in capsys.readouterr().err        # the deep net's records of the shallow net's mean
    again = measure_candidate(shallow, x, profile, arch_key="shallow-again", tune=True, trials_per_task=2,
                              cache_dir=tmp_path, torch_timing=False)
    assert again["max_abs_diff"] <= 1e-5
