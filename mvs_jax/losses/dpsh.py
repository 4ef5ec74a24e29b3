"""DPSH: Li, Wang and Kang, "Feature Learning based Deep Supervised Hashing with Pairwise
Labels", IJCAI 2016.

With u the real-valued hash outputs (here the hash logits z, so sign(u) is the binary code),
b = sign(u) and Theta_ij = <u_i, u_j> / 2, over the pairs (i, j), i != j, of the batch:

  L = mean_ij [log(1 + exp(Theta_ij)) - s_ij * Theta_ij]  +  eta * mean_{n,k} (u_nk - b_nk)^2

The first term is the negative log-likelihood of the pairwise labels s_ij under
p(s_ij = 1) = sigmoid(Theta_ij). The paper sums both terms; this uses means, as the DeepHash-pytorch
re-implementation (swuxyj/DeepHash-pytorch, DPSH.py) does, with its eta = 0.1.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections

from mvs_jax.losses.supervision import (check_pairwise_batch, masked_mean, off_diagonal,
                                        pairwise_similarity, signs)

DEFAULTS = {
    "quantization_weight": 0.1,  # eta.
}


def dpsh_loss(outputs: Mapping[str, jax.Array], labels: jax.Array,
              config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DPSH's pairwise likelihood plus its quantization penalty."""
    check_pairwise_batch(labels, "dpsh")
    u = outputs["hash_logits"].astype(jnp.float32)

    theta = 0.5 * u @ u.T
    similarity = pairwise_similarity(labels)
    # log(1 + e^x) - s x = softplus((1 - 2s) x) for s in {0, 1}, without cancellation.
    pair_losses = jax.nn.softplus((1.0 - 2.0 * similarity) * theta)
    likelihood = masked_mean(pair_losses, off_diagonal(len(u)))
    quantization = jnp.mean(jnp.square(u - jax.lax.stop_gradient(signs(u))))

    loss = likelihood + config.dpsh.quantization_weight * quantization
    return loss, {"dpsh_likelihood": likelihood, "dpsh_quantization": quantization}
