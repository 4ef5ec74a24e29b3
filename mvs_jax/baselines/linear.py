"""Unsupervised linear hashing of feature vectors: LSH, PCA hashing and ITQ.

Each method learns a mean and a projection [D, K] from training features, and the code of a
feature vector x is 1 where (x - mean) @ projection >= 0 and 0 elsewhere, the same {0, 1} uint8
layout as the network's thresholded sigmoid codes.

* LSH: K random Gaussian directions (Charikar, STOC 2002, sign random projections), applied
  after centering on the training mean.
* PCA hashing: the K principal directions of the training features with the largest variance.
* ITQ (Gong and Lazebnik, CVPR 2011, "Iterative Quantization"): PCA to K dimensions, then an
  orthogonal rotation R that minimises the quantisation loss ||B - V R||_F^2 over B in
  {-1, 1}^(n x K), where V is the centred, projected training data. It alternates
  B = sign(V R) with R from the orthogonal Procrustes problem, starting from a random rotation.
"""

import dataclasses

import numpy as np

# Rows of the training features processed at once when accumulating the covariance in float64.
COVARIANCE_CHUNK_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class LinearHash:
    """A learned hash function: bits are (x - mean) @ projection >= 0."""

    mean: np.ndarray  # [D] float64
    projection: np.ndarray  # [D, K] float64

    @property
    def num_bits(self) -> int:
        return self.projection.shape[1]

    def project(self, features: np.ndarray) -> np.ndarray:
        """Return the real-valued projections [N, K] (float64) before thresholding."""
        features = _check_features(features, "features")
        if features.shape[1] != self.mean.shape[0]:
            raise ValueError(f"features have {features.shape[1]} dimensions but the hash function "
                             f"was fitted on {self.mean.shape[0]}.")
        return (features - self.mean) @ self.projection

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Return {0, 1} codes [N, K] (uint8)."""
        return (self.project(features) >= 0).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class IterativeQuantization(LinearHash):
    """ITQ's hash function, with its PCA directions, rotation and loss after each iteration.

    `projection` equals `pca_directions @ rotation`.
    """

    pca_directions: np.ndarray  # [D, K]
    rotation: np.ndarray  # [K, K], orthogonal
    quantization_losses: np.ndarray  # [iterations], ||B - V R||_F^2 after each iteration


def _check_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [N, D] array, got shape {features.shape}.")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return features


def _check_num_bits(num_bits: int) -> None:
    if isinstance(num_bits, bool) or not isinstance(num_bits, (int, np.integer)) or num_bits < 1:
        raise ValueError(f"num_bits must be a positive integer, got {num_bits!r}.")


def _check_pca_size(features: np.ndarray, num_bits: int, method: str) -> None:
    # n centred samples span at most n - 1 directions, so K directions of non-zero variance
    # need n >= K + 1 samples, and there are only D directions in all.
    num_samples, dimensions = features.shape
    if num_samples < num_bits + 1:
        raise ValueError(
            f"{method} with {num_bits} bits needs at least {num_bits + 1} training samples "
            f"(centred data of n samples spans at most n - 1 directions), got {num_samples}.")
    if dimensions < num_bits:
        raise ValueError(f"{method} with {num_bits} bits needs features of at least {num_bits} "
                         f"dimensions, got {dimensions}.")


def _covariance(features: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Return the sample covariance [D, D], accumulated in float64 over row chunks."""
    dimensions = features.shape[1]
    scatter = np.zeros((dimensions, dimensions))
    for start in range(0, features.shape[0], COVARIANCE_CHUNK_ROWS):
        centred = features[start:start + COVARIANCE_CHUNK_ROWS] - mean
        scatter += centred.T @ centred
    return scatter / (features.shape[0] - 1)


def principal_directions(features: np.ndarray, num_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the training mean [D] and the top `num_bits` eigenvectors [D, K] of the covariance.

    Columns are ordered by decreasing variance.
    """
    mean = features.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(_covariance(features, mean))
    order = np.argsort(eigenvalues)[::-1][:num_bits]
    return mean, eigenvectors[:, order]


def fit_lsh(features: np.ndarray, num_bits: int, seed: int = 0) -> LinearHash:
    """Fit LSH: the training mean and `num_bits` standard Gaussian directions from `seed`."""
    features = _check_features(features, "features")
    _check_num_bits(num_bits)
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((features.shape[1], num_bits))
    return LinearHash(mean=features.mean(axis=0), projection=projection)


def fit_pca_hashing(features: np.ndarray, num_bits: int) -> LinearHash:
    """Fit PCA hashing: threshold the top `num_bits` principal components at zero."""
    features = _check_features(features, "features")
    _check_num_bits(num_bits)
    _check_pca_size(features, num_bits, "PCA hashing")
    mean, directions = principal_directions(features, num_bits)
    return LinearHash(mean=mean, projection=directions)


def quantization_loss(projected: np.ndarray, rotation: np.ndarray) -> float:
    """Return ||B - V R||_F^2 with B = sign(V R) in {-1, 1} (zero maps to 1)."""
    rotated = projected @ rotation
    binary = np.where(rotated >= 0, 1.0, -1.0)
    return float(np.sum((binary - rotated) ** 2))


def fit_itq(features: np.ndarray, num_bits: int, num_iterations: int = 50,
            seed: int = 0) -> IterativeQuantization:
    """Fit ITQ: PCA to `num_bits` dimensions, then `num_iterations` rotation updates.

    Each iteration sets B = sign(V R), then the R that minimises ||B - V R||_F^2 over orthogonal
    matrices: with the SVD B^T V = U S W^T, R = W U^T. Neither step can increase the loss, so
    `quantization_losses` does not increase.
    """
    features = _check_features(features, "features")
    _check_num_bits(num_bits)
    _check_pca_size(features, num_bits, "ITQ")
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be at least 1, got {num_iterations}.")

    mean, directions = principal_directions(features, num_bits)
    projected = (features - mean) @ directions

    # A random orthogonal start: the Q factor of a Gaussian matrix.
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((num_bits, num_bits)))

    losses = []
    for _ in range(num_iterations):
        binary = np.where(projected @ rotation >= 0, 1.0, -1.0)
        u, _, w_transposed = np.linalg.svd(binary.T @ projected)
        rotation = w_transposed.T @ u.T
        losses.append(float(np.sum((binary - projected @ rotation) ** 2)))

    return IterativeQuantization(
        mean=mean, projection=directions @ rotation, pca_directions=directions,
        rotation=rotation, quantization_losses=np.asarray(losses))
