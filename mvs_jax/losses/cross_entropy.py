"""Softmax cross-entropy on the classifier output, the only training signal of the MobileNet
hashing method (Lin et al., CVPRW 2015, train the same way with an AlexNet backbone)."""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax


def cross_entropy_loss(
    outputs: Mapping[str, jax.Array], labels: jax.Array, config: ml_collections.ConfigDict,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean softmax cross-entropy -(1/N) sum_n log softmax(logits_n)[y_n]."""
    del config
    logits = outputs["logits"].astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, {"cross_entropy": loss}
