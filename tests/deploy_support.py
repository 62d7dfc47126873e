"""Small real networks and profile files shared by the deploy tests (a helper module, not a test file)."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PROFILES = Path(__file__).resolve().parent.parent / "hardware_profiles"


class TinyNet(nn.Module):
    """conv + BN + ReLU + max-pool + linear on a 1x8x8 input."""

    def __init__(self, channels: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))


def tiny_net(seed: int = 0, channels: int = 4) -> tuple[nn.Module, torch.Tensor]:
    """A TinyNet with non-trivial BN statistics, and an example input."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyNet(channels)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5, generator=g)
        model.bn.running_var.uniform_(0.5, 2.0, generator=g)
        model.bn.weight.uniform_(0.5, 1.5, generator=g)
        model.bn.bias.uniform_(-0.2, 0.2, generator=g)
    return model.eval(), torch.randn(1, 1, 8, 8, generator=g)


class ConvReLU(nn.Module):
    """One conv + ReLU: the smallest net with a real tuning task."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class LoweredShapeConv(nn.Module):
    """The compacted shape-sparse conv pattern, written out by hand.

    Pad, one strided slice per kept kernel offset, ``index_select`` of the
    channels kept at that offset, ``cat`` -> 1x1 ``conv2d`` over the kept
    lowered columns, plus a constant ``bias_map`` (C, H, W).
    """

    def __init__(self, cin: int = 3, cout: int = 5, k: int = 3, stride: int = 1, padding: int = 1,
                 size: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.k, self.stride, self.padding = k, stride, padding
        # keep a few (channel set, offset) pairs; some offsets keep every channel (no gather)
        self.offsets = [(0, 0, [0, 2]), (1, 1, list(range(cin))), (2, 1, [1]), (2, 2, [0, 1])]
        for n, (_, _, chs) in enumerate(self.offsets):
            self.register_buffer(f"cols{n}", torch.tensor(chs, dtype=torch.long))
        kcols = sum(len(c) for _, _, c in self.offsets)
        self.weight = nn.Parameter(torch.randn(cout, kcols, 1, 1, generator=g) * 0.3)
        self.bias = nn.Parameter(torch.randn(cout, generator=g) * 0.1)
        out = (size + 2 * padding - k) // stride + 1
        self.register_buffer("bias_map", torch.randn(cout, out, out, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.padding,) * 4)
        ho = (x.shape[2] - self.k) // self.stride + 1
        wo = (x.shape[3] - self.k) // self.stride + 1
        s = self.stride
        parts = []
        for n, (i, j, _) in enumerate(self.offsets):
            patch = x[:, :, i: i + s * (ho - 1) + 1: s, j: j + s * (wo - 1) + 1: s]
            parts.append(patch.index_select(1, getattr(self, f"cols{n}")))
        return F.conv2d(torch.cat(parts, dim=1), self.weight, self.bias) + self.bias_map

    def dense_equivalent(self) -> nn.Conv2d:
        """The ordinary conv whose removed columns are zero (for checking the pattern itself)."""
        cin = max(max(c) for _, _, c in self.offsets) + 1
        conv = nn.Conv2d(cin, self.weight.shape[0], self.k, self.stride, self.padding)
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.copy_(self.bias)
            col = 0
            for i, j, chs in self.offsets:
                for c in chs:
                    conv.weight[:, c, i, j] = self.weight[:, col, 0, 0]
                    col += 1
        return conv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_profile(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def fast_cpu_profile(tmp_path: Path, *, threads: int = 1, extra: str = "", name: str = "cpu_test", rounds: int = 1,
                     max_rounds: int = 2, max_spread: float = 0.5) -> Path:
    """A local llvm profile with a short timing protocol (tests)."""
    return write_profile(tmp_path / f"{name}.toml", f"""
name = "{name}"
threads = {threads}
target = {{ kind = "llvm", mcpu = "host", num-cores = {threads} }}
[timing]
warmup = 2
number = 10
repeat = 3
min_repeat_ms = 5
rounds = {rounds}
max_rounds = {max_rounds}
max_spread = {max_spread}
final_timings = 2
[tuning]
builder_workers = 1
{extra}
""")
