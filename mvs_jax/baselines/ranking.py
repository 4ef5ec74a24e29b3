"""MAP@k of rankings by real-valued scores, with the tie keys of `retrieval.evaluate`.

Methods that score every database item instead of producing one binary code per image (VHB
counts matching local descriptors) are ranked by decreasing score. Items with equal scores are
tied: the deterministic value breaks ties by lower database index, as `retrieval.evaluate`
does at equal Hamming distance, and the tie-aware, worst and best values use the same formulas
(`mvs_jax.retrieval.metrics`) with the score's rank in place of the Hamming distance.
"""

from typing import Any

import numpy as np

from mvs_jax.retrieval import metrics


def _check_inputs(scores: Any, query_labels: Any, database_labels: Any,
                  k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    query_labels = np.asarray(query_labels)
    database_labels = np.asarray(database_labels)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"scores must be a non-empty [Q, N] array, got shape {scores.shape}.")
    if np.isnan(scores).any():
        raise ValueError("scores contains NaN; every query-item pair needs a comparable score.")
    if query_labels.shape != scores.shape[:1] or database_labels.shape != scores.shape[1:]:
        raise ValueError(
            f"scores has shape {scores.shape} but query_labels has shape {query_labels.shape} "
            f"and database_labels has shape {database_labels.shape}; pass class labels [Q] "
            "and [N].")
    for name, labels in (("query_labels", query_labels), ("database_labels", database_labels)):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{name} has dtype {labels.dtype}; class labels must be integers.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}.")
    return scores, query_labels, database_labels


def evaluate_scores(scores: Any, query_labels: Any, database_labels: Any,
                    k: int = 100) -> dict[str, float]:
    """Rank the database for each query by decreasing score and return mean MAP@k metrics.

    `scores` is [Q, N]; labels are class ids [Q] and [N], and an item is relevant when its class
    equals the query's. Returns `map@{k}`, `map@{k}_tie_aware`, `map@{k}_worst`, `map@{k}_best`,
    the same four for `precision@{k}` and `recall@{k}`, and `num_queries`, with AP@k divided by
    the number of relevant items retrieved (the "retrieved" normaliser of `retrieval.evaluate`).
    A k larger than N is evaluated as k = N under the requested key.
    """
    scores, query_labels, database_labels = _check_inputs(scores, query_labels, database_labels, k)
    effective_k = min(int(k), scores.shape[1])

    # A stable sort of the negated scores keeps the lower index first among equal scores.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :effective_k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    relevant_everywhere = database_labels[None, :] == query_labels[:, None]
    relevant = np.take_along_axis(relevant_everywhere, order, axis=1)

    # Integer ranks of the distinct scores in each list stand in for Hamming distances.
    changes = (top_scores[:, 1:] != top_scores[:, :-1]).astype(np.int64)
    ranks = np.concatenate([np.zeros((scores.shape[0], 1), np.int64), np.cumsum(changes, axis=1)],
                           axis=1)
    in_last_tie = scores == top_scores[:, -1:]
    tie_size = in_last_tie.sum(axis=1)
    tie_relevant = (in_last_tie & relevant_everywhere).sum(axis=1)
    num_relevant = relevant_everywhere.sum(axis=1)

    ap = metrics.average_precision_at_k(relevant, num_relevant, metrics.RETRIEVED)
    tie = metrics.tie_aware_metrics_at_k(ranks, relevant, tie_size, tie_relevant, num_relevant,
                                         metrics.RETRIEVED)
    hits = relevant.sum(axis=1)
    per_query = {
        "map": ap,
        "precision": hits / effective_k,
        "recall": metrics.safe_divide(hits, num_relevant),
    }
    results = {}
    for name, source in (("map", "ap"), ("precision", "precision"), ("recall", "recall")):
        results[f"{name}@{k}"] = float(per_query[name].mean())
        results[f"{name}@{k}_tie_aware"] = float(tie[f"{source}_expected"].mean())
        results[f"{name}@{k}_worst"] = float(tie[f"{source}_worst"].mean())
        results[f"{name}@{k}_best"] = float(tie[f"{source}_best"].mean())
    results["num_queries"] = float(scores.shape[0])
    return results
