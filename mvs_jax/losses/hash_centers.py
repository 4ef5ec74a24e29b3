"""Fixed per-class target codes in {-1, +1}, for the losses that pull each image to its class's code.

The codes are built with NumPy when the loss is traced, from the number of classes C (the width
of the classifier output) and the number of bits K, and become constants of the compiled step.
They depend only on (C, K, seed), so every run and every resumed run uses the same codes.
"""

import numpy as np


def sylvester_hadamard(order: int) -> np.ndarray:
    """Return the order x order Hadamard matrix of Sylvester's construction (order a power of 2)."""
    if order < 1 or order & (order - 1):
        raise ValueError(f"Sylvester's construction needs a power of 2, got {order}.")
    matrix = np.ones((1, 1), np.int8)
    while matrix.shape[0] < order:
        matrix = np.block([[matrix, matrix], [matrix, -matrix]])
    return matrix


def hadamard_centers(num_classes: int, num_bits: int, seed: int = 0) -> np.ndarray:
    """Return CSQ's hash centers [C, K] in {-1, +1} (Yuan et al., CVPR 2020).

    When K is a power of 2 and C <= 2K, the centers are the rows of the Hadamard matrix H_K
    followed by the rows of -H_K, so any two centers are K/2 or K bits apart. Otherwise each bit
    of each center is an independent fair coin flip drawn with `seed`, as CSQ does for such K.
    """
    if num_bits & (num_bits - 1) == 0 and num_classes <= 2 * num_bits:
        hadamard = sylvester_hadamard(num_bits)
        return np.concatenate([hadamard, -hadamard])[:num_classes].astype(np.float32)
    return bernoulli_centers(num_classes, num_bits, seed)


def bernoulli_centers(num_classes: int, num_bits: int, seed: int = 0) -> np.ndarray:
    """Return [C, K] codes whose bits are independent fair coin flips in {-1, +1}."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((num_classes, num_bits)) < 0.5, -1.0, 1.0).astype(np.float32)


def balanced_centers(num_classes: int, num_bits: int, seed: int = 0) -> np.ndarray:
    """Return [C, K] codes with exactly floor(K/2) bits at -1 per class, at random positions.

    These are DPN's target vectors (Fan et al., IJCAI 2020) with its bit-balance p = 0.5.
    """
    rng = np.random.default_rng(seed)
    centers = np.ones((num_classes, num_bits), np.float32)
    for row in centers:
        row[rng.choice(num_bits, num_bits // 2, replace=False)] = -1.0
    return centers
