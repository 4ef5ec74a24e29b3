"""Retrieval metrics from ranked lists and distance histograms (NumPy, vectorised over queries).

Conventions (docs/retrieval.md explains them with examples):

* AP@k = (1 / D) * sum_{i <= k} precision@i * rel_i. With the "retrieved" normaliser,
  D is the number of relevant items in the top k. With "relevant", D is
  min(k, number of relevant items in the database). A query with D = 0 has AP 0 and
  still counts in the mean.
* Tied items are items at the same Hamming distance. Tie-aware values are the
  expectation over all orders of tied items, each order equally likely. Worst and
  best are the minimum and maximum over those orders.

Closed forms use harmonic numbers H[n] = sum_{i=1}^{n} 1 / i. Take a tie group of n
items with r relevant, placed after P items of which RP are relevant, and ranked in a
uniformly random order. Position P + i is relevant with probability r / n, and two
distinct positions both are with probability r (r - 1) / (n (n - 1)). Summing
E[rel_i * (relevant items up to i)] / (P + i) over i gives the expected contribution

    E = (r / n) (RP + 1) S1 + r (r - 1) / (n (n - 1)) S2,
    S1 = H[P + n] - H[P],  S2 = sum_{i=1}^{n} (i - 1) / (P + i) = n - (P + 1) S1.

McSherry and Najork ("Computing Information Retrieval Performance Measures
Efficiently in the Presence of Tied Scores", ECIR 2008, LNCS 4956) compute the same
average over all orderings for a full ranked list. The tests check E against an
enumeration of all orders of a small case.
"""

from __future__ import annotations

import numpy as np

RETRIEVED = "retrieved"
RELEVANT = "relevant"
NORMALIZERS = (RETRIEVED, RELEVANT)


def harmonic_numbers(n: int) -> np.ndarray:
    """Return float64 ``[n + 1]`` with ``H[0] = 0`` and ``H[i] = sum_{j=1}^{i} 1 / j``."""
    values = np.zeros(n + 1)
    values[1:] = np.cumsum(1.0 / np.arange(1, n + 1))
    return values


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Return numerator / denominator, and 0 where the denominator is 0."""
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def expected_group_contribution(
    preceding: np.ndarray, preceding_relevant: np.ndarray, size: np.ndarray, relevant: np.ndarray, harmonic: np.ndarray
) -> np.ndarray:
    """Return E, the expected sum of precision@i over the relevant items of a randomly ordered tie group.

    Arguments broadcast together: P, RP, n and r of the module docstring. Groups with
    n = 0 contribute 0.
    """
    size_or_one = np.maximum(size, 1)
    s1 = harmonic[preceding + size] - harmonic[preceding]
    s2 = size - (preceding + 1) * s1
    single = relevant / size_or_one * (preceding_relevant + 1) * s1
    pair_denominator = size_or_one * np.maximum(size - 1, 1)
    pairs = np.where(size > 1, relevant * (relevant - 1) / pair_denominator * s2, 0.0)
    return np.where(size > 0, single + pairs, 0.0)


def relevant_first_contribution(
    preceding: np.ndarray, preceding_relevant: np.ndarray, relevant: np.ndarray, harmonic: np.ndarray
) -> np.ndarray:
    """Return sum_{t=1}^{r} (RP + t) / (P + t): the group's relevant items ranked first."""
    return relevant + (preceding_relevant - preceding) * (harmonic[preceding + relevant] - harmonic[preceding])


def relevant_last_contribution(
    preceding: np.ndarray, preceding_relevant: np.ndarray, size: np.ndarray, relevant: np.ndarray, harmonic: np.ndarray
) -> np.ndarray:
    """Return sum_{t=1}^{r} (RP + t) / (P + n - r + t): the group's relevant items ranked last."""
    end = preceding + size
    offset = preceding_relevant - end + relevant
    return relevant + offset * (harmonic[end] - harmonic[end - relevant])


def average_precision_at_k(relevant: np.ndarray, num_relevant: np.ndarray, normalizer: str) -> np.ndarray:
    """Return AP@k ``[Q]`` of ranked lists ``relevant`` (bool ``[Q, k]``) in their given order."""
    k = relevant.shape[1]
    hits = np.cumsum(relevant, axis=1)
    numerator = (np.where(relevant, hits, 0) / np.arange(1, k + 1)).sum(axis=1)
    return safe_divide(numerator, _normalizer_denominator(hits[:, -1], num_relevant, k, normalizer))


def _normalizer_denominator(retrieved_relevant, num_relevant: np.ndarray, k: int, normalizer: str):
    if normalizer == RETRIEVED:
        return retrieved_relevant
    return np.minimum(k, num_relevant)


