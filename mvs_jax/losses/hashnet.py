"""HashNet: Cao, Long, Wang and Yu, "HashNet: Deep Learning to Hash by Continuation", ICCV 2017.

Relaxed codes u = tanh(beta_t * z), with z the hash logits, so sign(u) is the binary code. Over
the pairs (i, j), i != j, of the batch with similarity s_ij (same class), the weighted pairwise
cross-entropy is

  l_ij = log(1 + exp(alpha <u_i, u_j>)) - alpha * s_ij * <u_i, u_j>
  L    = 1/|S| * sum_ij w_ij l_ij,   w_ij = |S|/|S_1| if s_ij = 1, |S|/|S_0| if s_ij = 0,

with |S_1| and |S_0| the numbers of similar and dissimilar pairs, so L equals the mean of l over
similar pairs plus the mean over dissimilar pairs (an empty group contributes 0).

Continuation: beta starts at 1 and grows as beta_t = (1 + gamma * t')^power, with t' the train
step rounded down to a multiple of `beta_step_size`, so tanh approaches sign during training.
alpha = alpha_times_bits / K. The defaults (alpha = 10/K, gamma = 0.005, power = 0.5, steps of
200) are those of the authors' PyTorch release (thuml/HashNet, pytorch/src).

The step comes from `outputs["step"]`, which the train step adds; without it beta is 1.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections

from mvs_jax.losses.supervision import (check_pairwise_batch, masked_mean, off_diagonal,
                                        pairwise_similarity)

DEFAULTS = {
    "alpha_times_bits": 10.0,  # alpha * K, the scale of the pairwise sigmoid.
    "beta_gamma": 0.005,
    "beta_power": 0.5,
    "beta_step_size": 200,  # Train steps between two increases of beta.
}


def continuation_beta(step: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
    """Return beta_t = (1 + gamma * t')^power, t' = step rounded down to a multiple of the size."""
    step_size = config.hashnet.beta_step_size
    rounded = (jnp.asarray(step, jnp.int32) // step_size) * step_size
    return jnp.power(1.0 + config.hashnet.beta_gamma * rounded.astype(jnp.float32),
                     config.hashnet.beta_power)


def hashnet_loss(outputs: Mapping[str, jax.Array], labels: jax.Array,
                 config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """HashNet's class-balanced pairwise cross-entropy on tanh(beta * z) codes."""
    check_pairwise_batch(labels, "hashnet")
    hash_logits = outputs["hash_logits"].astype(jnp.float32)
    num_examples, num_bits = hash_logits.shape

    beta = continuation_beta(outputs.get("step", 0), config)
    codes = jnp.tanh(beta * hash_logits)
    alpha = config.hashnet.alpha_times_bits / num_bits
    inner = alpha * codes @ codes.T

    similarity = pairwise_similarity(labels)
    pairs = off_diagonal(num_examples)
    # log(1 + e^x) - s x = softplus((1 - 2s) x) for s in {0, 1}, without cancellation.
    pair_losses = jax.nn.softplus((1.0 - 2.0 * similarity) * inner)
    similar_term = masked_mean(pair_losses, pairs * similarity)
    dissimilar_term = masked_mean(pair_losses, pairs * (1.0 - similarity))

    loss = similar_term + dissimilar_term
    return loss, {"hashnet_similar": similar_term, "hashnet_dissimilar": dissimilar_term,
                  "hashnet_beta": beta}
