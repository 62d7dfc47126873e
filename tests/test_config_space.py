"""Search-space files: the shipped ones load, bad ones fail with one error naming file and key."""

from pathlib import Path

import pytest

from hwssl.config import ConfigError, load_search_space

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "search_spaces").glob("*.toml"))

BASE = """
[model]
name = "lenet"
[data]
name = "mnist5k"
"""


def _write(tmp_path, text):
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_search_spaces_are_valid(path):
    space = load_search_space(path)
    assert space.search.strengths or space.search.budget_mix, "every shipped space searches something"


def test_minimal_file_gets_documented_defaults(tmp_path):
    space = load_search_space(_write(tmp_path, BASE))
    assert space.name == "space"
    assert space.ssl.mode == "proximal" and space.ssl.scale_by_group_size is False
    assert space.train.threads == 1
    assert space.search.precision == ("fp32",) and space.quant.calibration == "max"


def test_precision_search_and_quant_settings_from_file_and_set(tmp_path):
    space = load_search_space(_write(tmp_path, BASE), ['search.precision=["fp32", "int8"]',
                                                      "quant.calib_images=128", "quant.every_trial=true"])
    assert space.search.precision == ("fp32", "int8")
    assert space.quant.calib_images == 128 and space.quant.every_trial is True


@pytest.mark.parametrize("extra, key, expected", [
    ('[train]\nlerning_rate = 0.1\n', "train.lerning_rate", "unknown key"),
    ('[train]\nbatch_size = "big"\n', "train.batch_size", "expected an integer"),
    ('[train]\ndense_lr = -0.1\n', "train.dense_lr", "expected a positive number"),
    ('[strengths]\n"filter.conv2" = -1.0\n', "strengths.filter.conv2", "expected a number >= 0"),
    ('[strengths]\n"colour.conv2" = 1.0\n', "strengths.colour.conv2", "unknown group type"),
    ('[strengths]\n"filter.conv9" = 1.0\n', "strengths.filter.conv9", "unknown scope"),
    ('[strengths]\n"depth" = 1.0\n', "strengths.depth", "no depth groups"),
    ('[search.strengths."shape.conv1"]\nlow = 0.1\nhigh = 0.01\n', "search.strengths.shape.conv1.high",
     "expected a number > low"),
    ('[ssl]\nmode = "proximl"\n', "ssl.mode", "did you mean 'proximal'"),
    ('[search]\nsampler = "cmaes"\n', "search.sampler", "expected one of"),
    ('colour = 3\n', "colour", "unknown key"),
    ('[search]\nprecision = ["fp16"]\n', "search.precision", "expected entries from ['fp32', 'int8']"),
    ('[search]\nprecision = "int8"\n', "search.precision", "expected a list of strings"),
    ('[search]\nprecision = ["int8", "int8"]\n', "search.precision", "distinct values"),
    ('[quant]\ncalibration = "entropy"\n', "quant.calibration", "expected one of"),
    ('[quant]\ncalib_images = 0\n', "quant.calib_images", "expected an integer >= 1"),
    ('[ssl]\ntarget = 1.0\n', "ssl.target", "expected a fraction of the dense cost in (0, 1)"),
    ('[ssl]\ntarget = -0.2\n', "ssl.target", "expected a number >= 0"),
    ('[ssl]\ntarget = 0.3\n', "strengths", "expected at least one positive strength"),
    ('[ssl]\nfilter_block = "simd"\n', "ssl.filter_block", 'expected an integer >= 1 or "channel_round"'),
    ('[ssl]\nfilter_block = 0\n', "ssl.filter_block", 'expected an integer >= 1 or "channel_round"'),
    ('[ssl]\noracle = "flops"\n', "ssl.oracle", "expected one of ['macs', 'latency']"),
    ('[ssl]\nlatency_weighted = "yes"\n', "ssl.latency_weighted", "expected true or false"),
    ('[ssl]\nrecover_from = "scratch"\n', "ssl.recover_from", "expected one of ['ssl', 'dense']"),
    ('[search]\nmode = "budget"\n', "search.budget.target", "needs a target range"),
    ('[search]\nmode = "budget"\n[search.budget]\ntarget = { low = 0.2, high = 0.5 }\n', "search.budget.mix",
     "needs at least one"),
    ('[search]\nmode = "budget"\n[search.budget]\ntarget = { low = 0.2, high = 1.5 }\n',
     "search.budget.target.high", "expected a number <= 1.0"),
    ('[search.budget]\ntarget = { low = 0.5, high = 0.2 }\n', "search.budget.target.high", "expected a number > low"),
    ('[search.budget.mix."depth"]\nlow = 0.1\nhigh = 1.0\n', "search.budget.mix.depth", "no depth groups"),
    ('[search]\nmode = "budget"\n[search.budget]\ntarget = { low = 0.2, high = 0.5 }\n'
     '[search.budget.mix."filter"]\nlow = 0.1\nhigh = 1.0\n[search.strengths."filter"]\nlow = 0.1\nhigh = 1.0\n',
     "search.strengths", "samples search.budget.mix, not raw strengths"),
    ('[search]\nmode = "lambda"\n', "search.mode", "expected one of ['strengths', 'budget', 'path']"),
    ('[search]\nmode = "path"\n', "search.budget.target", 'search.mode = "path" needs a target range'),
    ('[search.budget]\npath_points = 1\n', "search.budget.path_points", "expected an integer >= 2"),
])
def test_bad_value_names_file_and_key(tmp_path, extra, key, expected):
    text = BASE + extra if not extra.startswith("colour") else extra + BASE
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_search_space(path)
    assert err.value.key == key
    assert str(path) in str(err.value) and expected in str(err.value)


