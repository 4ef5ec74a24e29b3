"""Batches for training and evaluation, and the on-device preprocessing of uint8 images.

The host only gathers uint8 images by index. Random crop, flip, resizing to the network input and
normalisation run inside the jitted step, so the host does no per-pixel work.

Training order is deterministic: the stream of examples is the concatenation of per-epoch
permutations drawn from `seed` and the epoch number, and step `s` takes positions
[s * B, (s + 1) * B) of that stream. Every example is seen once per epoch (no example is dropped
at epoch ends), and the batch of any step can be recomputed after a restart.
"""

import jax
import jax.numpy as jnp
import numpy as np


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """Return the example order of one epoch."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


class TrainBatches:
    """Index batches of the deterministic training stream, one process's share at a time."""

    def __init__(self, num_examples: int, global_batch_size: int, seed: int,
                 process_index: int = 0, process_count: int = 1):
        if global_batch_size % process_count:
            raise ValueError(
                f"batch_size={global_batch_size} is not divisible by the {process_count} "
                "processes; choose a multiple of the process count.")
        if num_examples == 0:
            raise ValueError("The training split is empty.")
        self.num_examples = num_examples
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.local_batch_size = global_batch_size // process_count
        self.process_index = process_index
        self._cached_epoch = -1
        self._cached_permutation = np.empty(0, np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._cached_epoch:
            self._cached_permutation = epoch_permutation(self.num_examples, self.seed, epoch)
            self._cached_epoch = epoch
        return self._cached_permutation

    def indices(self, step: int) -> np.ndarray:
        """Return this process's example indices for training step `step`."""
        start = step * self.global_batch_size + self.process_index * self.local_batch_size
        positions = np.arange(start, start + self.local_batch_size)
        indices = np.empty(self.local_batch_size, np.int64)
        for epoch in np.unique(positions // self.num_examples):
            in_epoch = positions // self.num_examples == epoch
            indices[in_epoch] = self._permutation(int(epoch))[positions[in_epoch] % self.num_examples]
        return indices


def eval_batches(num_examples: int, batch_size: int, process_index: int = 0,
                 process_count: int = 1):
    """Yield (indices, mask) for evaluation batches covering every example exactly once.

    The last batch is padded with index 0 and masked out, so no example is dropped and every batch
    has the same shape (one compilation). Each process takes a contiguous slice of each batch.
    """
    local = batch_size // process_count
    for start in range(0, num_examples, batch_size):
        positions = np.arange(start + process_index * local, start + (process_index + 1) * local)
        mask = positions < num_examples
        yield np.where(mask, positions, 0), mask


def random_crop_and_flip(images: jax.Array, rng: jax.Array, padding: int,
                         flip: bool) -> jax.Array:
    """Zero-pad each image by `padding` pixels, crop back to its size at a random offset, and
    flip it left-right with probability 1/2."""
    batch, height, width, _ = images.shape
    crop_rng, flip_rng = jax.random.split(rng)
    if padding > 0:
        padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        offsets = jax.random.randint(crop_rng, (batch, 2), 0, 2 * padding + 1)

        def crop(image, offset):
            return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                         (height, width, image.shape[-1]))

        images = jax.vmap(crop)(padded, offsets)
    if flip:
        flips = jax.random.bernoulli(flip_rng, 0.5, (batch,))
        images = jnp.where(flips[:, None, None, None], images[:, :, ::-1, :], images)
    return images


def preprocess(images: jax.Array, input_size: int, normalization: tuple[float, float],
               rng: jax.Array | None = None, crop_padding: int = 0,
               flip: bool = False) -> jax.Array:
    """Turn uint8 images into normalised float32 network inputs of `input_size` x `input_size`.

    With `rng`, training augmentation (random crop with padding, horizontal flip) is applied
    first. `normalization` is (offset, scale): pixels in [0, 255] map to x * scale + offset.
    """
    images = images.astype(jnp.float32)
    if rng is not None:
        images = random_crop_and_flip(images, rng, crop_padding, flip)
    batch, height, width, channels = images.shape
    if (height, width) != (input_size, input_size):
        images = jax.image.resize(images, (batch, input_size, input_size, channels), "bilinear")
    offset, scale = normalization
    return images * scale + offset
