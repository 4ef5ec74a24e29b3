"""VHB's bag-of-hash-bits matching: scores by hand, masking, and SIFT on real CIFAR-10 images."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mvs_jax import baselines
from mvs_jax.baselines import vhb


def _codes(per_image: list[list[int]], max_descriptors: int = 3,
           padding: int = 0) -> vhb.DescriptorCodes:
    """Build 8-bit codes from integers, one list per image. Unused rows hold `padding`."""
    words = np.full((len(per_image), max_descriptors, 1), padding, np.uint32)
    for index, codes in enumerate(per_image):
        words[index, :len(codes), 0] = codes
    counts = np.array([len(codes) for codes in per_image], np.int32)
    return vhb.DescriptorCodes(words, counts, num_bits=8)


def test_scores_by_hand():
    # Query descriptors q1 = 00000000 and q2 = 11110000.
    # Image A = {00000001}: distance 1 to q1, 5 to q2.
    # Image B = {11110000, 11111111, 00000000}: exact matches for q2 and q1.
    # Image C has no descriptor. Its padding rows hold code 0, equal to q1, and must not match.
    query = _codes([[0b00000000, 0b11110000]])
    database = _codes([[0b00000001], [0b11110000, 0b11111111, 0b00000000], []])
    scores = vhb.bag_of_hash_bits_scores(query, database, radii=[0, 1, 4])
    assert scores.shape == (3, 1, 3)
    # Radius 0: only B matches, with both query descriptors: 2 / sqrt(2 * 3).
    np.testing.assert_allclose(scores[0, 0], [0.0, 2 / np.sqrt(6), 0.0], rtol=1e-6)
    # Radius 1: q1 also matches A: 1 / sqrt(2 * 1).
    np.testing.assert_allclose(scores[1, 0], [1 / np.sqrt(2), 2 / np.sqrt(6), 0.0], rtol=1e-6)
    # Radius 4: q2 is still 5 bits from A's descriptor.
    np.testing.assert_allclose(scores[2, 0], [1 / np.sqrt(2), 2 / np.sqrt(6), 0.0], rtol=1e-6)


def test_query_padding_rows_do_not_match():
    # A query with one descriptor (11111111) and padding rows of code 0; the database image is
    # {00000000}: the padding must not count as a match.
    query = _codes([[0b11111111]], padding=0)
    database = _codes([[0b00000000]])
    assert vhb.bag_of_hash_bits_scores(query, database, radii=[0])[0, 0, 0] == 0.0


def test_radius_is_inclusive():
    query = _codes([[0b00000111]])
    database = _codes([[0b00000000]])  # Distance 3.
    scores = vhb.bag_of_hash_bits_scores(query, database, radii=[2, 3])
    np.testing.assert_array_equal(scores[:, 0, 0], [0.0, 1.0])


def test_query_blocks_do_not_change_scores():
    rng = np.random.default_rng(0)
    per_image = [list(rng.integers(0, 256, 3)) for _ in range(7)]
    codes = _codes(per_image)
    whole = vhb.bag_of_hash_bits_scores(codes, codes, radii=[1], query_block=8)
    blocked = vhb.bag_of_hash_bits_scores(codes, codes, radii=[1], query_block=3)
    np.testing.assert_array_equal(whole, blocked)


def test_mismatched_code_lengths_rejected():
    query = _codes([[1]])
    database = vhb.DescriptorCodes(np.zeros((1, 3, 1), np.uint32), np.ones(1, np.int32), 16)
    with pytest.raises(ValueError, match="query codes have 8 bits and database codes 16"):
        vhb.bag_of_hash_bits_scores(query, database, radii=[0])


def test_negative_radius_rejected():
    codes = _codes([[1]])
    with pytest.raises(ValueError, match="radii must be a non-empty list of Hamming radii >= 0"):
        vhb.bag_of_hash_bits_scores(codes, codes, radii=[-1])


# --- SIFT on CIFAR-10 images ------------------------------------------------------------------


def _load_images(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, folder in enumerate(sorted((root / split).iterdir())):
        for path in sorted(folder.glob("*.jpg")):
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="module")
def cifar_descriptors(cifar_subset):
    pytest.importorskip("cv2")
    images, labels = _load_images(cifar_subset, "train")
    return images, labels, vhb.extract_sift(images)


def test_sift_descriptors_of_upscaled_cifar(cifar_descriptors):
    images, _, descriptors = cifar_descriptors
    assert descriptors.descriptors.shape == (len(images), vhb.MAX_DESCRIPTORS, 128)
    assert descriptors.counts.max() <= vhb.MAX_DESCRIPTORS
    # Upscaled to 128x128, nearly every CIFAR-10 image yields keypoints.
    assert np.mean(descriptors.counts > 0) > 0.9
    valid = descriptors.valid()
    assert np.all(descriptors.descriptors[~valid] == 0)
    assert np.all(descriptors.descriptors[valid].sum(axis=-1) > 0)


def test_sift_rejects_non_uint8_images():
    pytest.importorskip("cv2")
    with pytest.raises(ValueError, match="images must be uint8 RGB"):
        vhb.extract_sift(np.zeros((1, 32, 32, 3), np.float32))


def test_image_scores_itself_highest(cifar_descriptors):
    _, labels, descriptors = cifar_descriptors
    hash_function = vhb.fit_descriptor_hash(descriptors, 32)
    codes = vhb.encode_descriptors(hash_function, descriptors)
    scores = vhb.bag_of_hash_bits_scores(codes, codes, radii=[2])[0]
    with_descriptors = np.flatnonzero(descriptors.counts > 0)
    # An image matches all its own descriptors: score 1, the largest possible.
    np.testing.assert_allclose(scores[with_descriptors, with_descriptors], 1.0, rtol=1e-6)
    assert np.all(scores <= 1.0 + 1e-6)

    result = baselines.evaluate_scores(scores, labels, labels, k=10)
    assert 0.0 <= result["map@10_worst"]
    assert result["map@10_worst"] <= result["map@10_tie_aware"]
    assert result["map@10_tie_aware"] <= result["map@10_best"]
    assert result["map@10_best"] <= 1.0


def test_descriptor_hash_needs_enough_descriptors():
    # One image with 5 valid descriptors out of 32 rows.
    values = np.random.default_rng(0).random((1, vhb.MAX_DESCRIPTORS, 128), dtype=np.float32)
    few = vhb.LocalDescriptors(values, np.array([5], np.int32))
    with pytest.raises(ValueError, match="with 16 bits needs at least 17 training samples.*got 5"):
        vhb.fit_descriptor_hash(few, 16)
