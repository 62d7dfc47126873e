"""Starting weights from a local state dict: torchvision's ResNet-18 and MobileNetV2 load onto
hwssl's specs and compute what torchvision computes; a file that does not fit is one error naming
the file and the first tensor at fault; with weights, the dense net is not trained."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from hwssl.config import ConfigError, load_search_space
from hwssl.models import build_model, model_spec
from hwssl.models.weights import WeightsError, load_weights


@torch.no_grad()
def randomise(model: nn.Module, seed: int) -> None:
    """Random weights and non-trivial BatchNorm statistics (so every tensor matters)."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if t.is_floating_point():
            t.copy_(torch.rand(t.shape, generator=gen) + 0.5 if name.endswith("running_var")
                    else torch.randn(t.shape, generator=gen) * 0.1)


def test_torchvision_resnet18_state_dict_loads_and_matches(tmp_path):
    tv = torchvision.models.resnet18(weights=None, num_classes=10)
    randomise(tv, 0)
    torch.save(tv.state_dict(), tmp_path / "r18.pt")
    ours = build_model(model_spec("resnet18", 3, (64, 64), 10))
    load_weights(ours, tmp_path / "r18.pt")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), tv.eval()(x), atol=1e-5, rtol=1e-5)


def test_torchvision_mobilenet_v2_state_dict_is_renamed_and_matches(tmp_path):
    tv = torchvision.models.mobilenet_v2(weights=None, num_classes=10, width_mult=0.5)
    randomise(tv, 2)
    torch.save({"state_dict": tv.state_dict()}, tmp_path / "mnv2.pt")   # a wrapped checkpoint works too
    ours = build_model(model_spec("mobilenetv2", 3, (64, 64), 10, width=0.5))   # >= 64: torchvision strides
    load_weights(ours, tmp_path / "mnv2.pt")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), tv.eval()(x), atol=1e-5, rtol=1e-5)


def test_weights_that_do_not_fit_name_the_file_and_first_tensor(tmp_path):
    tv = torchvision.models.resnet18(weights=None)   # 1000 classes
    torch.save(tv.state_dict(), tmp_path / "r18.pt")
    ours = build_model(model_spec("resnet18", 3, (64, 64), 10))
    with pytest.raises(WeightsError) as exc:
        load_weights(ours, tmp_path / "r18.pt")
    assert exc.value.tensor == "fc.weight" and str(tmp_path / "r18.pt") in str(exc.value)
    assert "[1000, 512] in the file, [10, 512]" in str(exc.value)

    narrow = build_model(model_spec("resnet18", 3, (64, 64), 1000, width=0.5))
    with pytest.raises(WeightsError, match="tensor 'conv1.weight': shape \\[64, 3, 7, 7\\] in the file"):
        load_weights(narrow, tmp_path / "r18.pt")
    state = tv.state_dict()
    del state["layer2.0.bn1.running_mean"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match="tensor 'layer2.0.bn1.running_mean': missing from the file"):
        load_weights(build_model(model_spec("resnet18", 3, (64, 64), 1000)), tmp_path / "partial.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(WeightsError, match="not a PyTorch state dict"):
        load_weights(narrow, tmp_path / "junk.pt")


def test_weights_start_the_search_instead_of_dense_training(tmp_path):
    from hwssl.evaluate import prepare

    torch.manual_seed(0)
    text = ('[model]\nname = "resnet20"\nwidth = 0.25\nweights = "w.pt"\n[data]\nname = "digits"\n'
            'image_size = 16\ntrain_subset = 200\nval_subset = 100\ntest_subset = 100\n[train]\ndense_epochs = 5\n')
    net = build_model(model_spec("resnet20", 1, (16, 16), 10, 0.25))
    randomise(net, 4)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    (tmp_path / "space.toml").write_text(text)
    space = load_search_space(tmp_path / "space.toml")
    start = prepare(space)
    assert start.ckpt["train"]["steps"] == 0 and start.wall["dense"] == 0.0
    for k, v in net.state_dict().items():
        assert torch.equal(start.dense_model().state_dict()[k], v), k
    # the checkpoint cache follows the file's content
    from hwssl.evaluate import dense_key
    key = dense_key(space)
    randomise(net, 5)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    assert dense_key(space) != key
    # a misfit is a config error naming the key, the file and the tensor
    torch.save(build_model(model_spec("resnet20", 1, (16, 16), 10, 0.5)).state_dict(), tmp_path / "w.pt")
    with pytest.raises(ConfigError) as exc:
        load_search_space(tmp_path / "space.toml")
    assert exc.value.key == "model.weights" and "tensor 'conv1.weight'" in str(exc.value)