def test_unknown_model_and_data_set_are_named(tmp_path):
    with pytest.raises(ConfigError, match="model.name.*expected one of") as err:
        load_search_space(_write(tmp_path, BASE.replace('"lenet"', '"vgg16"')))
    assert err.value.key == "model.name"
    with pytest.raises(ConfigError) as err:
        load_search_space(_write(tmp_path, BASE.replace('"mnist5k"', '"imagenet"')))
    assert err.value.key == "data.name"


def test_model_too_large_for_input_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="too small") as err:
        load_search_space(_write(tmp_path, BASE.replace('"mnist5k"', '"digits"')))
    assert err.value.key == "model.name"


def test_missing_section_and_file(tmp_path):
    with pytest.raises(ConfigError, match="required key is missing") as err:
        load_search_space(_write(tmp_path, '[model]\nname = "lenet"\n'))
    assert err.value.key == "data"
    with pytest.raises(ConfigError, match="file not found"):
        load_search_space(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_search_space(_write(tmp_path, "[model\n"))


def test_overrides_set_strengths_and_settings(tmp_path):
    path = _write(tmp_path, BASE)
    space = load_search_space(path, ["filter.conv2=0.3", "train.ssl_epochs=2", "ssl.mode=subgradient"])
    assert space.strengths == {"filter.conv2": 0.3}
    assert space.train.ssl_epochs == 2 and space.ssl.mode == "subgradient"
    with pytest.raises(ConfigError) as err:
        load_search_space(path, ["lambda=3"])
    assert err.value.key == "lambda"
    with pytest.raises(ConfigError) as err:
        load_search_space(path, ["train.ssl_epochs=-2"])
    assert err.value.key == "train.ssl_epochs"


def test_hardware_aware_ssl_defaults_keep_the_paper_and_set_turns_them_on(tmp_path):
    path = _write(tmp_path, BASE)
    ssl = load_search_space(path).ssl
    assert (ssl.latency_weighted, ssl.target, ssl.filter_block, ssl.oracle) == (False, 0.0, 1, "macs")
    ssl = load_search_space(path, ["filter=0.1", "ssl.target=0.3", "ssl.latency_weighted=true",
                                   'ssl.filter_block="channel_round"', "ssl.check_every=3"]).ssl
    assert (ssl.latency_weighted, ssl.target, ssl.filter_block, ssl.check_every) == (True, 0.3, "channel_round", 3)
    assert load_search_space(path, ["ssl.filter_block=8"]).ssl.filter_block == 8


def test_budget_search_mode_reads_target_and_mix_ranges(tmp_path):
    text = BASE + """
[search]
mode = "budget"
[search.budget]
target = { low = 0.15, high = 0.8, log = false }
[search.budget.mix."filter.conv2"]
low = 0.05
high = 0.5
zero_probability = 0.2
"""
    search = load_search_space(_write(tmp_path, text)).search
    assert search.mode == "budget" and search.budget_target.low == 0.15 and search.budget_target.log is False
    assert search.budget_mix["filter.conv2"].zero_probability == 0.2 and not search.strengths


INTEGER_KEYS = ["seed", "data.train_subset", "data.val_subset", "data.test_subset", "train.batch_size",
                "train.dense_epochs", "train.ssl_epochs", "train.recover_epochs", "train.threads",
                "compact.channel_round", "quant.calib_images", "search.trials"]


@pytest.mark.parametrize("value", ["2.5", "true", "2.0"])
@pytest.mark.parametrize("key", INTEGER_KEYS)
def test_integer_settings_refuse_non_integers(tmp_path, key, value):
    section, _, name = key.rpartition(".")
    text = (f"{name} = {value}\n" + BASE) if not section else BASE + f"[{section}]\n{name} = {value}\n"
    if section == "data":
        text = text.replace('[data]\nname = "mnist5k"\n', "").replace(f"[data]\n", '[data]\nname = "mnist5k"\n')
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_search_space(path)
    assert err.value.key == key
    assert str(err.value) == f"{path}: key '{key}': expected an integer, got {value.replace('true', 'True')}"


def test_integer_settings_from_set_refuse_non_integers(tmp_path):
    path = _write(tmp_path, BASE)
    with pytest.raises(ConfigError, match=r"key 'train.ssl_epochs': expected an integer, got 2.5"):
        load_search_space(path, ["train.ssl_epochs=2.5"])
    assert load_search_space(path, ["train.ssl_epochs=3"]).train.ssl_epochs == 3
