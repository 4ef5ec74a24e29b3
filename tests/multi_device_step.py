"""Run one train step on 4 and on 1 CPU devices and print the differences as JSON.

Started by the tests in a subprocess, because the device count is fixed at JAX start-up:
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multi_device_step.py
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import default  # noqa: E402
from mvs_jax import training  # noqa: E402
from mvs_jax.models import build_model  # noqa: E402


def run_step(devices, config, images, labels):
    """Return (loss, params, batch_stats) after one step on a mesh over `devices`."""
    model = build_model(config, num_classes=5)
    optimizer = training.make_optimizer(config)
    mesh = training.make_mesh(devices)
    state, state_sharding = training.replicate_state(
        training.create_train_state(model, optimizer, config), mesh)
    step = training.make_train_step(model, optimizer, config, mesh, state_sharding)
    data = NamedSharding(mesh, PartitionSpec(training.DATA_AXIS))
    rng = jax.random.key(7)
    state, metrics = step(state, jax.device_put(images, data), jax.device_put(labels, data), rng)
    return float(metrics["loss"]), jax.device_get(state.params), jax.device_get(state.batch_stats)


def main():
    assert jax.device_count() == 4, f"expected 4 CPU devices, found {jax.device_count()}"
    config = default.get_config("16")
    with config.unlocked():
        config.model.width = 0.25
        config.batch_size = 16
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, (16,), dtype=np.int32)

    loss4, params4, stats4 = run_step(jax.devices(), config, images, labels)
    loss1, params1, stats1 = run_step(jax.devices()[:1], config, images, labels)

    def max_difference(a, b):
        return max(float(np.max(np.abs(x - y))) for x, y in
                   zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))

    print(json.dumps({"loss_4": loss4, "loss_1": loss1,
                      "params_max_difference": max_difference(params4, params1),
                      "batch_stats_max_difference": max_difference(stats4, stats1)}))


if __name__ == "__main__":
    main()