def tie_aware_metrics_at_k(
    distances: np.ndarray,
    relevant: np.ndarray,
    tie_size: np.ndarray,
    tie_relevant: np.ndarray,
    num_relevant: np.ndarray,
    normalizer: str,
) -> dict[str, np.ndarray]:
    """Return expected, worst and best AP@k, precision@k and recall@k per query.

    ``distances`` (int ``[Q, k]``, ascending) and ``relevant`` (bool ``[Q, k]``) describe
    the top-k list of each query. ``tie_size[q]`` and ``tie_relevant[q]`` count the
    database items, and the relevant ones, at the distance of the k-th item: that tie
    group may straddle the cut, so only m of its items are in the list. Every other
    group in the list lies wholly inside it.

    The straddling group puts x of its relevant items inside the cut, with x
    hypergeometric. For each feasible x, the AP is largest when every group ranks its
    relevant items first and smallest when it ranks them last. Across x, the
    "retrieved" normaliser does not always favour the largest x, because an extra
    relevant item at a low precision lowers the mean. So the extremes are taken over
    every feasible x.
    """
    num_queries, k = distances.shape
    harmonic = harmonic_numbers(k)
    relevant = relevant.astype(bool)
    hits = np.cumsum(relevant, axis=1)

    # The straddling group's part of the list is the suffix at the k-th distance.
    in_cut_group = distances == distances[:, -1:]
    in_cut = in_cut_group.sum(axis=1)
    before_cut_group = k - in_cut
    relevant_before_cut_group = (relevant & ~in_cut_group).sum(axis=1)

    before = _wholly_listed_groups(distances, relevant, hits, in_cut_group, harmonic)

    # Grid over x = relevant items of the straddling group inside the cut, 0..max(m).
    x = np.arange(int(in_cut.max()) + 1)[None, :]
    m = in_cut[:, None]
    preceding = before_cut_group[:, None]
    preceding_relevant = relevant_before_cut_group[:, None]
    group_size = tie_size[:, None]
    group_relevant = tie_relevant[:, None]
    x_low = np.maximum(0, m - (group_size - group_relevant))
    x_high = np.minimum(group_relevant, m)
    feasible = (x >= x_low) & (x <= x_high)
    x_clipped = np.minimum(x, m)
    probability = _hypergeometric(x, feasible, x_low, x_high, m, group_size, group_relevant)

    best_slot = relevant_first_contribution(preceding, preceding_relevant, x_clipped, harmonic)
    worst_slot = relevant_last_contribution(preceding, preceding_relevant, m, x_clipped, harmonic)
    expected_slot = expected_group_contribution(preceding, preceding_relevant, m, x_clipped, harmonic)

    if normalizer == RETRIEVED:
        denominator = preceding_relevant + x
    else:
        denominator = np.broadcast_to(np.minimum(k, num_relevant)[:, None], (num_queries, x.shape[1]))
    best_ap = safe_divide(before["best"][:, None] + best_slot, denominator)
    worst_ap = safe_divide(before["worst"][:, None] + worst_slot, denominator)
    expected_ap = safe_divide(before["expected"][:, None] + expected_slot, denominator)

    retrieved_low = relevant_before_cut_group + x_low[:, 0]
    retrieved_high = relevant_before_cut_group + x_high[:, 0]
    retrieved_expected = relevant_before_cut_group + in_cut * safe_divide(tie_relevant, tie_size)
    return {
        "ap_expected": (probability * expected_ap).sum(axis=1),
        "ap_worst": np.where(feasible, worst_ap, np.inf).min(axis=1),
        "ap_best": np.where(feasible, best_ap, -np.inf).max(axis=1),
        "precision_expected": retrieved_expected / k,
        "precision_worst": retrieved_low / k,
        "precision_best": retrieved_high / k,
        "recall_expected": safe_divide(retrieved_expected, num_relevant),
        "recall_worst": safe_divide(retrieved_low, num_relevant),
        "recall_best": safe_divide(retrieved_high, num_relevant),
    }


