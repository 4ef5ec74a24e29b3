"""Hashing losses, registered by name.

A loss is a function `loss(outputs, labels, config) -> (scalar, metrics)`:
- `outputs` is the dict returned by `HashingNetwork` (`logits`, `hash`, `hash_logits`,
  `features`). The train step adds `step`, the train step as an int32 scalar, for losses with a
  schedule.
- `labels` contains integer class labels [N].
- `config` is the `loss` section of the experiment config.
- `metrics` is a dict of scalars to log.

Adding a loss is one file in this package, one line in `LOSSES` and, if it has
hyper-parameters, one line in `HYPERPARAMETERS`. docs/adding_a_loss.md walks through an example.
"""

from typing import Any, Callable, Mapping

import jax
import ml_collections

from mvs_jax.losses import (cross_entropy, csq, dpn, dpsh, dsh, greedyhash, hashnet, orthohash,
                            ssdh)

LossFn = Callable[
    [Mapping[str, jax.Array], jax.Array, ml_collections.ConfigDict],
    tuple[jax.Array, dict[str, jax.Array]],
]

LOSSES: dict[str, LossFn] = {
    "cross_entropy": cross_entropy.cross_entropy_loss,
    "ssdh": ssdh.ssdh_loss,
    "hashnet": hashnet.hashnet_loss,
    "dpsh": dpsh.dpsh_loss,
    "dsh": dsh.dsh_loss,
    "csq": csq.csq_loss,
    "dpn": dpn.dpn_loss,
    "orthohash": orthohash.orthohash_loss,
    "greedyhash": greedyhash.greedyhash_loss,
}

# Default hyper-parameters of each loss, which become the config section `loss.<name>`, e.g.
# `--config.loss.ssdh.binary_weight=0.5` on the command line.
HYPERPARAMETERS: dict[str, Mapping[str, Any]] = {
    "ssdh": ssdh.DEFAULTS,
    "hashnet": hashnet.DEFAULTS,
    "dpsh": dpsh.DEFAULTS,
    "dsh": dsh.DEFAULTS,
    "csq": csq.DEFAULTS,
    "dpn": dpn.DEFAULTS,
    "orthohash": orthohash.DEFAULTS,
    "greedyhash": greedyhash.DEFAULTS,
}


def get_loss(name: str) -> LossFn:
    """Look up a registered loss by name; raise with the list of valid names if unknown."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; valid losses: {sorted(LOSSES)}.")
    return LOSSES[name]


def default_config(name: str = "cross_entropy") -> ml_collections.ConfigDict:
    """Return the `loss` config section: `name` and one sub-section of defaults per loss."""
    config = ml_collections.ConfigDict({"name": name})
    for loss_name, defaults in HYPERPARAMETERS.items():
        config[loss_name] = ml_collections.ConfigDict(dict(defaults))
    return config
