"""Hand-computed cases, tie enumeration and input checks for mvs_jax.retrieval.

Each expected value is worked out in a comment next to the case. Property tests
against the slow reference live in test_retrieval_properties.py.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mvs_jax import retrieval
from mvs_jax.retrieval import reference

NUM_BITS = 8


def codes_at_distances(distances, num_bits=NUM_BITS):
    """Return a zero query code and database codes whose distance to it is ``distances[j]``."""
    query = np.zeros((1, num_bits), np.uint8)
    database = np.zeros((len(distances), num_bits), np.uint8)
    for row, distance in enumerate(distances):
        database[row, :distance] = 1
    return query, database


def evaluate_case(distances, relevant, **options):
    """Evaluate one query whose class label is 1 against items labelled 1 (relevant) or 0."""
    query, database = codes_at_distances(distances)
    database_labels = np.asarray(relevant, np.int64)
    return retrieval.evaluate(query, np.array([1]), database, database_labels, **options)


# ---------------------------------------------------------------- packing


@pytest.mark.parametrize("num_bits", [1, 12, 24, 31, 32, 33, 48, 64, 100])
def test_pack_unpack_round_trip(num_bits):
    bits = np.random.default_rng(num_bits).integers(0, 2, (3, 5, num_bits))
    packed = retrieval.pack_codes(bits)
    assert packed.dtype == np.uint32
    assert packed.shape == (3, 5, -(-num_bits // 32))
    assert np.array_equal(retrieval.unpack_codes(packed, num_bits), bits)


def test_pack_bit_layout():
    # Bits 0 and 2 set -> 0b101 = 5; bit 32 is bit 0 of the second word.
    assert retrieval.pack_codes(np.array([1, 0, 1])).tolist() == [5]
    code = np.zeros(33, np.uint8)
    code[32] = 1
    assert retrieval.pack_codes(code).tolist() == [0, 1]
    bits = np.random.default_rng(0).integers(0, 2, 70)
    assert retrieval.pack_codes(bits).tolist() == reference.pack_code(bits.tolist())


def test_pack_jax_input_inside_jit():
    bits = jnp.asarray(np.random.default_rng(1).integers(0, 2, (4, 40)), jnp.uint8)
    packed = jax.jit(retrieval.pack_codes)(bits)
    assert isinstance(packed, jax.Array)
    assert np.array_equal(np.asarray(packed), retrieval.pack_codes(np.asarray(bits)))
    assert np.array_equal(np.asarray(retrieval.unpack_codes(packed, 40)), np.asarray(bits))


def test_pack_rejects_non_binary():
    with pytest.raises(ValueError, match="only 0 and 1"):
        retrieval.pack_codes(np.array([0, 1, 2]))


def test_unpack_rejects_wrong_bit_count():
    packed = retrieval.pack_codes(np.ones((2, 40), np.uint8))
    with pytest.raises(ValueError, match="32 < K <= 64"):
        retrieval.unpack_codes(packed, 32)


# ---------------------------------------------------------------- search


def test_top_k_tie_rule_by_hand():
    # Distances [2, 1, 1, 0, 1]: item 3 first, then the tie at distance 1 in index
    # order 1, 2, 4, then item 0.
    query, database = codes_at_distances([2, 1, 1, 0, 1])
    distances, indices = retrieval.hamming_top_k(retrieval.pack_codes(query), retrieval.pack_codes(database), 4)
    assert indices.tolist() == [[3, 1, 2, 4]]
    assert distances.tolist() == [[0, 1, 1, 1]]
    assert distances.dtype == np.int32
    assert indices.dtype == np.int32


def test_top_k_all_tied_returns_lowest_indices():
    database = retrieval.pack_codes(np.ones((100, 12), np.uint8))
    query = retrieval.pack_codes(np.zeros((2, 12), np.uint8))
    distances, indices = retrieval.hamming_top_k(query, database, 40, chunk_size=32)
    assert indices.tolist() == [list(range(40))] * 2
    assert (distances == 12).all()


def test_top_k_same_for_every_chunk_size():
    rng = np.random.default_rng(2)
    distinct = rng.integers(0, 2, (4, 20))
    database = retrieval.pack_codes(distinct[rng.integers(0, 4, 300)])
    query = retrieval.pack_codes(distinct[rng.integers(0, 4, 5)])
    expected_distances, expected_indices = reference.top_k(
        retrieval.unpack_codes(query, 20), retrieval.unpack_codes(database, 20), 70
    )
    for chunk_size in (1, 32, 33, 100, 300, 10_000):
        distances, indices = retrieval.hamming_top_k(query, database, 70, chunk_size=chunk_size)
        assert indices.tolist() == expected_indices, chunk_size
        assert distances.tolist() == expected_distances, chunk_size


def test_top_k_with_k_equal_to_n():
    rng = np.random.default_rng(3)
    database = rng.integers(0, 2, (45, 7))
    query = rng.integers(0, 2, (3, 7))
    distances, indices = retrieval.hamming_top_k(retrieval.pack_codes(query), retrieval.pack_codes(database), 45)
    expected_distances, expected_indices = reference.top_k(query, database, 45)
    assert indices.tolist() == expected_indices
    assert distances.tolist() == expected_distances


@pytest.mark.parametrize("bound", [40, 2**20])
def test_smallest_k_float_key_and_sort_paths(bound):
    # bound * n = 40 * 300 stays within float32's exact range; 2**20 * 300 does not,
    # which switches to the two-key sort. Both must order by (value, position).
    from mvs_jax.retrieval.search import smallest_k

    values = np.random.default_rng(5).integers(0, 4, (3, 300)).astype(np.uint32)
    top_values, positions = jax.jit(smallest_k, static_argnums=(1, 2))(jnp.asarray(values), bound, 50)
    expected = np.stack([np.lexsort((np.arange(300), row))[:50] for row in values])
    assert np.array_equal(np.asarray(positions), expected)
    assert np.array_equal(np.asarray(top_values), np.take_along_axis(values, expected, axis=1))


def test_top_k_rejects_k_above_database_size():
    packed = retrieval.pack_codes(np.zeros((5, 8), np.uint8))
    with pytest.raises(ValueError, match="k=6 exceeds the database size 5"):
        retrieval.hamming_top_k(packed, packed, 6)


def test_top_k_rejects_mismatched_words():
    with pytest.raises(ValueError, match="same number of words"):
        retrieval.hamming_top_k(
            retrieval.pack_codes(np.zeros((1, 40), np.uint8)), retrieval.pack_codes(np.zeros((5, 8), np.uint8)), 1
        )


# ---------------------------------------------------------------- metrics by hand

# Case A: distances 0..4, one item each, relevance [1, 0, 1, 0, 1]; there are no ties.
A_DISTANCES = [0, 1, 2, 3, 4]
A_RELEVANT = [1, 0, 1, 0, 1]


def test_map_at_k_retrieved_normalizer():
    # Top 3 = [1, 0, 1]: precision@1 = 1, precision@3 = 2/3, R_3 = 2 -> (1 + 2/3) / 2 = 5/6.
    result = evaluate_case(A_DISTANCES, A_RELEVANT, k=3)
    assert result["map@3"] == pytest.approx(5 / 6, rel=1e-12)
    assert result["map@3_tie_aware"] == pytest.approx(5 / 6, rel=1e-12)
    assert result["map@3_worst"] == pytest.approx(5 / 6, rel=1e-12)
    assert result["map@3_best"] == pytest.approx(5 / 6, rel=1e-12)


def test_map_at_k_relevant_normalizer():
    # Same sum 5/3, divided by min(k, relevant in database) = min(3, 3) = 3 -> 5/9.
    result = evaluate_case(A_DISTANCES, A_RELEVANT, k=3, normalizer="relevant")
    assert result["map@3"] == pytest.approx(5 / 9, rel=1e-12)


def test_precision_and_recall_at_k():
    # The top 3 contains 2 of the 3 relevant items: precision@3 = 2/3, recall@3 = 2/3.
    result = evaluate_case(A_DISTANCES, A_RELEVANT, k=3)
    assert result["precision@3"] == pytest.approx(2 / 3, rel=1e-12)
    assert result["recall@3"] == pytest.approx(2 / 3, rel=1e-12)


def test_radius_metrics():
    # Radius 2 contains the items at distances 0, 1, 2 with relevance 1, 0, 1:
    # precision 2/3, recall 2 of 3 = 2/3. Radius 0 contains one relevant item:
    # precision 1, recall 1/3.
    result = evaluate_case(A_DISTANCES, A_RELEVANT, k=3, radius=2)
    assert result["precision@r2"] == pytest.approx(2 / 3, rel=1e-12)
    assert result["recall@r2"] == pytest.approx(2 / 3, rel=1e-12)
    assert result["no_hit_fraction@r2"] == 0.0
    result = evaluate_case(A_DISTANCES, A_RELEVANT, k=3, radius=0)
    assert result["precision@r0"] == pytest.approx(1.0)
    assert result["recall@r0"] == pytest.approx(1 / 3, rel=1e-12)


def test_radius_without_hit_counts_as_zero_precision():
    # Nearest item at distance 3, radius 2: precision 0 and the query still counts.
    result = evaluate_case([3, 4], [1, 1], k=1, radius=2)
    assert result["precision@r2"] == 0.0
    assert result["recall@r2"] == 0.0
    assert result["no_hit_fraction@r2"] == 1.0


def test_map_full_ranking():
    # Whole ranking [1, 0, 1, 0, 1]: (1/1 + 2/3 + 3/5) / 3 = (34/15) / 3 = 34/45.
    result = evaluate_case(A_DISTANCES, A_RELEVANT, k=3, full_ranking=True)
    assert result["map_full"] == pytest.approx(34 / 45, rel=1e-12)
    assert result["map_full_tie_aware"] == pytest.approx(34 / 45, rel=1e-12)


def test_k_none_ranks_whole_database():
    # k=None uses the "all" suffix and equals map_full; precision = 3/5, recall = 1.
    result = evaluate_case(A_DISTANCES, A_RELEVANT, k=None)
    assert result["map@all"] == pytest.approx(34 / 45, rel=1e-12)
    assert result["precision@all"] == pytest.approx(3 / 5, rel=1e-12)
    assert result["recall@all"] == 1.0


def test_k_above_database_size_is_clamped():
    # k = 10 > N = 5 is evaluated as k = 5 under the key map@10.
    result = evaluate_case(A_DISTANCES, A_RELEVANT, k=10)
    assert result["map@10"] == pytest.approx(34 / 45, rel=1e-12)
    assert result["precision@10"] == pytest.approx(3 / 5, rel=1e-12)


def test_query_without_relevant_items_counts_as_zero():
    # Query 0 (label 1) has AP@3 = 5/6 as in case A; query 1 (label 7) has no relevant
    # item, AP 0, and still counts: mean (5/6 + 0) / 2 = 5/12.
    query, database = codes_at_distances(A_DISTANCES)
    queries = np.repeat(query, 2, axis=0)
    result = retrieval.evaluate(queries, np.array([1, 7]), database, np.array(A_RELEVANT), k=3)
    assert result["map@3"] == pytest.approx(5 / 12, rel=1e-12)
    assert result["map@3_tie_aware"] == pytest.approx(5 / 12, rel=1e-12)
    assert result["recall@3"] == pytest.approx(1 / 3, rel=1e-12)
    assert result["num_queries_without_relevant"] == 1.0


def test_multi_label_relevance():
    # Query labels {0, 2}. Items share a label: no ({1}), yes ({2}), yes ({0, 1}), no ({}).
    # Distances 0..3, so the top 3 is [0, 1, 1]: AP@3 = (1/2 + 2/3) / 2 = 7/12.
    query, database = codes_at_distances([0, 1, 2, 3])
    query_labels = np.array([[1, 0, 1]])
    database_labels = np.array([[0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0]])
    result = retrieval.evaluate(query, query_labels, database, database_labels, k=3)
    assert result["map@3"] == pytest.approx(7 / 12, rel=1e-12)
    assert result["precision@3"] == pytest.approx(2 / 3, rel=1e-12)


# Case C: distances [0, 1, 2, 2], relevance [1, 0, 1, 0], k = 3. The tie at distance 2
# straddles the cut, so one of items 2 (relevant) and 3 (not) is in the top 3.
#   item 2 inside: [1, 0, 1] -> (1 + 2/3) / 2 = 5/6
#   item 3 inside: [1, 0, 0] -> 1 / 1 = 1
# Each with probability 1/2: tie-aware 11/12. Lower index first puts item 2 inside.
# The best order keeps the relevant item out, so "relevant first" is not the best.
C_DISTANCES = [0, 1, 2, 2]
C_RELEVANT = [1, 0, 1, 0]


def test_tie_aware_map_retrieved_normalizer():
    result = evaluate_case(C_DISTANCES, C_RELEVANT, k=3)
    assert result["map@3"] == pytest.approx(5 / 6, rel=1e-12)
    assert result["map@3_tie_aware"] == pytest.approx(11 / 12, rel=1e-12)
    assert result["map@3_worst"] == pytest.approx(5 / 6, rel=1e-12)
    assert result["map@3_best"] == pytest.approx(1.0, rel=1e-12)


def test_tie_aware_map_relevant_normalizer():
    # Denominator min(3, 2) = 2: item 2 inside -> 5/6, item 3 inside -> 1/2.
    # Tie-aware (5/6 + 1/2) / 2 = 2/3, worst 1/2, best 5/6.
    result = evaluate_case(C_DISTANCES, C_RELEVANT, k=3, normalizer="relevant")
    assert result["map@3_tie_aware"] == pytest.approx(2 / 3, rel=1e-12)
    assert result["map@3_worst"] == pytest.approx(1 / 2, rel=1e-12)
    assert result["map@3_best"] == pytest.approx(5 / 6, rel=1e-12)


def test_tie_aware_precision_and_recall():
    # Relevant items in the top 3: 2 or 1, each with probability 1/2.
    # precision: expected 1.5/3 = 1/2, worst 1/3, best 2/3; recall: the same over 2.
    result = evaluate_case(C_DISTANCES, C_RELEVANT, k=3)
    assert result["precision@3_tie_aware"] == pytest.approx(1 / 2, rel=1e-12)
    assert result["precision@3_worst"] == pytest.approx(1 / 3, rel=1e-12)
    assert result["precision@3_best"] == pytest.approx(2 / 3, rel=1e-12)
    assert result["recall@3_tie_aware"] == pytest.approx(3 / 4, rel=1e-12)


def test_tie_aware_map_full_ranking():
    # Full ranking, the tie at distance 2 in either order:
    #   [1, 0, 1, 0] -> (1 + 2/3) / 2 = 5/6;  [1, 0, 0, 1] -> (1 + 2/4) / 2 = 3/4.
    # Tie-aware (5/6 + 3/4) / 2 = 19/24, worst 3/4, best 5/6.
    result = evaluate_case(C_DISTANCES, C_RELEVANT, k=3, full_ranking=True)
    assert result["map_full"] == pytest.approx(5 / 6, rel=1e-12)
    assert result["map_full_tie_aware"] == pytest.approx(19 / 24, rel=1e-12)
    assert result["map_full_worst"] == pytest.approx(3 / 4, rel=1e-12)
    assert result["map_full_best"] == pytest.approx(5 / 6, rel=1e-12)


def average_precision_by_definition(relevance, k, normalizer):
    hits, total = 0, 0.0
    for position, relevant in enumerate(relevance[:k], start=1):
        if relevant:
            hits += 1
            total += hits / position
    denominator = hits if normalizer == "retrieved" else min(k, sum(relevance))
    return total / denominator if denominator else 0.0


def orders_of_tied_items(distances, relevant):
    """Yield the relevance list of every order that permutes items only within their tie group."""
    groups = [[relevant[j] for j in range(len(distances)) if distances[j] == d] for d in sorted(set(distances))]
    for orders in itertools.product(*(itertools.permutations(group) for group in groups)):
        yield [value for order in orders for value in order]


# Three tie groups: 2 items at distance 0, 3 at distance 1, 3 at distance 2, and one
# at 3. 2! * 3! * 3! * 1! = 72 orders.
D_DISTANCES = [1, 0, 2, 1, 3, 2, 0, 1, 2]
D_RELEVANT = [1, 0, 1, 0, 1, 0, 1, 1, 0]


@pytest.mark.parametrize("normalizer", ["retrieved", "relevant"])
@pytest.mark.parametrize("k", range(1, len(D_DISTANCES) + 1))
def test_tie_aware_map_matches_enumeration(k, normalizer):
    values = [
        average_precision_by_definition(order, k, normalizer) for order in orders_of_tied_items(D_DISTANCES, D_RELEVANT)
    ]
    result = evaluate_case(D_DISTANCES, D_RELEVANT, k=k, normalizer=normalizer)
    assert result[f"map@{k}_tie_aware"] == pytest.approx(np.mean(values), rel=1e-12)
    assert result[f"map@{k}_worst"] == pytest.approx(min(values), rel=1e-12)
    assert result[f"map@{k}_best"] == pytest.approx(max(values), rel=1e-12)


def test_tie_aware_map_full_matches_enumeration():
    count = len(D_DISTANCES)
    values = [
        average_precision_by_definition(order, count, "retrieved")
        for order in orders_of_tied_items(D_DISTANCES, D_RELEVANT)
    ]
    result = evaluate_case(D_DISTANCES, D_RELEVANT, k=2, full_ranking=True)
    assert result["map_full_tie_aware"] == pytest.approx(np.mean(values), rel=1e-12)
    assert result["map_full_worst"] == pytest.approx(min(values), rel=1e-12)
    assert result["map_full_best"] == pytest.approx(max(values), rel=1e-12)


def test_precision_recall_curve_by_hand():
    # Case A per radius 0..8: items within [1, 2, 3, 4, 5, 5, ...], relevant within
    # [1, 1, 2, 2, 3, 3, ...] of 3 relevant items.
    query, database = codes_at_distances(A_DISTANCES)
    curve = retrieval.precision_recall_curve(query, np.array([1]), database, np.array(A_RELEVANT))
    assert curve["radius"].tolist() == list(range(NUM_BITS + 1))
    assert curve["precision"][:5] == pytest.approx([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5], rel=1e-12)
    assert curve["recall"][:5] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1], rel=1e-12)
    assert curve["precision"][-1] == pytest.approx(3 / 5, rel=1e-12)


@pytest.mark.parametrize("multi_label", [False, True])
def test_search_and_full_ranking_paths_agree(multi_label):
    # The default path (chunked top-k search and count kernel) and the full-ranking
    # path (host sort) compute the shared keys independently. Small chunks force many
    # database chunks and query blocks; 40 labels need two packed label words.
    rng = np.random.default_rng(6)
    distinct = rng.integers(0, 2, (30, 24))
    database = distinct[rng.integers(0, 30, 3000)]
    queries = distinct[rng.integers(0, 30, 50)]
    if multi_label:
        query_labels = (rng.random((50, 40)) < 0.05).astype(np.uint8)
        database_labels = (rng.random((3000, 40)) < 0.05).astype(np.uint8)
    else:
        query_labels, database_labels = rng.integers(0, 5, 50), rng.integers(0, 5, 3000)
    options = {"k": 70, "radius": 3, "chunk_size": 256, "query_chunk_size": 16}
    searched = retrieval.evaluate(queries, query_labels, database, database_labels, **options)
    ranked = retrieval.evaluate(queries, query_labels, database, database_labels, full_ranking=True, **options)
    for key, value in searched.items():
        assert ranked[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


# ---------------------------------------------------------------- input checks


def small_inputs():
    rng = np.random.default_rng(4)
    return rng.integers(0, 2, (3, 8)), np.arange(3), rng.integers(0, 2, (6, 8)), np.arange(6) % 3


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_evaluate_rejects_invalid_k(k):
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        retrieval.evaluate(*small_inputs(), k=k)


def test_evaluate_rejects_negative_radius():
    with pytest.raises(ValueError, match="radius must be an integer >= 0"):
        retrieval.evaluate(*small_inputs(), radius=-1)


def test_evaluate_rejects_unknown_normalizer():
    with pytest.raises(ValueError, match="use one of 'retrieved', 'relevant'"):
        retrieval.evaluate(*small_inputs(), normalizer="total")


def test_evaluate_rejects_mismatched_code_lengths():
    queries, query_labels, database, database_labels = small_inputs()
    with pytest.raises(ValueError, match=r"shape \(3, 8\).*shape \(6, 7\)"):
        retrieval.evaluate(queries, query_labels, database[:, :7], database_labels)


def test_evaluate_rejects_mismatched_label_shapes():
    queries, query_labels, database, database_labels = small_inputs()
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(5,\)"):
        retrieval.evaluate(queries, query_labels, database, database_labels[:5])
    with pytest.raises(ValueError, match=r"shape \(3, 2\).*shape \(6, 3\)"):
        retrieval.evaluate(queries, np.ones((3, 2)), database, np.ones((6, 3)))
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(6, 3\)"):
        retrieval.evaluate(queries, query_labels, database, np.ones((6, 3)))


def test_evaluate_rejects_non_binary_codes():
    queries, query_labels, database, database_labels = small_inputs()
    with pytest.raises(ValueError, match="database_codes must contain only 0 and 1"):
        retrieval.evaluate(queries, query_labels, database * 2, database_labels)


def test_evaluate_rejects_non_binary_multi_hot_labels():
    queries, _, database, _ = small_inputs()
    with pytest.raises(ValueError, match="multi-hot labels must contain only 0 and 1"):
        retrieval.evaluate(queries, np.full((3, 2), 2), database, np.ones((6, 2)))


def test_evaluate_rejects_float_class_labels():
    queries, query_labels, database, database_labels = small_inputs()
    with pytest.raises(ValueError, match="class labels must be integers"):
        retrieval.evaluate(queries, query_labels.astype(float), database, database_labels)