def _wholly_listed_groups(distances, relevant, hits, in_cut_group, harmonic) -> dict[str, np.ndarray]:
    """Sum the best, worst and expected contributions of the tie groups that lie wholly in the list.

    Each relevant item is scored with the statistics of its own group: P (items before
    the group), RP (relevant items before it), n and r. The expected term adds E / r
    per relevant item, so a group adds E in total.
    """
    k = distances.shape[1]
    # Rows are sorted, so a group starts where the distance changes. A running maximum
    # carries each group's first position forward, and, on the reversed row, its
    # last position backward.
    positions = np.arange(k)
    changes = distances[:, 1:] != distances[:, :-1]
    starts_here = np.concatenate([np.ones_like(changes[:, :1]), changes], axis=1)
    ends_here = np.concatenate([changes, np.ones_like(changes[:, :1])], axis=1)
    start = np.maximum.accumulate(np.where(starts_here, positions, 0), axis=1)
    reversed_last = np.maximum.accumulate(np.where(ends_here, k - 1 - positions, 0)[:, ::-1], axis=1)[:, ::-1]
    end = k - reversed_last

    hits_before = hits - relevant
    preceding_relevant = np.take_along_axis(hits_before, start, axis=1)
    group_relevant = np.take_along_axis(hits, end - 1, axis=1) - preceding_relevant
    group_size = end - start
    rank_in_group = hits - preceding_relevant  # 1-based rank among the group's relevant items
    counted = relevant & ~in_cut_group

    best_rank = start + rank_in_group
    worst_rank = end - group_relevant + rank_in_group
    best = safe_divide(np.where(counted, hits, 0), np.where(counted, best_rank, 0))
    worst = safe_divide(np.where(counted, hits, 0), np.where(counted, worst_rank, 0))
    group_expected = expected_group_contribution(start, preceding_relevant, group_size, group_relevant, harmonic)
    expected = safe_divide(np.where(counted, group_expected, 0.0), np.where(counted, group_relevant, 0))
    return {"best": best.sum(axis=1), "worst": worst.sum(axis=1), "expected": expected.sum(axis=1)}


def _hypergeometric(x, feasible, x_low, x_high, draws, population, successes) -> np.ndarray:
    """Return P(X = x) for X hypergeometric: ``draws`` items drawn from ``population`` with ``successes`` marked.

    Built from the ratio P(x + 1) / P(x) = (K - x)(n - x) / ((x + 1)(N - K - n + x + 1))
    in log space, then normalised, which avoids large factorials.
    """
    stepping = (x >= x_low) & (x < x_high)
    factors = (
        np.where(stepping, successes - x, 1),
        np.where(stepping, draws - x, 1),
        np.where(stepping, x + 1, 1),
        np.where(stepping, population - successes - draws + x + 1, 1),
    )
    log_ratio = np.log(factors[0]) + np.log(factors[1]) - np.log(factors[2]) - np.log(factors[3])
    log_probability = np.cumsum(log_ratio, axis=1) - log_ratio  # exclusive: log P(x) - log P(x_low)
    log_probability = np.where(feasible, log_probability, -np.inf)
    log_probability -= log_probability.max(axis=1, keepdims=True)
    probability = np.exp(log_probability)
    return probability / probability.sum(axis=1, keepdims=True)


def full_ranking_tie_metrics(distance_counts: np.ndarray, relevant_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Return expected, worst and best AP over the full ranking from per-distance histograms.

    ``distance_counts`` and ``relevant_counts`` are ``[Q, K + 1]``. Over the full ranking
    every relevant item is retrieved, so both normalisers equal the number of relevant
    items R, and a query with R = 0 has AP 0.
    """
    distance_counts = distance_counts.astype(np.int64)
    relevant_counts = relevant_counts.astype(np.int64)
    harmonic = harmonic_numbers(int(distance_counts.sum(axis=1).max()))
    preceding = np.cumsum(distance_counts, axis=1) - distance_counts
    preceding_relevant = np.cumsum(relevant_counts, axis=1) - relevant_counts
    num_relevant = relevant_counts.sum(axis=1)

    expected = expected_group_contribution(preceding, preceding_relevant, distance_counts, relevant_counts, harmonic)
    best = relevant_first_contribution(preceding, preceding_relevant, relevant_counts, harmonic)
    worst = relevant_last_contribution(preceding, preceding_relevant, distance_counts, relevant_counts, harmonic)
    return {
        "ap_expected": safe_divide(expected.sum(axis=1), num_relevant),
        "ap_worst": safe_divide(worst.sum(axis=1), num_relevant),
        "ap_best": safe_divide(best.sum(axis=1), num_relevant),
    }


def radius_metrics(within: np.ndarray, relevant_within: np.ndarray, num_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Return precision and recall within a Hamming radius, per query.

    A query with no database item within the radius has precision 0 (and is flagged in
    ``no_hit``); a query without relevant items has recall 0. Both still count in the
    means.
    """
    return {
        "precision": safe_divide(relevant_within, within),
        "recall": safe_divide(relevant_within, num_relevant),
        "no_hit": (within == 0).astype(np.float64),
    }
