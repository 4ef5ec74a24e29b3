"""Hamming-space retrieval for binary hash codes: packing, exact top-k search, metrics.

Public API:

* ``pack_codes`` / ``unpack_codes``: {0, 1} codes to uint32 words and back.
* ``hamming_top_k``: chunked XOR + popcount search; at equal distance the lower
  database index ranks first.
* ``evaluate``: MAP@k (deterministic, tie-aware, worst and best), precision and
  recall at k and within a Hamming radius, and optionally MAP over the full ranking.
* ``precision_recall_curve``: mean precision and recall within radii 0..K.

``reference`` contains slow plain-loop versions for tests and shares no code with
the fast path.
"""

from mvs_jax.retrieval.evaluate import evaluate, precision_recall_curve
from mvs_jax.retrieval.metrics import NORMALIZERS
from mvs_jax.retrieval.packing import pack_codes, unpack_codes
from mvs_jax.retrieval.search import hamming_top_k

__all__ = [
    "NORMALIZERS",
    "evaluate",
    "hamming_top_k",
    "pack_codes",
    "precision_recall_curve",
    "unpack_codes",
]
