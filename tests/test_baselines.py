"""LSH, PCA hashing and ITQ against the properties they guarantee, and score-based MAP@k."""

import numpy as np
import pytest

from mvs_jax import baselines, retrieval
from mvs_jax.baselines import linear


def _anisotropic_data(num_samples: int = 400, dimensions: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(4.0, 0.2, dimensions)
    mixing, _ = np.linalg.qr(rng.standard_normal((dimensions, dimensions)))
    return rng.standard_normal((num_samples, dimensions)) * scales @ mixing + 3.0


def _clusters(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16 unit-variance Gaussian clusters in 32 dimensions with fixed centres (spread 6)."""
    centres = np.random.default_rng(0).standard_normal((16, 32)) * 6.0
    labels = np.repeat(np.arange(16), per_class)
    noise = np.random.default_rng(seed).standard_normal((len(labels), 32))
    return centres[labels] + noise, labels


# --- ITQ ----------------------------------------------------------------------------------------


def test_itq_rotation_is_orthogonal():
    itq = baselines.fit_itq(_anisotropic_data(), 8, num_iterations=20)
    np.testing.assert_allclose(itq.rotation.T @ itq.rotation, np.eye(8), atol=1e-10)
    np.testing.assert_allclose(itq.rotation @ itq.rotation.T, np.eye(8), atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_itq_quantization_loss_never_increases(seed):
    features = _anisotropic_data(seed=seed)
    itq = baselines.fit_itq(features, 8, num_iterations=30, seed=seed)
    losses = itq.quantization_losses
    assert losses.shape == (30,)
    increases = np.diff(losses)
    assert np.all(increases <= 1e-9 * losses[0]), increases.max()
    # The recorded loss uses the B of its iteration; re-thresholding with the final R can only
    # lower it further.
    projected = (features - itq.mean) @ itq.pca_directions
    assert linear.quantization_loss(projected, itq.rotation) <= losses[-1] + 1e-9 * losses[0]


def test_itq_loss_below_random_rotation():
    features = _anisotropic_data()
    itq = baselines.fit_itq(features, 8, num_iterations=30)
    projected = (features - itq.mean) @ itq.pca_directions
    random_rotation, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((8, 8)))
    assert itq.quantization_losses[-1] < linear.quantization_loss(projected, random_rotation)


def test_itq_codes_are_signs_of_rotated_projection():
    features = _anisotropic_data()
    itq = baselines.fit_itq(features, 8, num_iterations=5)
    np.testing.assert_allclose(itq.projection, itq.pca_directions @ itq.rotation)
    expected = ((features - features.mean(axis=0)) @ itq.pca_directions @ itq.rotation >= 0)
    codes = itq.encode(features)
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, expected.astype(np.uint8))


# --- PCA hashing ---------------------------------------------------------------------------------


def test_pca_projections_are_uncorrelated_on_training_data():
    features = _anisotropic_data()
    pca = baselines.fit_pca_hashing(features, 6)
    covariance = np.cov(pca.project(features), rowvar=False)
    off_diagonal = covariance - np.diag(np.diag(covariance))
    assert np.abs(off_diagonal).max() < 1e-9 * np.abs(covariance).max()
    # Variances are the largest eigenvalues of the data covariance, in decreasing order.
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(features, rowvar=False)))[::-1]
    np.testing.assert_allclose(np.diag(covariance), eigenvalues[:6], rtol=1e-9)


def test_pca_directions_are_orthonormal_and_centred():
    features = _anisotropic_data()
    pca = baselines.fit_pca_hashing(features, 6)
    np.testing.assert_allclose(pca.projection.T @ pca.projection, np.eye(6), atol=1e-10)
    np.testing.assert_allclose(pca.project(features).mean(axis=0), 0.0, atol=1e-9)


@pytest.mark.parametrize("method", ["pca", "itq"])
def test_too_few_samples_names_both_numbers(method):
    features = _anisotropic_data(num_samples=16, dimensions=40)
    with pytest.raises(ValueError,
                       match=r"with 16 bits needs at least 17 training samples.*got 16"):
        baselines.fit(method, features, 16)
    # 17 samples are enough for 16 bits.
    baselines.fit(method, _anisotropic_data(num_samples=17, dimensions=40), 16)


@pytest.mark.parametrize("method", ["pca", "itq"])
def test_more_bits_than_dimensions_rejected(method):
    with pytest.raises(ValueError, match="with 32 bits needs features of at least 32 dimensions, "
                       "got 16"):
        baselines.fit(method, _anisotropic_data(dimensions=16), 32)


# --- LSH ---------------------------------------------------------------------------------------


def test_lsh_is_seeded():
    features = _anisotropic_data()
    first = baselines.fit_lsh(features, 12, seed=3)
    same_seed = baselines.fit_lsh(features, 12, seed=3)
    other_seed = baselines.fit_lsh(features, 12, seed=4)
    np.testing.assert_array_equal(first.projection, same_seed.projection)
    assert not np.array_equal(first.projection, other_seed.projection)


def test_lsh_centres_on_training_mean():
    features = _anisotropic_data()
    lsh = baselines.fit_lsh(features, 64)
    np.testing.assert_allclose(lsh.mean, features.mean(axis=0))
    # The mean itself projects to 0 on every direction, which maps to bit 1.
    np.testing.assert_array_equal(lsh.encode(lsh.mean[None]), np.ones((1, 64), np.uint8))


def test_lsh_bit_disagreement_estimates_angle():
    # For Gaussian directions, P(bits differ) = angle / pi (Charikar, STOC 2002). Two centred
    # vectors at 60 degrees differ on about 1/3 of 20,000 bits; the standard deviation of the
    # fraction is sqrt(1/3 * 2/3 / 20000) = 0.0033.
    training = np.zeros((2, 2))  # mean 0
    lsh = baselines.fit_lsh(training, 20000, seed=0)
    angle = np.pi / 3
    vectors = np.array([[1.0, 0.0], [np.cos(angle), np.sin(angle)]])
    codes = lsh.encode(vectors)
    assert abs(np.mean(codes[0] != codes[1]) - 1 / 3) < 0.02


def test_dimension_mismatch_rejected():
    lsh = baselines.fit_lsh(_anisotropic_data(dimensions=16), 8)
    with pytest.raises(ValueError, match="features have 10 dimensions but the hash function was "
                       "fitted on 16"):
        lsh.encode(np.zeros((3, 10)))


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown baseline 'sh'; valid: \['itq', 'lsh', 'pca'\]"):
        baselines.fit("sh", _anisotropic_data(), 8)


@pytest.mark.parametrize("method", ["lsh", "pca", "itq"])
def test_codes_retrieve_clusters_through_evaluate(method):
    # The 16 centres, once centred, span 15 directions, so 15 of the 16 principal directions
    # separate clusters (with 3 clusters, 14 of 16 PCA bits would be noise), and 16-bit codes of
    # every method keep the clusters apart.
    database, database_labels = _clusters(100, seed=1)
    queries, query_labels = _clusters(10, seed=2)
    hash_function = baselines.fit(method, database, 16, seed=0)
    result = retrieval.evaluate(hash_function.encode(queries), query_labels,
                                hash_function.encode(database), database_labels, k=50)
    assert result["map@50_tie_aware"] > 0.9


# --- Score-based MAP@k ---------------------------------------------------------------------


def test_evaluate_scores_by_hand():
    # Scores 3, 2, 2, 1 with relevance 0, 1, 0, 1 and k = 2. Ties go to the lower index, so the
    # list is items 0 and 1, relevance [0, 1]: AP@2 = (1/2) / 1 = 0.5. The tie of items 1 and 2
    # straddles the cut: with probability 1/2 item 2 is listed, giving [0, 0] and AP 0.
    # Tie-aware 0.25, worst 0, best 0.5; precision@2 is 1/2 or 0, expected 1/4.
    scores = np.array([[3.0, 2.0, 2.0, 1.0]])
    result = baselines.evaluate_scores(scores, np.array([1]), np.array([0, 1, 0, 1]), k=2)
    assert result["map@2"] == pytest.approx(0.5)
    assert result["map@2_tie_aware"] == pytest.approx(0.25)
    assert result["map@2_worst"] == pytest.approx(0.0)
    assert result["map@2_best"] == pytest.approx(0.5)
    assert result["precision@2_tie_aware"] == pytest.approx(0.25)
    assert result["recall@2"] == pytest.approx(0.5)


@pytest.mark.parametrize("k", [1, 50, 300, 400])
def test_evaluate_scores_matches_hamming_evaluate(k):
    # Ranking by negated Hamming distance must give what retrieval.evaluate gives for the codes,
    # ties included (8-bit codes make many ties).
    rng = np.random.default_rng(k)
    queries = rng.integers(0, 2, (25, 8), dtype=np.uint8)
    database = rng.integers(0, 2, (300, 8), dtype=np.uint8)
    query_labels = rng.integers(0, 4, 25)
    database_labels = rng.integers(0, 4, 300)
    distances = (queries[:, None, :] != database[None, :, :]).sum(axis=-1)
    ours = baselines.evaluate_scores(-distances.astype(np.float64), query_labels,
                                     database_labels, k=k)
    expected = retrieval.evaluate(queries, query_labels, database, database_labels, k=k)
    for key, value in ours.items():
        assert value == pytest.approx(expected[key], abs=1e-12), key


def test_evaluate_scores_rejects_nan():
    with pytest.raises(ValueError, match="scores contains NaN"):
        baselines.evaluate_scores(np.array([[np.nan, 1.0]]), np.array([0]), np.array([0, 1]))


def test_evaluate_scores_rejects_label_shape():
    with pytest.raises(ValueError, match=r"scores has shape \(1, 2\) but query_labels has shape "
                       r"\(2,\)"):
        baselines.evaluate_scores(np.zeros((1, 2)), np.array([0, 1]), np.array([0, 1]))
