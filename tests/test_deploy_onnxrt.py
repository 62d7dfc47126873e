"""ONNX export and ONNX Runtime: plain, lowered (shape-sparse) and residual compacted nets match PyTorch."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from test_compact import inputs, make_model, zero_random_groups
from deploy_support import LoweredShapeConv, tiny_net
from hwssl.compact import compact_model
from hwssl.config.profile import TimingSettings
from hwssl.deploy import onnxrt
from hwssl.models.layers import CompactConv2d

TOL = 1e-5


def _export_and_check(model: torch.nn.Module, x: torch.Tensor, path: Path) -> onnx.ModelProto:
    onnxrt.export_onnx(model, x, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert onnxrt.check_onnx(path, model, x) <= TOL
    return proto


def test_plain_net_exports_at_the_opset_and_matches(tmp_path: Path) -> None:
    model, x = tiny_net()
    proto = _export_and_check(model, x, tmp_path / "tiny.onnx")
    assert proto.opset_import[0].version == onnxrt.OPSET
    assert [i.name for i in proto.graph.input] == [onnxrt.INPUT_NAME]


@pytest.mark.parametrize("stride", [1, 2])
def test_lowered_conv_pattern_exports_as_slices_and_gathers(tmp_path: Path, stride: int) -> None:
    layer = LoweredShapeConv(stride=stride).eval()
    proto = _export_and_check(layer, torch.randn(1, 3, 8, 8), tmp_path / "lowered.onnx")
    ops = {n.op_type for n in proto.graph.node}
    assert {"Slice", "Gather", "Concat", "Conv"} <= ops


@pytest.mark.parametrize("name", ["lenet", "resnet20"])
def test_compacted_shape_sparse_and_residual_nets_match_pytorch(tmp_path: Path, name: str) -> None:
    model = make_model(name, 0)
    zero_random_groups(model, 0)
    compacted = compact_model(model, min_shape_sparsity=0.0).model.eval()
    assert any(isinstance(m, CompactConv2d) and m.lowered for m in compacted.modules())
    x = inputs(name, 1, 5)
    _export_and_check(compacted, x, tmp_path / f"{name}.onnx")
    # a second input (the file is not specialised to the example's values)
    sess = onnxrt.session(tmp_path / f"{name}.onnx", 1)
    y = inputs(name, 1, 6)
    with torch.no_grad():
        assert abs(onnxrt.run(sess, y.numpy()) - compacted(y).numpy()).max() <= TOL


def test_ort_runner_times_rounds_with_the_thread_count(tmp_path: Path) -> None:
    model, x = tiny_net()
    path = onnxrt.export_onnx(model, x, tmp_path / "t.onnx")
    sess = onnxrt.session(path, 2)
    assert sess.get_session_options().intra_op_num_threads == 2
    samples = onnxrt.ort_runner(sess, x.numpy(), TimingSettings(warmup=1, number=5, repeat=4, min_repeat_ms=1))()
    assert len(samples) == 4 and all(s > 0 for s in samples)
