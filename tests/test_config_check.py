"""``hwssl check``'s one-line summary says what the search samples in each search mode."""

from pathlib import Path

from hwssl.config.check import check_file

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def test_check_of_a_path_space_names_its_snapshot_targets_not_a_sampled_target():
    line = check_file(str(SPACES / "lenet_mnist5k_hw.toml"))
    assert "path search: 3 mix strengths, snapshots at targets [0.65, 0.5, 0.35, 0.2]" in line
    assert "a target" not in line


def test_check_of_a_budget_space_says_it_samples_a_target(tmp_path):
    text = (SPACES / "lenet_mnist5k_hw.toml").read_text().replace('mode = "path"', 'mode = "budget"')
    space = tmp_path / "budget.toml"
    space.write_text(text)
    assert "budget search: a target and 3 mix strengths" in check_file(str(space))


def test_check_of_a_strength_space_counts_the_searched_strengths():
    assert "5 searched" in check_file(str(SPACES / "lenet_mnist5k.toml"))
