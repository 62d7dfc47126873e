"""Architectures from a file: the arch.json format round-trips, compacted nets are a starting
point, and a bad spec is one error naming the file, the layer and the key."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

from hwssl.compact import compact_model, save_compacted
from hwssl.config import ConfigError, load_search_space
from hwssl.models import build_model, model_spec
from hwssl.models.specfile import SpecError, densify_spec, load_spec_file, validate_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_compact import make_model, zero_random_groups  # noqa: E402

SPECS = {
    "lenet": (1, (16, 16), 0.5),
    "resnet20": (1, (16, 16), 0.25),
    "mobilenetv2": (1, (16, 16), 0.25),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_a_spec_file_round_trips_to_the_same_network(name, tmp_path):
    c, hw, width = SPECS[name]
    spec = model_spec(name, c, hw, 10, width)
    (tmp_path / "net.json").write_text(json.dumps(spec, indent=1))
    loaded = load_spec_file(tmp_path / "net.json")
    assert loaded == spec
    torch.manual_seed(0)
    a = build_model(spec).eval()
    b = build_model(loaded).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, c, *hw)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2"])
def test_a_compacted_arch_json_validates_and_densifies_to_its_widths(name, tmp_path):
    model = make_model(name, 0) if name == "mobilenetv2" else make_model("resnet20", 0)
    zero_random_groups(model, 0)
    result = compact_model(model)
    save_compacted(result.model, tmp_path / "net")
    spec = load_spec_file(tmp_path / "net" / "arch.json")
    assert spec == result.spec
    dense = densify_spec(spec)
    validate_spec(dense)
    net = build_model(dense)
    assert not any(type(m).__name__ == "CompactConv2d" for m in net.modules())
    compacted_widths = [m.out_channels for m in result.model.modules() if hasattr(m, "out_channels")]
    assert [m.out_channels for m in net.modules() if hasattr(m, "out_channels")] == compacted_widths
    assert densify_spec(dense) == dense


def _mobilenet() -> dict:
    return model_spec("mobilenetv2", 3, (32, 32), 10, 0.5)


@pytest.mark.parametrize("mutate, layer, key", [
    (lambda s: s["layers"][1].update(kind="dropout"), "pool1", "kind"),
    (lambda s: s["layers"][2].update({"in": 7}), "conv2", "in"),
    (lambda s: s["layers"][5].update({"in": 99}), "fc1", "in"),
    (lambda s: s["layers"][0].update(act="gelu"), "conv1", "act"),
    (lambda s: s.update(family="vgg"), None, "family"),
    (lambda s: s.update(input=[1, 28]), None, "input"),
])
def test_bad_plain_spec_names_layer_and_key(mutate, layer, key):
    spec = model_spec("lenet", 1, (28, 28), 10)
    mutate(spec)
    with pytest.raises(SpecError) as exc:
        validate_spec(spec)
    assert (exc.value.layer, exc.value.key) == (layer, key)


@pytest.mark.parametrize("mutate, layer, key", [
    (lambda s: s["blocks"][3]["project"].update({"in": 5}), "blocks.3.project", "in"),
    (lambda s: s["blocks"][3]["dw"].update(groups=1), "blocks.3.dw", "groups"),
    (lambda s: s["blocks"][4].update({"in": 8}), "blocks.4", "in"),
    (lambda s: s["blocks"][1].update(residual=True), "blocks.1", "residual"),
    (lambda s: s["head"].update({"in": 3}), "head", "in"),
])
def test_bad_mobilenet_spec_names_layer_and_key(mutate, layer, key):
    spec = _mobilenet()
    mutate(spec)
    with pytest.raises(SpecError) as exc:
        validate_spec(spec)
    assert (exc.value.layer, exc.value.key) == (layer, key)


def test_bad_resnet_spec_names_layer_and_key():
    spec = model_spec("resnet20", 3, (16, 16), 10, 0.25)
    spec["stages"][1][0]["conv2"]["out"] = 5
    with pytest.raises(SpecError, match="layer 'layer2.0.conv2', key 'out'"):
        validate_spec(spec)


def _space(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(f'[model]\n{model}\n[data]\nname = "digits"\n')
    return path


def test_search_space_with_a_spec_file_trains_that_network(tmp_path):
    spec = model_spec("mobilenetv2", 1, (8, 8), 10, 0.25)
    (tmp_path / "my_net.json").write_text(json.dumps(spec))
    space = load_search_space(_space(tmp_path, 'spec = "my_net.json"'), ["filter.blocks.2=0.01", "depth=0.01"])
    assert space.model.name == "my_net" and Path(space.model.spec) == tmp_path / "my_net.json"


def test_hwssl_check_names_the_spec_file_layer_and_key(tmp_path):
    from hwssl.cli import main

    spec = model_spec("mobilenetv2", 1, (8, 8), 10, 0.25)
    spec["blocks"][2]["dw"]["kind"] = "x"   # harmless extra key
    spec["blocks"][2]["project"]["in"] += 1
    (tmp_path / "my_net.json").write_text(json.dumps(spec))
    space = _space(tmp_path, 'spec = "my_net.json"')
    with pytest.raises(ConfigError) as exc:
        load_search_space(space)
    msg = str(exc.value)
    assert exc.value.key == "model.spec"
    assert str(tmp_path / "my_net.json") in msg and "layer 'blocks.2.project', key 'in'" in msg
    assert main(["check", str(space)]) == 2


def test_spec_that_does_not_fit_the_data_is_refused(tmp_path):
    (tmp_path / "net.json").write_text(json.dumps(model_spec("lenet", 1, (28, 28), 10)))
    with pytest.raises(ConfigError, match="key 'input'.*\\[1, 8, 8\\]"):
        load_search_space(_space(tmp_path, 'spec = "net.json"'))
    (tmp_path / "net.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a JSON architecture spec"):
        load_search_space(_space(tmp_path, 'spec = "net.json"'))
