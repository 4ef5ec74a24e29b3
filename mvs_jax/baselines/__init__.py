"""Hashing baselines that learn no network: LSH, PCA hashing, ITQ and VHB.

LSH, PCA hashing and ITQ (`linear`) learn one K-bit code per image from a backbone's pooled
features. Their codes go through the same evaluation as the network's (`retrieval.evaluate`).
VHB (`vhb`) hashes many local descriptors per image and ranks by matching descriptors, so it is
evaluated from its scores (`ranking.evaluate_scores`). `vhb` needs OpenCV
(opencv-python-headless) only when it extracts descriptors.
"""

from typing import Callable

import numpy as np

from mvs_jax.baselines.linear import (IterativeQuantization, LinearHash, fit_itq, fit_lsh,
                                      fit_pca_hashing)
from mvs_jax.baselines.ranking import evaluate_scores

__all__ = ["LINEAR_METHODS", "IterativeQuantization", "LinearHash", "evaluate_scores", "fit",
           "fit_itq", "fit_lsh", "fit_pca_hashing"]

# Each function takes (training features [N, D], number of bits, seed).
LINEAR_METHODS: dict[str, Callable[[np.ndarray, int, int], LinearHash]] = {
    "lsh": lambda features, num_bits, seed: fit_lsh(features, num_bits, seed=seed),
    "pca": lambda features, num_bits, seed: fit_pca_hashing(features, num_bits),
    "itq": lambda features, num_bits, seed: fit_itq(features, num_bits, seed=seed),
}


def fit(method: str, features: np.ndarray, num_bits: int, seed: int = 0) -> LinearHash:
    """Fit the linear hashing `method` ("lsh", "pca" or "itq") on training features [N, D]."""
    if method not in LINEAR_METHODS:
        raise ValueError(f"Unknown baseline {method!r}; valid: {sorted(LINEAR_METHODS)}.")
    return LINEAR_METHODS[method](features, num_bits, seed)
