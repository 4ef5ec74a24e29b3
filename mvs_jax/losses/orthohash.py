"""OrthoHash: Hoe et al., "One Loss for All: Deep Hashing with a Single Cosine Similarity based
Learning Objective", NeurIPS 2021.

Each class y has a fixed code c_y in {-1, +1}^K whose bits are fair coin flips
(`hash_centers.bernoulli_centers`, the authors' default codebook). With v the hash logits, the
classifier is the cosine similarity to every class code, with an additive margin m on the true
class and a scale s, trained with softmax cross-entropy:

  logit_nj = s * (cos(v_n, c_j) - m * [j = y_n])
  L = CE(logit_n, y_n)  +  q * mean_n (1 - cos(v_n, sign(v_n)))

The optional second term (q = 0 by default) is the authors' cosine quantization penalty, with
sign(v) held constant. s = 8, m = 0.2 and q = 0 are the defaults of the authors' code
(kamwoh/orthohash, main.py). The authors put BatchNorm on the hash layer, which this network's
hash head does not have.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mvs_jax.losses.hash_centers import bernoulli_centers
from mvs_jax.losses.supervision import check_class_labels, signs

DEFAULTS = {
    "scale": 8.0,  # s.
    "margin": 0.2,  # m, subtracted from the true class's cosine.
    "quantization_weight": 0.0,  # q.
}

_EPSILON = 1e-12


def _unit_rows(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPSILON)


def orthohash_loss(outputs: Mapping[str, jax.Array], labels: jax.Array,
                   config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy of scaled, margin-shifted cosine similarities to fixed class codes."""
    check_class_labels(labels, "orthohash")
    hash_logits = outputs["hash_logits"].astype(jnp.float32)
    num_classes = outputs["logits"].shape[-1]
    codes = jnp.asarray(bernoulli_centers(num_classes, hash_logits.shape[-1]))

    unit = _unit_rows(hash_logits)
    cosines = unit @ _unit_rows(codes).T
    margins = config.orthohash.margin * jax.nn.one_hot(labels, num_classes)
    logits = config.orthohash.scale * (cosines - margins)
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    bits = jax.lax.stop_gradient(signs(hash_logits))
    quantization = jnp.mean(1.0 - jnp.sum(unit * _unit_rows(bits), axis=-1))

    loss = cross_entropy + config.orthohash.quantization_weight * quantization
    return loss, {"orthohash_cross_entropy": cross_entropy, "orthohash_quantization": quantization}
