import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own hwssl cache (dense checkpoints, tuning databases)."""
    monkeypatch.setenv("HWSSL_CACHE", str(tmp_path_factory.mktemp("hwssl-cache")))
    torch.set_num_threads(1)


TINY_SPACE = """
name = "tiny"
seed = 0
[model]
name = "lenet"
width = 0.5
[data]
name = "mnist5k"
train_subset = 600
val_subset = 200
test_subset = 200
[train]
batch_size = 32
dense_epochs = 2
dense_lr = 0.02
ssl_epochs = 2
ssl_lr = 0.02
recover_epochs = 1
recover_lr = 0.002
[strengths]
"filter.conv2" = 3.0
"shape.conv1" = 3.0
[search]
trials = 3
[search.strengths."filter.conv2"]
low = 0.05
high = 1.0
[search.strengths."shape.conv1"]
low = 0.05
high = 1.0
"""


@pytest.fixture
def tiny_space_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPACE)
    return path
