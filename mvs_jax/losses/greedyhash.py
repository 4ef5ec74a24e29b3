"""GreedyHash: Su et al., "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in
CNN", NeurIPS 2018.

The hash layer's output u (here the hash logits z, so sign(u) is the binary code) goes through
b = sign(u) in the forward pass, and the backward pass copies the gradient of b to u unchanged.
The classifier reads b, so the cross-entropy trains on the codes themselves. This needs the
model option `model.classifier_input = "sign"`, which the method `greedyhash` sets, and
`train.validate_config` rejects the loss without it. A cubic penalty pulls |u| to 1:

  L = CE(W b + c, y) + alpha * mean_{n,k} | |u_nk| - 1 |^3

alpha = 0.1, the CIFAR-10 value of the DeepHash-pytorch re-implementation
(swuxyj/DeepHash-pytorch, GreedyHash.py). That classifier has no bias c; ours keeps it.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mvs_jax.losses.supervision import check_class_labels

DEFAULTS = {
    "penalty_weight": 0.1,  # alpha.
}


def greedyhash_loss(outputs: Mapping[str, jax.Array], labels: jax.Array,
                    config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Return the cross-entropy of the classifier on sign codes plus the cubic |u| = 1 penalty."""
    check_class_labels(labels, "greedyhash")
    u = outputs["hash_logits"].astype(jnp.float32)
    logits = outputs["logits"].astype(jnp.float32)
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    penalty = jnp.mean(jnp.abs(jnp.abs(u) - 1.0) ** 3)
    loss = cross_entropy + config.greedyhash.penalty_weight * penalty
    return loss, {"cross_entropy": cross_entropy, "greedyhash_penalty": penalty}
