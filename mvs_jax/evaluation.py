"""Encode query and database splits into binary codes and measure retrieval quality."""

from typing import Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mvs_jax import input_pipeline, retrieval
from mvs_jax.data.loading import Split
from mvs_jax.training import DATA_AXIS, TrainState


def encode_split(encode_fn: Callable, state: TrainState, split: Split, batch_size: int,
                 mesh: Mesh) -> np.ndarray:
    """Return the {0, 1} codes (uint8 [N, K]) of every example of `split`, in order.

    Batches have a fixed size; the last one is padded and the padding is dropped from the
    output, so no example is left out.
    """
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    codes = []
    for start, (indices, _) in zip(
            range(0, len(split), batch_size),
            input_pipeline.eval_batches(len(split), batch_size, jax.process_index(),
                                        jax.process_count())):
        images = jax.make_array_from_process_local_data(sharding, split.images[indices])
        activations = encode_fn(state, images)
        if jax.process_count() > 1:
            activations = multihost_utils.process_allgather(activations, tiled=True)
        valid = min(batch_size, len(split) - start)
        codes.append((np.asarray(activations)[:valid] >= 0.5).astype(np.uint8))
    return np.concatenate(codes)


def evaluate_retrieval(encode_fn: Callable, state: TrainState, query: Split, database: Split,
                       config: ml_collections.ConfigDict, mesh: Mesh) -> dict[str, float]:
    """Encode both splits and compute MAP@k and the other retrieval metrics by Hamming ranking."""
    batch_size = config.eval.batch_size
    query_codes = encode_split(encode_fn, state, query, batch_size, mesh)
    database_codes = encode_split(encode_fn, state, database, batch_size, mesh)
    metrics = retrieval.evaluate(
        query_codes, query.labels, database_codes, database.labels,
        k=config.eval.k, radius=config.eval.radius)
    metrics["bits_on_database"] = float(database_codes.mean())
    return metrics
