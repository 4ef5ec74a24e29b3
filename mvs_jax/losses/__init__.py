"""Hashing losses, registered by name.

A loss is a function `loss(outputs, labels, config) -> (scalar, metrics)`: `outputs` is the dict
returned by `HashingNetwork` (`logits`, `hash`, `hash_logits`, `features`), `labels` holds integer
class labels [N], `config` is the `loss` section of the experiment config, and `metrics` is a dict
of scalars to log. Adding a loss is one file in this package and one line in `LOSSES`.
"""

from typing import Callable, Mapping

import jax
import ml_collections

from mvs_jax.losses import cross_entropy

LossFn = Callable[
    [Mapping[str, jax.Array], jax.Array, ml_collections.ConfigDict],
    tuple[jax.Array, dict[str, jax.Array]],
]

LOSSES: dict[str, LossFn] = {
    "cross_entropy": cross_entropy.cross_entropy_loss,
}


def get_loss(name: str) -> LossFn:
    """Look up a registered loss by name; raise with the list of valid names if unknown."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; valid losses: {sorted(LOSSES)}.")
    return LOSSES[name]
