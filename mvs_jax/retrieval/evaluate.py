"""Evaluate binary hash codes for retrieval: MAP@k with tie intervals, precision, recall.

``evaluate`` is the entry point for training and benchmark code. It validates the
inputs, packs the codes, runs the chunked search and count passes, and averages the
per-query metrics over all queries. Queries without relevant items count as 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mvs_jax.retrieval import metrics
from mvs_jax.retrieval.counting import full_ranking_statistics, threshold_counts
from mvs_jax.retrieval.labels import EncodedLabels, encode_labels, relevance_of_items
from mvs_jax.retrieval.packing import check_binary, pack_codes
from mvs_jax.retrieval.search import DEFAULT_CHUNK_SIZE, DEFAULT_QUERY_CHUNK_SIZE, hamming_top_k

# Rows of the tie-aware grid (queries x possible relevant counts) handled at once.
_TIE_GRID_ENTRIES = 1 << 22


def _validate_codes(query_codes: Any, database_codes: Any) -> tuple[np.ndarray, np.ndarray]:
    query_codes = np.asarray(query_codes)
    database_codes = np.asarray(database_codes)
    shapes = f"query_codes has shape {query_codes.shape} and database_codes has shape {database_codes.shape}"
    if query_codes.ndim != 2 or database_codes.ndim != 2:
        raise ValueError(f"{shapes}; pass unpacked codes [Q, K] and [N, K].")
    if query_codes.shape[1] != database_codes.shape[1] or query_codes.shape[1] == 0:
        raise ValueError(f"{shapes}; both need the same code length K >= 1.")
    if query_codes.shape[0] == 0 or database_codes.shape[0] == 0:
        raise ValueError(f"{shapes}; pass at least one query code and one database code.")
    check_binary(query_codes, "query_codes")
    check_binary(database_codes, "database_codes")
    return query_codes, database_codes


def _validate_options(k: Any, radius: Any, normalizer: Any) -> None:
    if k is not None and (isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k must be an integer >= 1, or None for the whole database, got {k!r}.")
    if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be an integer >= 0 (a Hamming distance), got {radius!r}.")
    if normalizer not in metrics.NORMALIZERS:
        valid = ", ".join(repr(name) for name in metrics.NORMALIZERS)
        raise ValueError(f"normalizer={normalizer!r} is not supported; use one of {valid}.")


def evaluate(
    query_codes: Any,
    query_labels: Any,
    database_codes: Any,
    database_labels: Any,
    *,
    k: int | None = 100,
    radius: int = 2,
    normalizer: str = metrics.RETRIEVED,
    full_ranking: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    query_chunk_size: int = DEFAULT_QUERY_CHUNK_SIZE,
) -> dict[str, float]:
    """Rank the database for every query by Hamming distance and return mean metrics.

    Codes are unpacked {0, 1} arrays ``[Q, K]`` and ``[N, K]``. Labels are class ids
    ``[Q]`` and ``[N]``, or multi-hot ``[Q, L]`` and ``[N, L]`` where an item is relevant
    when it shares a label with the query. ``k=None`` ranks the whole database (keys
    end in ``@all``), and k > N is evaluated as k = N under its own key.

    ``map@{k}`` breaks ties by lower database index. ``map@{k}_tie_aware`` is the
    expectation over all orders of tied items, and ``map@{k}_worst`` / ``map@{k}_best``
    are the minimum and maximum over those orders. Precision@k and recall@k get the
    same three extra keys. ``normalizer`` picks the AP@k denominator: "retrieved"
    (relevant items in the top k) or "relevant" (min(k, relevant items in the
    database)). ``precision@r{radius}`` and ``recall@r{radius}`` count the items within
    the Hamming radius. A query with no item there has precision 0, and
    ``no_hit_fraction@r{radius}`` is the fraction of such queries.
    ``full_ranking=True`` adds ``map_full`` and its tie keys (AP over the whole ranking).

    Raises ValueError for invalid k, radius or normalizer, for codes that are not
    binary or do not match in length, and for labels whose shapes do not match.
    """
    query_codes, database_codes = _validate_codes(query_codes, database_codes)
    _validate_options(k, radius, normalizer)
    num_queries, num_bits = query_codes.shape
    num_database = database_codes.shape[0]
    labels = encode_labels(query_labels, database_labels, num_queries, num_database)
    query_words, labels, query_counts = _distinct_queries(pack_codes(query_codes), labels)
    database_words = pack_codes(database_codes)

    suffix = "all" if k is None else str(int(k))
    effective_k = num_database if k is None else min(int(k), num_database)

    full = None
    if full_ranking or effective_k == num_database:
        # The full ranking also yields each top-k list, so no separate search runs.
        top_k = effective_k if effective_k < num_database else None
        full = full_ranking_statistics(query_words, database_words, labels, num_bits, top_k=top_k)

    if effective_k == num_database:
        at_k = _whole_database_metrics(full)
    else:
        at_k = _top_k_metrics(
            query_words, database_words, labels, full, effective_k, radius, normalizer, chunk_size, query_chunk_size
        )

    results = {}
    for name, source in (("map", "ap"), ("precision", "precision"), ("recall", "recall")):
        results[f"{name}@{suffix}"] = at_k[source]
        results[f"{name}@{suffix}_tie_aware"] = at_k[f"{source}_expected"]
        results[f"{name}@{suffix}_worst"] = at_k[f"{source}_worst"]
        results[f"{name}@{suffix}_best"] = at_k[f"{source}_best"]

    if full is not None:
        within = full.distance_counts[:, : radius + 1].sum(axis=1)
        relevant_within = full.relevant_counts[:, : radius + 1].sum(axis=1)
        radius_values = metrics.radius_metrics(within, relevant_within, at_k["num_relevant"])
    else:
        radius_values = at_k["radius"]
    results[f"precision@r{radius}"] = radius_values["precision"]
    results[f"recall@r{radius}"] = radius_values["recall"]
    results[f"no_hit_fraction@r{radius}"] = radius_values["no_hit"]

    if full_ranking:
        tie = metrics.full_ranking_tie_metrics(full.distance_counts, full.relevant_counts)
        results["map_full"] = full.average_precision
        results["map_full_tie_aware"] = tie["ap_expected"]
        results["map_full_worst"] = tie["ap_worst"]
        results["map_full_best"] = tie["ap_best"]

    summary = {name: float(np.dot(values, query_counts) / num_queries) for name, values in results.items()}
    summary["num_queries"] = float(num_queries)
    summary["num_queries_without_relevant"] = float(query_counts[at_k["num_relevant"] == 0].sum())
    return summary


def _distinct_queries(query_words: np.ndarray, labels: EncodedLabels) -> tuple[np.ndarray, EncodedLabels, np.ndarray]:
    """Keep one query per distinct (code, label) pair and count the queries it represents.

    Such queries have the same ranking and the same metrics, so the means weight each
    distinct query by its count, and repeated query codes cost nothing extra.
    """
    label_columns = np.ascontiguousarray(labels.query.reshape(labels.query.shape[0], -1)).view(np.uint32)
    rows = np.concatenate([query_words, label_columns], axis=1)
    _, first, counts = np.unique(rows, axis=0, return_index=True, return_counts=True)
    distinct_labels = dataclasses.replace(labels, query=labels.query[first])
    return query_words[first], distinct_labels, counts


def _whole_database_metrics(full) -> dict[str, np.ndarray]:
    """Per-query metrics at k = N, where every item is retrieved and only the AP depends on ties."""
    num_database = full.distance_counts[0].sum()
    num_relevant = full.relevant_counts.sum(axis=1)
    tie = metrics.full_ranking_tie_metrics(full.distance_counts, full.relevant_counts)
    precision = num_relevant / num_database
    recall = (num_relevant > 0).astype(np.float64)
    values = {"ap": full.average_precision, "num_relevant": num_relevant}
    for suffix in ("expected", "worst", "best"):
        values[f"ap_{suffix}"] = tie[f"ap_{suffix}"]
        values[f"precision_{suffix}"] = precision
        values[f"recall_{suffix}"] = recall
    values["precision"] = precision
    values["recall"] = recall
    return values


def _top_k_metrics(
    query_words, database_words, labels, full, k, radius, normalizer, chunk_size, query_chunk_size
) -> dict[str, Any]:
    """Per-query metrics for k < N from the top-k lists and whole-database counts."""
    num_queries = query_words.shape[0]
    if full is not None:
        distances, indices = full.top_distances, full.top_indices
    else:
        distances, indices = hamming_top_k(
            query_words, database_words, k, chunk_size=chunk_size, query_chunk_size=query_chunk_size
        )
    query_rows = np.arange(num_queries)
    relevant = relevance_of_items(labels, query_rows, indices)
    thresholds = distances[:, -1]

    if full is not None:
        tie_size = full.distance_counts[query_rows, thresholds]
        tie_relevant = full.relevant_counts[query_rows, thresholds]
        num_relevant = full.relevant_counts.sum(axis=1)
        radius_values = None
    else:
        counts = threshold_counts(
            query_words,
            database_words,
            labels,
            thresholds,
            radius,
            chunk_size=chunk_size,
            query_chunk_size=query_chunk_size,
        )
        tie_size, tie_relevant, num_relevant = counts.at_threshold, counts.relevant_at_threshold, counts.relevant
        radius_values = metrics.radius_metrics(counts.within_radius, counts.relevant_within_radius, num_relevant)

    hits = relevant.sum(axis=1)
    values: dict[str, Any] = {
        "ap": metrics.average_precision_at_k(relevant, num_relevant, normalizer),
        "precision": hits / k,
        "recall": metrics.safe_divide(hits, num_relevant),
        "num_relevant": num_relevant,
        "radius": radius_values,
    }

    rows_per_step = max(1, _TIE_GRID_ENTRIES // (k + 1))
    parts = []
    for start in range(0, num_queries, rows_per_step):
        rows = slice(start, start + rows_per_step)
        parts.append(
            metrics.tie_aware_metrics_at_k(
                distances[rows], relevant[rows], tie_size[rows], tie_relevant[rows], num_relevant[rows], normalizer
            )
        )
    for name in parts[0]:
        values[name] = np.concatenate([part[name] for part in parts])
    return values


def precision_recall_curve(
    query_codes: Any, query_labels: Any, database_codes: Any, database_labels: Any
) -> dict[str, np.ndarray]:
    """Return mean precision and recall within each Hamming radius 0..K.

    Returns float64 arrays of length K + 1 under "radius", "precision", "recall" and
    "no_hit_fraction", with the conventions of ``evaluate``: a query with no item
    within a radius has precision 0 there, and one without relevant items has recall 0.
    """
    query_codes, database_codes = _validate_codes(query_codes, database_codes)
    num_queries, num_bits = query_codes.shape
    labels = encode_labels(query_labels, database_labels, num_queries, database_codes.shape[0])
    query_words, labels, query_counts = _distinct_queries(pack_codes(query_codes), labels)
    full = full_ranking_statistics(query_words, pack_codes(database_codes), labels, num_bits, with_average_precision=False)

    within = np.cumsum(full.distance_counts, axis=1)
    relevant_within = np.cumsum(full.relevant_counts, axis=1)
    num_relevant = np.broadcast_to(relevant_within[:, -1:], within.shape)
    per_query = {
        "precision": metrics.safe_divide(relevant_within, within),
        "recall": metrics.safe_divide(relevant_within, num_relevant),
        "no_hit_fraction": (within == 0).astype(np.float64),
    }
    curve = {name: query_counts @ values / num_queries for name, values in per_query.items()}
    curve["radius"] = np.arange(num_bits + 1)
    return curve
