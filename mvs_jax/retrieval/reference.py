"""Slow reference for the retrieval metrics, in plain Python loops, for tests.

Nothing here is shared with the fast path (no NumPy formulas, no JAX, no closed forms
with harmonic numbers). Every value is computed from its definition with exact
rational arithmetic (fractions.Fraction):

* The ranking sorts items by (distance, index).
* Let x be the number of relevant items that the tie group straddling the cut puts
  inside it. For each feasible x, explicit rankings place each group's relevant items
  first or last. Best and worst AP@k are the maximum and minimum of their AP over x.
* Tie-aware values weight each x by its hypergeometric probability. Given x, the
  expectation of each position's term follows by linearity. Position i of a randomly
  ordered group with r relevant items in s slots is relevant with probability r / s,
  and positions i and j both are with probability r (r - 1) / (s (s - 1)).

Use only small inputs: the cost grows with Q * N * k.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb
from typing import Any, Sequence


def pack_code(bits: Sequence[int]) -> list[int]:
    """Pack one code into 32-bit words, bit i into word i // 32 at position i % 32."""
    words = [0] * ((len(bits) + 31) // 32)
    for position, bit in enumerate(bits):
        if bit:
            words[position // 32] |= 1 << (position % 32)
    return words


def hamming_distance(first: Sequence[int], second: Sequence[int]) -> int:
    distance = 0
    for a, b in zip(first, second):
        if int(a) != int(b):
            distance += 1
    return distance


def is_relevant(query_label: Any, database_label: Any) -> bool:
    """Same class id, or, for multi-hot vectors, at least one shared label."""
    if isinstance(query_label, (list, tuple)):
        for q, d in zip(query_label, database_label):
            if int(q) == 1 and int(d) == 1:
                return True
        return False
    return int(query_label) == int(database_label)


def _as_lists(array: Any) -> list:
    return array.tolist() if hasattr(array, "tolist") else list(array)


def ranking(query_code: Sequence[int], database_codes: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Return (distance, index) for every database item, sorted by distance and then index."""
    pairs = [(hamming_distance(query_code, code), index) for index, code in enumerate(database_codes)]
    return sorted(pairs)


def top_k(query_codes: Any, database_codes: Any, k: int) -> tuple[list[list[int]], list[list[int]]]:
    """Return the distances and indices of the k nearest items of each query."""
    database_codes = _as_lists(database_codes)
    distances, indices = [], []
    for query_code in _as_lists(query_codes):
        ranked = ranking(query_code, database_codes)[:k]
        distances.append([distance for distance, _ in ranked])
        indices.append([index for _, index in ranked])
    return distances, indices


def _average_precision(relevance: Sequence[int], denominator: int) -> Fraction:
    """AP of a ranked 0/1 list: sum of precision@i at relevant positions, divided by denominator."""
    if denominator == 0:
        return Fraction(0)
    total = Fraction(0)
    hits = 0
    for position, relevant in enumerate(relevance, start=1):
        if relevant:
            hits += 1
            total += Fraction(hits, position)
    return total / denominator


def _ordered_relevance(groups: list[tuple[int, int]], relevant_first: bool) -> list[int]:
    """Expand (slots, relevant) groups into one 0/1 list, relevant items first or last in each group."""
    relevance = []
    for slots, relevant in groups:
        if relevant_first:
            relevance += [1] * relevant + [0] * (slots - relevant)
        else:
            relevance += [0] * (slots - relevant) + [1] * relevant
    return relevance


def _expected_numerator(groups: list[tuple[int, int]]) -> Fraction:
    """E[sum_i rel_i * hits_i / i] when each (slots, relevant) group is shuffled uniformly."""
    total = Fraction(0)
    position = 0
    relevant_before = 0
    for slots, relevant in groups:
        single = Fraction(relevant, slots)
        pair = Fraction(relevant * (relevant - 1), slots * (slots - 1)) if slots > 1 else Fraction(0)
        for offset in range(1, slots + 1):
            position += 1
            expected = single * (relevant_before + 1)
            for _ in range(1, offset):
                expected += pair
            total += expected / position
        relevant_before += relevant
    return total


def _query_metrics(
    ranked: list[tuple[int, int]], relevance: list[int], cut: int, normalizer: str
) -> dict[str, Fraction]:
    """Deterministic, expected, worst and best AP / precision / recall at ``cut`` for one query."""
    num_relevant = sum(relevance)
    listed = [relevance[index] for _, index in ranked[:cut]]

    # Tie groups in ranking order, as (distance, size, relevant count).
    groups: list[list[int]] = []
    for distance, index in ranked:
        if groups and groups[-1][0] == distance:
            groups[-1][1] += 1
            groups[-1][2] += relevance[index]
        else:
            groups.append([distance, 1, relevance[index]])

    # Groups wholly inside the cut, and the one that straddles it (if any).
    inside: list[tuple[int, int]] = []
    straddling = None
    listed_count = 0
    for _, size, relevant in groups:
        if listed_count == cut:
            break
        if listed_count + size <= cut:
            inside.append((size, relevant))
            listed_count += size
        else:
            straddling = (cut - listed_count, size, relevant)
            listed_count = cut

    def denominator(retrieved_relevant: int) -> int:
        return retrieved_relevant if normalizer == "retrieved" else min(cut, num_relevant)

    relevant_inside = sum(relevant for _, relevant in inside)
    if straddling is None:
        outcomes = [(Fraction(1), inside, relevant_inside)]
    else:
        slots, size, relevant = straddling
        outcomes = []
        for x in range(0, min(relevant, slots) + 1):
            ways = comb(relevant, x) * comb(size - relevant, slots - x)
            if ways:
                probability = Fraction(ways, comb(size, slots))
                outcomes.append((probability, inside + [(slots, x)], relevant_inside + x))

    values = {
        "ap": _average_precision(listed, denominator(sum(listed))),
        "precision": Fraction(sum(listed), cut),
        "recall": Fraction(sum(listed), num_relevant) if num_relevant else Fraction(0),
    }
    expected_ap = Fraction(0)
    expected_retrieved = Fraction(0)
    best_ap, worst_ap, retrieved_counts = [], [], []
    for probability, layout, retrieved_relevant in outcomes:
        den = denominator(retrieved_relevant)
        if den:
            expected_ap += probability * _expected_numerator(layout) / den
        expected_retrieved += probability * retrieved_relevant
        best_ap.append(_average_precision(_ordered_relevance(layout, True), den))
        worst_ap.append(_average_precision(_ordered_relevance(layout, False), den))
        retrieved_counts.append(retrieved_relevant)

    values.update(ap_expected=expected_ap, ap_worst=min(worst_ap), ap_best=max(best_ap))
    for name, count in (
        ("expected", expected_retrieved),
        ("worst", min(retrieved_counts)),
        ("best", max(retrieved_counts)),
    ):
        values[f"precision_{name}"] = Fraction(count) / cut
        values[f"recall_{name}"] = Fraction(count) / num_relevant if num_relevant else Fraction(0)
    values["num_relevant"] = Fraction(num_relevant)
    return values


def evaluate(
    query_codes: Any,
    query_labels: Any,
    database_codes: Any,
    database_labels: Any,
    *,
    k: int | None = 100,
    radius: int = 2,
    normalizer: str = "retrieved",
    full_ranking: bool = False,
) -> dict[str, float]:
    """Return the same keys and values as ``mvs_jax.retrieval.evaluate``, slowly."""
    query_codes = _as_lists(query_codes)
    database_codes = _as_lists(database_codes)
    query_labels = _as_lists(query_labels)
    database_labels = _as_lists(database_labels)
    num_database = len(database_codes)
    cut = num_database if k is None else min(k, num_database)
    suffix = "all" if k is None else str(k)

    sums: dict[str, Fraction] = {}

    def add(name: str, value: Fraction) -> None:
        sums[name] = sums.get(name, Fraction(0)) + value

    without_relevant = 0
    for query_code, query_label in zip(query_codes, query_labels):
        ranked = ranking(query_code, database_codes)
        relevance = [int(is_relevant(query_label, label)) for label in database_labels]
        at_cut = _query_metrics(ranked, relevance, cut, normalizer)
        without_relevant += at_cut["num_relevant"] == 0

        for name, source in (("map", "ap"), ("precision", "precision"), ("recall", "recall")):
            add(f"{name}@{suffix}", at_cut[source])
            add(f"{name}@{suffix}_tie_aware", at_cut[f"{source}_expected"])
            add(f"{name}@{suffix}_worst", at_cut[f"{source}_worst"])
            add(f"{name}@{suffix}_best", at_cut[f"{source}_best"])

        within = [index for distance, index in ranked if distance <= radius]
        relevant_within = sum(relevance[index] for index in within)
        add(f"precision@r{radius}", Fraction(relevant_within, len(within)) if within else Fraction(0))
        num_relevant = sum(relevance)
        add(f"recall@r{radius}", Fraction(relevant_within, num_relevant) if num_relevant else Fraction(0))
        add(f"no_hit_fraction@r{radius}", Fraction(int(not within)))

        if full_ranking:
            whole = _query_metrics(ranked, relevance, num_database, normalizer)
            add("map_full", whole["ap"])
            add("map_full_tie_aware", whole["ap_expected"])
            add("map_full_worst", whole["ap_worst"])
            add("map_full_best", whole["ap_best"])

    num_queries = len(query_codes)
    results = {name: float(total / num_queries) for name, total in sums.items()}
    results["num_queries"] = float(num_queries)
    results["num_queries_without_relevant"] = float(without_relevant)
    return results


def precision_recall_curve(
    query_codes: Any, query_labels: Any, database_codes: Any, database_labels: Any
) -> dict[str, list[float]]:
    """Return mean precision, recall and no-hit fraction within each radius 0..K."""
    query_codes = _as_lists(query_codes)
    database_codes = _as_lists(database_codes)
    query_labels = _as_lists(query_labels)
    database_labels = _as_lists(database_labels)
    num_bits = len(query_codes[0])
    curve: dict[str, list[float]] = {"radius": [], "precision": [], "recall": [], "no_hit_fraction": []}
    for radius in range(num_bits + 1):
        precision = recall = no_hit = Fraction(0)
        for query_code, query_label in zip(query_codes, query_labels):
            relevance = [int(is_relevant(query_label, label)) for label in database_labels]
            within = [
                index for index, code in enumerate(database_codes) if hamming_distance(query_code, code) <= radius
            ]
            hits = sum(relevance[index] for index in within)
            precision += Fraction(hits, len(within)) if within else 0
            recall += Fraction(hits, sum(relevance)) if sum(relevance) else 0
            no_hit += int(not within)
        count = len(query_codes)
        curve["radius"].append(float(radius))
        curve["precision"].append(float(precision / count))
        curve["recall"].append(float(recall / count))
        curve["no_hit_fraction"].append(float(no_hit / count))
    return curve
