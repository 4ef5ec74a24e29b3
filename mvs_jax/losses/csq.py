"""CSQ: Yuan et al., "Central Similarity Quantization for Efficient Image and Video Retrieval",
CVPR 2020.

Each class y has a fixed hash center c_y in {-1, +1}^K (`hash_centers.hadamard_centers`). With
v = tanh(z / 2) the relaxed code (z the hash logits), (v + 1)/2 = sigmoid(z) = h is the hash
activation, so the central similarity term is the binary cross-entropy between h and the
center's bits, and the quantization term pulls |v| to 1:

  L = mean_{n,k} BCE(h_nk, (c_{y_n,k} + 1)/2)  +  lambda * mean_{n,k} (|v_nk| - 1)^2

CSQ's network applies tanh to its raw output u, which is this with z = 2u. lambda = 1e-4, the
value of the DeepHash-pytorch re-implementation (swuxyj/DeepHash-pytorch, CSQ.py).
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mvs_jax.losses.hash_centers import hadamard_centers
from mvs_jax.losses.supervision import check_class_labels

DEFAULTS = {
    "quantization_weight": 1e-4,  # lambda.
}


def csq_loss(outputs: Mapping[str, jax.Array], labels: jax.Array,
             config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Binary cross-entropy to the class's Hadamard hash center plus a quantization penalty."""
    check_class_labels(labels, "csq")
    hash_logits = outputs["hash_logits"].astype(jnp.float32)
    num_classes = outputs["logits"].shape[-1]
    centers = jnp.asarray(hadamard_centers(num_classes, hash_logits.shape[-1]))
    targets = (centers[labels] + 1.0) / 2.0

    center_term = jnp.mean(optax.sigmoid_binary_cross_entropy(hash_logits, targets))
    relaxed = jnp.tanh(hash_logits / 2.0)
    quantization = jnp.mean(jnp.square(jnp.abs(relaxed) - 1.0))

    loss = center_term + config.csq.quantization_weight * quantization
    return loss, {"csq_center": center_term, "csq_quantization": quantization}
