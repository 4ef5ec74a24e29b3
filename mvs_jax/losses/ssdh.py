"""SSDH: Yang, Lin and Chen, "Supervised Learning of Semantics-Preserving Hash via Deep
Convolutional Neural Networks", TPAMI 2017.

SSDH trains the same network as DLBH (a sigmoid latent layer feeding a softmax classifier) with
two extra terms on the sigmoid activations h [N, K]:

  L = CE
      - w_binary  * 1/(2NK) * sum_{n,k} (h_nk - 0.5)^2          (forcing binary codes)
      + w_balance * 1/(2N)  * sum_n (mean_k h_nk - 0.5)^2         (each code fires 50% of bits)

CE is the mean softmax cross-entropy of the classifier. Both weights default to 1, the values of
the authors' released code.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mvs_jax.losses.supervision import check_class_labels

DEFAULTS = {
    "binary_weight": 1.0,  # w_binary: pushes activations away from 0.5.
    "balance_weight": 1.0,  # w_balance: pushes each code's mean activation to 0.5.
}


def ssdh_loss(outputs: Mapping[str, jax.Array], labels: jax.Array,
              config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy plus SSDH's forcing-binary and 50%-fire terms."""
    check_class_labels(labels, "ssdh")
    logits = outputs["logits"].astype(jnp.float32)
    activations = outputs["hash"].astype(jnp.float32)

    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    forcing_binary = -0.5 * jnp.mean(jnp.square(activations - 0.5))
    balance = 0.5 * jnp.mean(jnp.square(jnp.mean(activations, axis=1) - 0.5))

    loss = (cross_entropy + config.ssdh.binary_weight * forcing_binary
            + config.ssdh.balance_weight * balance)
    return loss, {"cross_entropy": cross_entropy, "ssdh_forcing_binary": forcing_binary,
                  "ssdh_balance": balance}
