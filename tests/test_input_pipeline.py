"""Training order, evaluation batching and on-device augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mvs_jax import input_pipeline
from mvs_jax.input_pipeline import TrainBatches, eval_batches


def test_every_example_once_per_epoch():
    # 10 examples, batch 4: steps 0..4 cover positions 0..19, exactly two epochs.
    batches = TrainBatches(10, 4, seed=0)
    seen = np.concatenate([batches.indices(step) for step in range(5)])
    np.testing.assert_array_equal(np.sort(seen[:10]), np.arange(10))
    np.testing.assert_array_equal(np.sort(seen[10:]), np.arange(10))


def test_epochs_differ_and_order_repeats():
    batches = TrainBatches(10, 5, seed=0)
    assert not np.array_equal(batches.indices(0), batches.indices(2))
    again = TrainBatches(10, 5, seed=0)
    np.testing.assert_array_equal(again.indices(3), batches.indices(3))


def test_process_shards_form_the_global_batch():
    single = TrainBatches(50, 8, seed=4)
    shards = [TrainBatches(50, 8, seed=4, process_index=p, process_count=4) for p in range(4)]
    for step in (0, 6, 7):
        combined = np.concatenate([shard.indices(step) for shard in shards])
        np.testing.assert_array_equal(combined, single.indices(step))


def test_batch_not_divisible_by_processes():
    with pytest.raises(ValueError, match="batch_size=10.*3 processes"):
        TrainBatches(50, 10, seed=0, process_count=3)


def test_eval_batches_cover_all_with_mask():
    batches = list(eval_batches(23, 10))
    assert len(batches) == 3
    assert all(len(indices) == 10 for indices, _ in batches)
    covered = np.concatenate([indices[mask] for indices, mask in batches])
    np.testing.assert_array_equal(covered, np.arange(23))
    assert batches[-1][1].sum() == 3


def test_crop_is_shifted_window_of_padded_image():
    images = jnp.asarray(np.random.default_rng(0).integers(1, 255, (6, 8, 8, 3)), jnp.float32)
    out = np.asarray(input_pipeline.random_crop_and_flip(images, jax.random.key(0), 2, False))
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for n in range(6):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(out[n], padded[n, dy:dy + 8, dx:dx + 8])]
        assert matches, f"example {n} is not a window of its padded image"


def test_flip_mirrors_some_images():
    images = jnp.asarray(np.random.default_rng(1).normal(size=(64, 4, 4, 1)), jnp.float32)
    out = np.asarray(input_pipeline.random_crop_and_flip(images, jax.random.key(1), 0, True))
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, np.asarray(images))]
    kept = [np.array_equal(o, i) for o, i in zip(out, np.asarray(images))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48


def test_preprocess_normalises_to_minus_one_one():
    images = jnp.asarray([[[[0, 255, 127.5]]]], jnp.float32)
    out = input_pipeline.preprocess(images, 1, (-1.0, 2.0 / 255.0))
    np.testing.assert_allclose(out[0, 0, 0], [-1.0, 1.0, 0.0], atol=1e-6)


def test_preprocess_resizes_to_input_size():
    images = jnp.zeros((2, 32, 32, 3), jnp.uint8)
    assert input_pipeline.preprocess(images, 64, (0.0, 1.0)).shape == (2, 64, 64, 3)
