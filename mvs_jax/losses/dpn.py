"""DPN: Fan et al., "Deep Polarized Network for Supervised Learning of Accurate Binary Hashing
Codes", IJCAI 2020.

Each class y has a fixed target code t_y in {-1, +1}^K with half of its bits at -1, at random
positions (`hash_centers.balanced_centers`). The polarization loss pushes every hash output u
(here the hash logits, so sign(u) is the binary code) to the sign of its class's target bit,
by at least a margin m:

  L = mean_{n,k} max(m - u_nk * t_{y_n,k}, 0)

m = 1, the value of the DeepHash-pytorch re-implementation (swuxyj/DeepHash-pytorch, DPN.py).
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections

from mvs_jax.losses.hash_centers import balanced_centers
from mvs_jax.losses.supervision import check_class_labels

DEFAULTS = {
    "margin": 1.0,  # m, in units of the hash logits.
}


def dpn_loss(outputs: Mapping[str, jax.Array], labels: jax.Array,
             config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Hinge loss pushing each hash logit past +-margin, on the side of the class's target bit."""
    check_class_labels(labels, "dpn")
    hash_logits = outputs["hash_logits"].astype(jnp.float32)
    num_classes = outputs["logits"].shape[-1]
    targets = jnp.asarray(balanced_centers(num_classes, hash_logits.shape[-1]))[labels]

    loss = jnp.mean(jnp.maximum(config.dpn.margin - hash_logits * targets, 0.0))
    return loss, {"dpn_polarization": loss}
