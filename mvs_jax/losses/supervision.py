"""Label checks and within-batch pairs shared by the hashing losses.

Pairwise losses build their pairs inside the batch: every ordered pair (i, j) with i != j, and
s_ij = 1 when images i and j share a class label, else 0. The labels of this project's datasets
are single integer classes, so `s_ij` is exact; multi-hot labels are rejected with an error.

Edge cases:
- a batch whose images all share one class has only similar pairs, so the dissimilar terms are
  empty and contribute 0. The loss stays finite and still pulls the codes together, but it
  cannot separate classes; batches drawn at random from several classes rarely hit this.
- a batch of one image has no pairs, so `check_pairwise_batch` rejects batch_size 1.
"""

import jax
import jax.numpy as jnp

# Re-exported for the losses: the sign with 0 -> +1, defined beside the model's code threshold.
from mvs_jax.models.mobilenet import signs  # noqa: F401


def check_class_labels(labels: jax.Array, loss_name: str) -> None:
    """Raise a ValueError unless `labels` is a vector [N] of integer class labels.

    Multi-label data (multi-hot [N, C] labels) would need a different similarity (s_ij = 1 when
    two images share any label), which no dataset of this project provides.
    """
    if labels.ndim != 1:
        raise ValueError(
            f"The {loss_name!r} loss expects integer class labels of shape [N], got shape "
            f"{tuple(labels.shape)}. Multi-label (multi-hot) labels are not supported: the "
            "dataset pipeline provides one class per image.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"The {loss_name!r} loss expects integer class labels, got dtype {labels.dtype}.")


def check_pairwise_batch(labels: jax.Array, loss_name: str) -> None:
    """Raise a ValueError unless the batch has the 2 images that one pair needs.

    Under data parallelism the loss receives the global batch, so this checks `batch_size`.
    """
    check_class_labels(labels, loss_name)
    if labels.shape[0] < 2:
        raise ValueError(
            f"The {loss_name!r} loss builds its pairs within the batch, so it needs at least 2 "
            f"images per batch; got {labels.shape[0]}. Set batch_size to 2 or more.")


def pairwise_similarity(labels: jax.Array) -> jax.Array:
    """Return S [N, N] float32 with S_ij = 1 when labels i and j are equal, else 0."""
    return (labels[:, None] == labels[None, :]).astype(jnp.float32)


def off_diagonal(num_examples: int) -> jax.Array:
    """Return a float32 [N, N] mask of the pairs (i, j) with i != j."""
    return 1.0 - jnp.eye(num_examples, dtype=jnp.float32)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `values` where `mask` is 1; 0 when the mask is empty."""
    count = jnp.sum(mask)
    return jnp.sum(values * mask) / jnp.maximum(count, 1.0)

