"""Class labels and multi-hot label vectors, and the relevance they define.

A database item is relevant to a query when both have the same class label, or, for
multi-hot labels, when they share at least one label. An item whose multi-hot vector
is all zero is relevant to no query.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from mvs_jax.retrieval.packing import pack_codes

CLASS = "class"
MULTI_LABEL = "multi_label"


@dataclasses.dataclass(frozen=True)
class EncodedLabels:
    """Query and database labels in the form the search kernels compare.

    For ``kind == CLASS`` both arrays are int32 class ids ``[Q]`` and ``[N]``, renumbered
    so that equal labels keep equal ids. For ``kind == MULTI_LABEL`` both are multi-hot
    vectors packed into uint32 words, ``[Q, W]`` and ``[N, W]``.
    """

    kind: str
    query: np.ndarray
    database: np.ndarray


def encode_labels(query_labels: Any, database_labels: Any, num_queries: int, num_database: int) -> EncodedLabels:
    """Validate the labels against the code counts and encode them.

    Raises ValueError when the shapes disagree with each other or with the number of
    codes, when class labels are not integers, or when multi-hot labels are not 0/1.
    """
    query_labels = np.asarray(query_labels)
    database_labels = np.asarray(database_labels)
    shapes = f"query_labels has shape {query_labels.shape} and database_labels has shape {database_labels.shape}"

    if query_labels.ndim != database_labels.ndim or query_labels.ndim not in (1, 2):
        raise ValueError(
            f"{shapes}; pass class labels [Q] and [N], or multi-hot labels [Q, L] and [N, L]."
        )
    if query_labels.shape[0] != num_queries or database_labels.shape[0] != num_database:
        raise ValueError(
            f"{shapes}, but there are {num_queries} query codes and {num_database} database "
            "codes; pass one label entry per code."
        )

    if query_labels.ndim == 1:
        return _encode_class_labels(query_labels, database_labels)

    if query_labels.shape[1] != database_labels.shape[1] or query_labels.shape[1] == 0:
        raise ValueError(f"{shapes}; multi-hot labels need the same number L >= 1 of columns.")
    try:
        query_words = pack_codes(query_labels)
        database_words = pack_codes(database_labels)
    except ValueError as error:
        raise ValueError(f"multi-hot labels must contain only 0 and 1: {error}") from None
    return EncodedLabels(MULTI_LABEL, query_words, database_words)


def _encode_class_labels(query_labels: np.ndarray, database_labels: np.ndarray) -> EncodedLabels:
    for name, labels in (("query_labels", query_labels), ("database_labels", database_labels)):
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
            raise ValueError(
                f"{name} has dtype {labels.dtype}; class labels must be integers "
                "(use a [*, L] 0/1 array for multi-hot labels)."
            )

    # Renumbering keeps any integer labels, int64 included, inside int32 for the kernels.
    _, ids = np.unique(np.concatenate([query_labels, database_labels]), return_inverse=True)
    ids = ids.astype(np.int32)
    return EncodedLabels(CLASS, ids[: query_labels.shape[0]], ids[query_labels.shape[0] :])


def relevance_of_items(labels: EncodedLabels, query_rows: np.ndarray, database_indices: np.ndarray) -> np.ndarray:
    """Return bool ``[Q, k]``: is database item ``database_indices[q, j]`` relevant to query ``query_rows[q]``."""
    if labels.kind == CLASS:
        return labels.database[database_indices] == labels.query[query_rows][:, None]
    shared = labels.database[database_indices] & labels.query[query_rows][:, None, :]
    return (shared != 0).any(axis=-1)


def relevance_matrix(kind: str, query_labels: jnp.ndarray, database_labels: jnp.ndarray) -> jnp.ndarray:
    """Return bool ``[Qb, C]`` relevance inside a jitted kernel.

    ``database_labels`` is int32 ``[C]`` for class labels, or uint32 ``[W, C]`` (word
    major, so each word row is contiguous) for multi-hot labels.
    """
    if kind == CLASS:
        return query_labels[:, None] == database_labels[None, :]

    shared = (query_labels[:, 0, None] & database_labels[0][None, :]) != 0
    for word in range(1, database_labels.shape[0]):
        shared = shared | ((query_labels[:, word, None] & database_labels[word][None, :]) != 0)
    return shared
