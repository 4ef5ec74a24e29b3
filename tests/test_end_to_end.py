"""A short training run on the whole CIFAR-10 JPEG archive (slow: about 2 minutes on 2 cores).

Run with `python -m pytest -q -m slow`.
"""

import pytest

from conftest import CIFAR_ARCHIVE
from configs import default
from mvs_jax import train


@pytest.mark.slow
def test_short_cifar10_run_beats_chance(tmp_path):
    if not CIFAR_ARCHIVE.exists():
        pytest.skip(f"{CIFAR_ARCHIVE} not found.")
    config = default.get_config("64")
    with config.unlocked():
        config.data.root = str(CIFAR_ARCHIVE)
        config.data.data_dir = str(tmp_path / "tfds")
        config.model.width = 0.25
        config.num_steps = 300
        config.optimizer.decay_steps = 200
        config.checkpoint_every = 300
    results = train.train_and_evaluate(config, str(tmp_path / "work"))

    # Random 64-bit codes with 10 balanced classes give MAP@100 of about 0.14 (bench/retrieval.py).
    # With this budget the recorded sweep reached 0.25; 0.18 leaves room for variation.
    assert results["num_queries"] == 10_000
    assert results["map@100_tie_aware"] > 0.18
    assert results["map@100_worst"] <= results["map@100_tie_aware"] <= results["map@100_best"]
