"""Training throughput (images/s) of the MobileNet hashing network at batch 32.

  python bench/train_throughput.py [--widths 0.25,0.5,1.0] [--sizes 32,96,128,224]
      [--depthwise shift|conv] [--min-seconds S]

Times the jitted train step (forward, backward, SGD update, on-device preprocessing) on random
uint8 images, after one warm-up call that includes compilation. Prints a table of images/s and
its ratio to the PyTorch 2.13 CPU reference measured for the same network on a 2-core machine.
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import default  # noqa: E402
from mvs_jax import training  # noqa: E402
from mvs_jax.models import build_model  # noqa: E402

# images/s of the same network (Table 1 + hash head) with PyTorch 2.13 CPU, 2 cores, batch 32.
PYTORCH_REFERENCE = {
    0.25: {32: 1488, 96: 815, 128: 377, 224: 153},
    0.5: {32: 1059, 96: 394, 128: 223, 224: 44},
    1.0: {32: 504, 96: 139, 128: 57, 224: 10.4},
}


def measure(width: float, size: int, depthwise: str, batch_size: int, min_seconds: float) -> float:
    """Return training images/s for one configuration."""
    config = default.get_config("64")
    with config.unlocked():
        config.model.width = width
        config.model.input_size = size
        config.data.image_size = size
        config.model.depthwise = depthwise
        config.batch_size = batch_size
    model = build_model(config, num_classes=10)
    optimizer = training.make_optimizer(config)
    mesh = training.make_mesh()
    state, state_sharding = training.replicate_state(
        training.create_train_state(model, optimizer, config), mesh)
    step = training.make_train_step(model, optimizer, config, mesh, state_sharding)
    data = NamedSharding(mesh, PartitionSpec(training.DATA_AXIS))
    rng = np.random.default_rng(0)
    images = jax.device_put(rng.integers(0, 256, (batch_size, size, size, 3), np.uint8), data)
    labels = jax.device_put(rng.integers(0, 10, (batch_size,), np.int32), data)
    key = jax.random.key(0)

    state, metrics = step(state, images, labels, key)
    jax.block_until_ready(metrics)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or steps < 3:
        state, metrics = step(state, images, labels, key)
        steps += 1
    jax.block_until_ready(metrics)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="0.25,0.5,1.0")
    parser.add_argument("--sizes", default="32,96,128,224")
    parser.add_argument("--depthwise", default="shift", choices=("shift", "conv"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--min-seconds", type=float, default=10.0,
                        help="Time each configuration for at least this many seconds.")
    args = parser.parse_args()
    widths = [float(w) for w in args.widths.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"JAX {jax.__version__}, {jax.device_count()} {jax.default_backend()} device(s), "
          f"{platform.processor() or platform.machine()}, depthwise={args.depthwise}, "
          f"batch {args.batch_size}")
    header = "| width | " + " | ".join(f"{s} px" for s in sizes) + " |"
    rows, ratios = [], []
    for width in widths:
        values, ratio_row = [], []
        for size in sizes:
            rate = measure(width, size, args.depthwise, args.batch_size, args.min_seconds)
            values.append(f"{rate:.1f}")
            reference = PYTORCH_REFERENCE.get(width, {}).get(size)
            ratio_row.append(f"{rate / reference:.2f}x" if reference else "n/a")
            print(f"width {width} size {size}: {rate:.1f} img/s ({ratio_row[-1]} of PyTorch)",
                  flush=True)
        rows.append(f"| {width} | " + " | ".join(values) + " |")
        ratios.append(f"| {width} | " + " | ".join(ratio_row) + " |")
    separator = "|---|" + "---|" * len(sizes)
    print("\nimages/s\n" + "\n".join([header, separator, *rows]))
    print("\nratio to PyTorch 2.13 CPU\n" + "\n".join([header, separator, *ratios]))


if __name__ == "__main__":
    main()
