"""DSH: Liu, Wang, Shan and Chen, "Deep Supervised Hashing for Fast Image Retrieval", CVPR 2016.

With b the real-valued hash outputs (here the hash logits z, so sign(b) is the binary code),
D_ij = ||b_i - b_j||^2 and y_ij = 1 when images i and j are of different classes, the paper's
loss of one pair is

  l_ij = 1/2 (1 - y_ij) D_ij + 1/2 y_ij max(m - D_ij, 0)
         + alpha (|| |b_i| - 1 ||_1 + || |b_j| - 1 ||_1).

Averaged over the ordered pairs (i, j), i != j, of a batch of N, each image's regulariser is
counted 2(N - 1) times in N(N - 1) pairs, so

  L = mean_ij [1/2 (1 - y_ij) D_ij + 1/2 y_ij max(m - D_ij, 0)]
      + 2 alpha * mean_n || |b_n| - 1 ||_1.

m = 2K and alpha = 0.01, the values of the weixu000/DSH-pytorch re-implementation (main.py),
which reports reproducing the paper's CIFAR-10 result.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections

from mvs_jax.losses.supervision import (check_pairwise_batch, masked_mean, off_diagonal,
                                        pairwise_similarity)

DEFAULTS = {
    "margin_per_bit": 2.0,  # m = margin_per_bit * K.
    "regularization_weight": 0.01,  # alpha.
}


def dsh_loss(outputs: Mapping[str, jax.Array], labels: jax.Array,
             config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DSH's contrastive loss on relaxed codes plus its |b| = 1 regulariser."""
    check_pairwise_batch(labels, "dsh")
    b = outputs["hash_logits"].astype(jnp.float32)
    num_examples, num_bits = b.shape
    margin = config.dsh.margin_per_bit * num_bits

    distances = jnp.sum(jnp.square(b[:, None, :] - b[None, :, :]), axis=-1)
    dissimilar = 1.0 - pairwise_similarity(labels)
    pair_losses = (0.5 * (1.0 - dissimilar) * distances
                   + 0.5 * dissimilar * jnp.maximum(margin - distances, 0.0))
    contrastive = masked_mean(pair_losses, off_diagonal(num_examples))
    regularizer = jnp.mean(jnp.sum(jnp.abs(jnp.abs(b) - 1.0), axis=1))

    loss = contrastive + 2.0 * config.dsh.regularization_weight * regularizer
    return loss, {"dsh_contrastive": contrastive, "dsh_regularizer": regularizer}
