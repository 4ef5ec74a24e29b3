"""The core of VHB (He et al., CVPR 2012, "Mobile product search with bag of hash bits and
boundary reranking"): local descriptors hashed into a few bits each, and images ranked by the
number of query descriptors that find a database descriptor in a nearby hash bucket.

The pipeline here:

1. `extract_sift`: upscale each image (CIFAR-10 images are 32x32) and keep the SIFT
   descriptors (OpenCV) of the `max_descriptors` keypoints with the strongest response.
2. `fit_descriptor_hash` / `encode_descriptors`: PCA hashing of each 128-D descriptor into K
   bits (K = 16, 32 or 64), learned on database descriptors.
3. `bag_of_hash_bits_scores`: a query descriptor matches a database image when one of the
   image's descriptors lies within Hamming radius r of it, which is what probing every bucket
   within radius r of a single K-bit hash table finds. An image's score is the number of
   matching query descriptors divided by sqrt(query descriptors x image descriptors).

Boundary reranking, multiple hash tables and bit reuse are not implemented; docs/baselines.md
lists every departure from the paper.
"""

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mvs_jax.baselines.linear import LinearHash, fit_pca_hashing
from mvs_jax.retrieval import pack_codes

DESCRIPTOR_IMAGE_SIZE = 128
MAX_DESCRIPTORS = 32
SIFT_DIMENSIONS = 128

# Query images scored per call of the jitted matching kernel.
QUERY_BLOCK = 4


@dataclasses.dataclass(frozen=True)
class LocalDescriptors:
    """Up to M descriptors per image: `descriptors` [N, M, D] float32 (zero rows past `counts`)
    and `counts` [N] int32."""

    descriptors: np.ndarray
    counts: np.ndarray

    def valid(self) -> np.ndarray:
        """Return bool [N, M]: which rows of `descriptors` hold a descriptor."""
        return np.arange(self.descriptors.shape[1])[None, :] < self.counts[:, None]


@dataclasses.dataclass(frozen=True)
class DescriptorCodes:
    """Hashed descriptors: `words` [N, M, W] uint32 (packed as `retrieval.pack_codes` packs),
    `counts` [N] int32 and the code length `num_bits`."""

    words: np.ndarray
    counts: np.ndarray
    num_bits: int

    def valid(self) -> np.ndarray:
        return np.arange(self.words.shape[1])[None, :] < self.counts[:, None]


def extract_sift(images: np.ndarray, image_size: int = DESCRIPTOR_IMAGE_SIZE,
                 max_descriptors: int = MAX_DESCRIPTORS) -> LocalDescriptors:
    """Return the SIFT descriptors of uint8 RGB images [N, S, S, 3].

    Each image is resized to `image_size` x `image_size` (bilinear) and converted to grey. The
    `max_descriptors` keypoints with the largest detector response are kept. An image without
    keypoints gets count 0.
    """
    import cv2  # opencv-python-headless; imported here so the rest of the package does not need it.

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB [N, S, S, 3], got {images.dtype} "
                         f"{images.shape}.")
    if max_descriptors < 1:
        raise ValueError(f"max_descriptors must be at least 1, got {max_descriptors}.")

    sift = cv2.SIFT_create()
    descriptors = np.zeros((len(images), max_descriptors, SIFT_DIMENSIONS), np.float32)
    counts = np.zeros(len(images), np.int32)
    for index, image in enumerate(images):
        resized = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
        grey = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)
        keypoints = sift.detect(grey, None)
        keypoints = sorted(keypoints, key=lambda keypoint: -keypoint.response)[:max_descriptors]
        if not keypoints:
            continue
        _, values = sift.compute(grey, keypoints)
        if values is None:
            continue
        descriptors[index, :len(values)] = values
        counts[index] = len(values)
    return LocalDescriptors(descriptors, counts)


def fit_descriptor_hash(descriptors: LocalDescriptors, num_bits: int) -> LinearHash:
    """Fit PCA hashing of `num_bits` bits on every valid descriptor of `descriptors`."""
    return fit_pca_hashing(descriptors.descriptors[descriptors.valid()], num_bits)


def encode_descriptors(hash_function: LinearHash, descriptors: LocalDescriptors) -> DescriptorCodes:
    """Hash every descriptor and pack the bits into uint32 words."""
    num_images, max_descriptors, dimensions = descriptors.descriptors.shape
    bits = hash_function.encode(descriptors.descriptors.reshape(-1, dimensions))
    words = np.asarray(pack_codes(bits)).reshape(num_images, max_descriptors, -1)
    return DescriptorCodes(words, descriptors.counts.copy(), hash_function.num_bits)


@jax.jit
def _nearest_distances(query_words: jax.Array, database_words: jax.Array,
                       database_valid: jax.Array) -> jax.Array:
    """Return int32 [B, M, N]: each query descriptor's smallest Hamming distance to any valid
    descriptor of each database image (a value above any code length where there is none)."""
    xor = query_words[:, :, None, None, :] ^ database_words[None, None, :, :, :]
    distances = jax.lax.population_count(xor).astype(jnp.int32).sum(axis=-1)
    no_descriptor = jnp.int32(32 * query_words.shape[-1] + 1)
    distances = jnp.where(database_valid[None, None], distances, no_descriptor)
    return distances.min(axis=-1)


def bag_of_hash_bits_scores(query: DescriptorCodes, database: DescriptorCodes,
                            radii: Sequence[int], query_block: int = QUERY_BLOCK) -> np.ndarray:
    """Return float32 scores [len(radii), Q, N] of every database image for every query.

    For radius r, a query descriptor matches an image when one of the image's descriptors is
    within Hamming distance r. The score is (matching query descriptors) / sqrt(n_q * n_d), where
    n_q and n_d are the descriptor counts of the query and the image. It is 0 where either count
    is 0. An image compared with itself scores 1, the largest possible value.
    """
    if query.num_bits != database.num_bits or query.words.shape[2] != database.words.shape[2]:
        raise ValueError(f"query codes have {query.num_bits} bits and database codes "
                         f"{database.num_bits}; hash both with the same function.")
    radii = np.asarray(radii, np.int32)
    if radii.ndim != 1 or radii.size == 0 or (radii < 0).any():
        raise ValueError(f"radii must be a non-empty list of Hamming radii >= 0, got {radii}.")

    num_queries = query.words.shape[0]
    database_words = jnp.asarray(database.words)
    database_valid = jnp.asarray(database.valid())
    query_valid = query.valid()
    counts = np.zeros((radii.size, num_queries, database.words.shape[0]), np.int32)
    for start in range(0, num_queries, query_block):
        stop = min(start + query_block, num_queries)
        # Pad the last block to full size so the kernel compiles once.
        block = np.zeros((query_block,) + query.words.shape[1:], np.uint32)
        block[:stop - start] = query.words[start:stop]
        nearest = np.asarray(_nearest_distances(jnp.asarray(block), database_words,
                                                database_valid))[:stop - start]
        valid = query_valid[start:stop, :, None]
        for index, radius in enumerate(radii):
            counts[index, start:stop] = ((nearest <= radius) & valid).sum(axis=1)

    normaliser = np.sqrt(np.outer(query.counts, database.counts).astype(np.float64))
    scores = np.where(normaliser > 0, counts / np.where(normaliser > 0, normaliser, 1.0), 0.0)
    return scores.astype(np.float32)
