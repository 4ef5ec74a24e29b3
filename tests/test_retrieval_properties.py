"""Property tests: mvs_jax.retrieval against the plain-loop reference on random cases.

Cases use at most 40 bits and 40 database codes, so that the reference stays fast and
few kernel shapes get compiled. Codes are drawn from a handful of distinct codes to
create many tied distances.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvs_jax import retrieval
from mvs_jax.retrieval import reference

SCENARIOS = ["random", "all_tied", "k_above_database", "k_one", "no_relevant", "query_copies", "multi_label"]


def binary_rows(draw, rows, columns):
    flat = draw(st.lists(st.integers(0, 1), min_size=rows * columns, max_size=rows * columns))
    return np.asarray(flat, np.uint8).reshape(rows, columns)


@st.composite
def retrieval_cases(draw, scenario):
    num_bits = draw(st.integers(1, 40))
    num_database = draw(st.integers(1, 40))
    num_queries = draw(st.integers(1, 4))

    num_distinct = 1 if scenario == "all_tied" else draw(st.integers(1, 4))
    distinct = binary_rows(draw, num_distinct, num_bits)
    picks = draw(st.lists(st.integers(0, num_distinct - 1), min_size=num_database, max_size=num_database))
    database = distinct[picks]
    if scenario == "query_copies":
        rows = draw(st.lists(st.integers(0, num_database - 1), min_size=num_queries, max_size=num_queries))
        queries = database[rows]
    elif scenario == "all_tied":
        queries = binary_rows(draw, num_queries, num_bits)
    else:
        picks = draw(st.lists(st.integers(0, num_distinct - 1), min_size=num_queries, max_size=num_queries))
        queries = distinct[picks]

    if scenario == "multi_label":
        num_labels = draw(st.integers(1, 4))
        query_labels = binary_rows(draw, num_queries, num_labels)
        database_labels = binary_rows(draw, num_database, num_labels)
    else:
        query_labels = np.asarray(draw(st.lists(st.integers(0, 2), min_size=num_queries, max_size=num_queries)))
        database_labels = np.asarray(draw(st.lists(st.integers(0, 2), min_size=num_database, max_size=num_database)))
        if scenario == "no_relevant":
            query_labels[0] = 9  # no database item has class 9

    if scenario == "k_above_database":
        k = num_database + draw(st.integers(1, 5))
    elif scenario == "k_one":
        k = 1
    else:
        k = draw(st.one_of(st.none(), st.integers(1, num_database + 3)))

    options = {
        "k": k,
        "radius": draw(st.integers(0, num_bits + 1)),
        "normalizer": draw(st.sampled_from(retrieval.NORMALIZERS)),
        "full_ranking": draw(st.booleans()),
    }
    return queries, query_labels, database, database_labels, options


@pytest.mark.parametrize("scenario", SCENARIOS)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_evaluate_matches_reference(scenario, data):
    queries, query_labels, database, database_labels, options = data.draw(retrieval_cases(scenario))
    fast = retrieval.evaluate(queries, query_labels, database, database_labels, **options)
    slow = reference.evaluate(queries, query_labels, database, database_labels, **options)

    assert fast.keys() == slow.keys()
    for key in slow:
        assert fast[key] == pytest.approx(slow[key], rel=1e-9, abs=1e-12), key

    suffix = "all" if options["k"] is None else str(options["k"])
    for name in ("map", "precision", "recall"):
        worst, best = fast[f"{name}@{suffix}_worst"], fast[f"{name}@{suffix}_best"]
        assert worst - 1e-12 <= fast[f"{name}@{suffix}"] <= best + 1e-12, name
        assert worst - 1e-12 <= fast[f"{name}@{suffix}_tie_aware"] <= best + 1e-12, name


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    num_bits=st.integers(1, 70),
    num_database=st.integers(1, 120),
    chunk_size=st.integers(1, 100),
)
def test_top_k_matches_reference(data, num_bits, num_database, chunk_size):
    num_distinct = data.draw(st.integers(1, 6))
    distinct = binary_rows(data.draw, num_distinct, num_bits)
    picks = data.draw(st.lists(st.integers(0, num_distinct - 1), min_size=num_database, max_size=num_database))
    database = distinct[picks]
    queries = binary_rows(data.draw, data.draw(st.integers(1, 5)), num_bits)
    k = data.draw(st.integers(1, num_database))

    distances, indices = retrieval.hamming_top_k(
        retrieval.pack_codes(queries), retrieval.pack_codes(database), k, chunk_size=chunk_size
    )
    expected_distances, expected_indices = reference.top_k(queries, database, k)
    assert indices.tolist() == expected_indices
    assert distances.tolist() == expected_distances


@settings(max_examples=50, deadline=None)
@given(data=st.data(), num_bits=st.integers(1, 100), rows=st.integers(1, 4))
def test_pack_round_trip_and_layout(data, num_bits, rows):
    bits = binary_rows(data.draw, rows, num_bits)
    packed = retrieval.pack_codes(bits)
    assert np.array_equal(retrieval.unpack_codes(packed, num_bits), bits)
    assert packed.tolist() == [reference.pack_code(row) for row in bits.tolist()]


@settings(max_examples=15, deadline=None)
@given(data=st.data(), multi_label=st.booleans())
def test_precision_recall_curve_matches_reference(data, multi_label):
    scenario = "multi_label" if multi_label else "random"
    queries, query_labels, database, database_labels, _ = data.draw(retrieval_cases(scenario))
    fast = retrieval.precision_recall_curve(queries, query_labels, database, database_labels)
    slow = reference.precision_recall_curve(queries, query_labels, database, database_labels)
    for key in ("radius", "precision", "recall", "no_hit_fraction"):
        assert fast[key] == pytest.approx(slow[key], rel=1e-9, abs=1e-12), key
