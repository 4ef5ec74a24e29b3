"""Count parameters and multiply-adds of the Table 2 networks and time their inference on CPU.

Table 2 of the MobileNet hashing paper compares its backbone with other ImageNet networks, with
the figures of the MobileNet paper (Howard et al., 2017, arXiv:1704.04861). This script counts
the same quantities from this project's Flax modules, each with a 1000-class ImageNet classifier
(`mvs_jax.complexity.reference_network`), at a square input, and measures inference images/s at
a fixed batch size with random weights and random inputs.

  python experiments/table2.py --output runs/table2 [--input-size 224] [--batch-size 32]
      [--min-seconds 3] [--backbones mobilenet_v1,alexnet,...] [--skip-timing]

Writes OUTPUT/table2.csv and OUTPUT/table2.md, and prints the Markdown table.
"""

import argparse
import csv
import logging
import platform
import sys
import time
from pathlib import Path

import jax

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mvs_jax import complexity  # noqa: E402

# The MobileNet paper's figures, as Table 2 of the MobileNet hashing paper quotes them:
# (display name, parameters, multiply-adds per image).
PAPER_TABLE2: dict[str, tuple[str, float, float]] = {
    "alexnet": ("AlexNet", 60e6, 720e6),
    "squeezenet_v1_0": ("SqueezeNet", 1.25e6, 1700e6),
    "googlenet": ("GoogLeNet", 6.8e6, 1550e6),
    "vgg_16": ("VGG-16", 138e6, 15300e6),
    "mobilenet_v1": ("1.0 MobileNet-224", 4.2e6, 569e6),
}
# Networks whose inference is slow enough on CPU that one timed batch is enough.
ONE_TIMED_BATCH = ("vgg_16",)

CSV_FIELDS = ("backbone", "name", "input_size", "parameters", "paper_parameters",
              "parameters_difference", "multiply_adds", "paper_multiply_adds",
              "multiply_adds_difference", "float32_mb", "images_per_second", "timed_batches")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/table2",
                        help="Folder for table2.csv and table2.md (default %(default)s).")
    parser.add_argument("--input-size", type=int, default=224,
                        help="Square input size in pixels (default %(default)s).")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="Images per timed inference call (default %(default)s).")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="Time each network for at least this many seconds after a warm-up "
                        "call, except VGG-16, which gets one timed batch (default %(default)s).")
    parser.add_argument("--backbones", default=",".join(PAPER_TABLE2),
                        help="Comma-separated backbone names (default: all of Table 2).")
    parser.add_argument("--skip-timing", action="store_true",
                        help="Count parameters and multiply-adds only.")
    return parser.parse_args(argv)


def measure_throughput(backbone: str, input_size: int, batch_size: int,
                       min_seconds: float, max_batches: int | None) -> tuple[float, int]:
    """Return (images/s, timed batches) of jitted inference after one warm-up call.

    MobileNet v1 uses the "shift" depthwise implementation, the faster one on CPU.
    """
    module = complexity.reference_network(backbone, depthwise="shift")
    images = jax.random.normal(jax.random.key(1), (batch_size, input_size, input_size, 3))
    variables = jax.jit(lambda x: module.init(jax.random.key(0), x, train=False))(images[:1])
    apply = jax.jit(lambda v, x: module.apply(v, x, train=False))

    start = time.perf_counter()
    jax.block_until_ready(apply(variables, images))
    logging.info("%s: compiled and ran the first batch in %.1f s.", backbone,
                 time.perf_counter() - start)

    batches = 0
    start = time.perf_counter()
    while True:
        jax.block_until_ready(apply(variables, images))
        batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or (max_batches is not None and batches >= max_batches):
            return batches * batch_size / elapsed, batches


def measure_row(backbone: str, args: argparse.Namespace) -> dict:
    """Count one network and, unless timing is skipped, time it; return its CSV row."""
    name, paper_parameters, paper_multiply_adds = PAPER_TABLE2[backbone]
    counts = complexity.measure_complexity(complexity.reference_network(backbone),
                                           args.input_size)
    row = {
        "backbone": backbone, "name": name, "input_size": args.input_size,
        "parameters": counts.parameters, "paper_parameters": int(paper_parameters),
        "parameters_difference": counts.parameters / paper_parameters - 1,
        "multiply_adds": counts.multiply_adds, "paper_multiply_adds": int(paper_multiply_adds),
        "multiply_adds_difference": counts.multiply_adds / paper_multiply_adds - 1,
        "float32_mb": counts.float32_megabytes, "images_per_second": None, "timed_batches": 0,
    }
    if not args.skip_timing:
        max_batches = 1 if backbone in ONE_TIMED_BATCH else None
        throughput, batches = measure_throughput(
            backbone, args.input_size, args.batch_size, args.min_seconds, max_batches)
        row.update(images_per_second=throughput, timed_batches=batches)
    logging.info("%s: %d parameters, %d multiply-adds, %s images/s.", backbone,
                 row["parameters"], row["multiply_adds"], row["images_per_second"])
    return row


def markdown_table(rows: list[dict], batch_size: int) -> str:
    """Return the paper's figures beside ours as a Markdown table."""
    lines = [
        f"| Network | Params, paper (M) | Params, ours (M) | Diff. | Mult-adds, paper (M) "
        f"| Mult-adds, ours (M) | Diff. | float32 size (MB) | Inference images/s (batch "
        f"{batch_size}) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        speed = row["images_per_second"]
        speed_cell = "–" if speed is None else f"{speed:.1f}"
        if row["timed_batches"] == 1:
            speed_cell += " (1 batch)"
        lines.append(
            f"| {row['name']} | {row['paper_parameters'] / 1e6:g} | {row['parameters'] / 1e6:.3f} "
            f"| {100 * row['parameters_difference']:+.1f}% | {row['paper_multiply_adds'] / 1e6:g} "
            f"| {row['multiply_adds'] / 1e6:.1f} | {100 * row['multiply_adds_difference']:+.1f}% "
            f"| {row['float32_mb']:.1f} | {speed_cell} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    backbones = [name.strip() for name in args.backbones.split(",") if name.strip()]
    unknown = sorted(set(backbones) - set(PAPER_TABLE2))
    if unknown:
        raise ValueError(
            f"No Table 2 figures for backbones {unknown}; valid: {list(PAPER_TABLE2)}.")
    logging.info("jax %s on %s, %s, %d CPU devices.", jax.__version__, platform.machine(),
                 jax.default_backend(), jax.local_device_count())

    rows = [measure_row(backbone, args) for backbone in backbones]

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "table2.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(rows, args.batch_size)
    (output / "table2.md").write_text(
        f"Input {args.input_size}x{args.input_size}, 1000-class classifier, jax "
        f"{jax.__version__} ({jax.default_backend()}).\n\n{table}\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
