"""Evaluate the traditional hashing baselines on CIFAR-10: LSH, PCA hashing, ITQ and VHB.

LSH, PCA hashing and ITQ learn codes from the pooled features of the ImageNet MobileNet v1
(width 1.0, TF-slim frozen graph, ReLU6), with the 32x32 images upscaled on the fly to
--feature-size pixels. The codes of the 10,000 test images (queries) are ranked against the
50,000 training images (database, also the training set of the hash functions) by
`retrieval.evaluate`. Features are extracted once and cached as .npy under OUTPUT/features.

VHB hashes SIFT descriptors of the raw images upscaled to 128x128 and ranks database images by
matching descriptors (`mvs_jax.baselines.vhb`). It runs on a class-balanced subset: by default
1,000 test queries against 10,000 training images, with the Hamming radius of the descriptor
match chosen per code length on 200 further training images used as validation queries.

  python experiments/baselines.py --output runs/baselines [--bits 16,32,64]
      [--methods lsh,pca,itq,vhb] [--data-dir ~/tensorflow_datasets]

Writes OUTPUT/results.csv with the columns method, bits, map@100, map@100_tie_aware,
map@100_worst and map@100_best, the column layout of the Table 3 rows. Also writes
OUTPUT/results.md and OUTPUT/run_info.json (settings, subset sizes, chosen radii and timings).
"""

import argparse
import csv
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from configs import default  # noqa: E402
from mvs_jax import baselines, input_pipeline, pretrained, retrieval  # noqa: E402
from mvs_jax.baselines import vhb  # noqa: E402
from mvs_jax.data.loading import get_builder, load_split  # noqa: E402
from mvs_jax.models import INPUT_NORMALIZATION, MobileNetV1  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"
K = 100
CSV_FIELDS = ("method", "bits", f"map@{K}", f"map@{K}_tie_aware", f"map@{K}_worst",
              f"map@{K}_best")
LINEAR_METHODS = ("lsh", "pca", "itq")
METHOD_NAMES = {"lsh": "LSH", "pca": "PCA hashing", "itq": "ITQ", "vhb": "VHB"}

# Table 3 of the MobileNet hashing paper: MAP@100 (%) at 64 bits on its location dataset.
PAPER_64_BITS = {"vhb": 19.36, "ssfs": 20.22}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/baselines",
                        help="Folder for the results and the feature cache (default %(default)s).")
    parser.add_argument("--methods", default="lsh,pca,itq,vhb",
                        help="Comma-separated methods among lsh, pca, itq, vhb.")
    parser.add_argument("--bits", default="16,32,64", help="Comma-separated code lengths.")
    parser.add_argument("--data-root", default=str(SHARED_DATA / "cifar10_jpeg.tar.gz"),
                        help="CIFAR-10 image folder or archive (default %(default)s).")
    parser.add_argument("--data-dir", default="~/tensorflow_datasets",
                        help="TFDS data_dir where the prepared dataset and decoded arrays live.")
    parser.add_argument("--weights",
                        default=str(SHARED_DATA / "weights" /
                                    "mobilenet_v1_1.0_224_imagenet_frozen_graph.pb"),
                        help="MobileNet v1 1.0 frozen graph (default %(default)s).")
    parser.add_argument("--feature-size", type=int, default=64,
                        help="Input size in pixels of the feature extractor (default %(default)s).")
    parser.add_argument("--batch-size", type=int, default=250,
                        help="Images per feature-extraction call (default %(default)s).")
    parser.add_argument("--itq-iterations", type=int, default=50,
                        help="ITQ rotation updates (default %(default)s).")
    parser.add_argument("--vhb-queries-per-class", type=int, default=100,
                        help="Test images per class used as VHB queries (default %(default)s).")
    parser.add_argument("--vhb-database-per-class", type=int, default=1000,
                        help="Training images per class in the VHB database (default %(default)s).")
    parser.add_argument("--vhb-validation-per-class", type=int, default=20,
                        help="Further training images per class that choose VHB's Hamming "
                        "radius (default %(default)s).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of LSH, ITQ and the VHB subsets (default %(default)s).")
    return parser.parse_args(argv)


# --- Data and features -----------------------------------------------------------------------


def load_cifar(data_root: str, data_dir: str) -> tuple:
    """Return the CIFAR-10 (train, test) splits at 32x32 through the project's folder builder."""
    config = default.get_config()
    with config.unlocked():
        config.data.root = data_root
        config.data.data_dir = data_dir
    builder = get_builder(config)
    return load_split(builder, "train", 32), load_split(builder, "test", 32)


def make_feature_extractor(weights: str, feature_size: int):
    """Return a jitted uint8 images -> pooled ImageNet MobileNet v1 features [N, 1024] function."""
    model = MobileNetV1(width=1.0, activation="relu6")
    variables = model.init(jax.random.key(0), jnp.zeros((1, feature_size, feature_size, 3)),
                           train=False)
    params, batch_stats = pretrained.load_backbone(
        weights, "tf_frozen_graph", variables["params"], variables["batch_stats"],
        activation="relu6")
    normalization = INPUT_NORMALIZATION["mobilenet_v1"]

    @jax.jit
    def extract(images: jax.Array) -> jax.Array:
        inputs = input_pipeline.preprocess(images, feature_size, normalization)
        return model.apply({"params": params, "batch_stats": batch_stats}, inputs, train=False)

    return extract


def extract_features(extract, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Run `extract` over `images` in batches; the last batch is padded, and the padding dropped."""
    features = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        padded = np.zeros((batch_size,) + images.shape[1:], images.dtype)
        padded[:len(batch)] = batch
        features.append(np.asarray(extract(padded))[:len(batch)])
    return np.concatenate(features)


def cached_features(args: argparse.Namespace, splits: dict, timings: dict) -> dict:
    """Return {split: features}, loading OUTPUT/features/*.npy or extracting and saving them."""
    folder = Path(args.output) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    extract = None
    features = {}
    for name, split in splits.items():
        path = folder / f"mobilenet_v1_1.0_relu6_{args.feature_size}px_{name}.npy"
        if path.exists():
            features[name] = np.load(path)
            if len(features[name]) == len(split):
                logging.info("Loaded %s features from %s.", name, path)
                continue
            logging.warning("%s has %d rows but the split has %d images; extracting again.",
                            path, len(features[name]), len(split))
        if extract is None:
            extract = make_feature_extractor(args.weights, args.feature_size)
        start = time.perf_counter()
        features[name] = extract_features(extract, split.images, args.batch_size)
        timings[f"features_{name}_s"] = time.perf_counter() - start
        logging.info("Extracted %s features %s in %.0f s.", name, features[name].shape,
                     timings[f"features_{name}_s"])
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, features[name])
        temporary.replace(path)
    return features


# --- Linear baselines -------------------------------------------------------------------------


def metric_row(method: str, bits: int, metrics: dict) -> dict:
    row = {"method": method, "bits": bits}
    for field in CSV_FIELDS[2:]:
        row[field] = metrics[field]
    return row


def run_linear(method: str, bits: int, features: dict, splits: dict,
               args: argparse.Namespace) -> dict:
    """Fit one linear baseline on the training features and evaluate test against train."""
    start = time.perf_counter()
    if method == "itq":
        hash_function = baselines.fit_itq(features["train"], bits, args.itq_iterations,
                                          seed=args.seed)
    else:
        hash_function = baselines.fit(method, features["train"], bits, seed=args.seed)
    database_codes = hash_function.encode(features["train"])
    query_codes = hash_function.encode(features["test"])
    metrics = retrieval.evaluate(query_codes, splits["test"].labels, database_codes,
                                 splits["train"].labels, k=K)
    logging.info("%s %d bits: map@%d %.4f (tie-aware %.4f) in %.1f s.", method, bits, K,
                 metrics[f"map@{K}"], metrics[f"map@{K}_tie_aware"],
                 time.perf_counter() - start)
    return metric_row(method, bits, metrics)


# --- VHB --------------------------------------------------------------------------------------


def per_class_subsets(labels: np.ndarray, counts: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Return disjoint index arrays with counts[i] random images of every class each."""
    rng = np.random.default_rng(seed)
    subsets = [[] for _ in counts]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < sum(counts):
            raise ValueError(f"Class {label} has {len(members)} images but the VHB subsets "
                             f"need {sum(counts)}; lower the --vhb-*-per-class counts.")
        offset = 0
        for subset, count in zip(subsets, counts):
            subset.append(members[offset:offset + count])
            offset += count
    return [np.sort(np.concatenate(subset)) for subset in subsets]


def cached_descriptors(path: Path, images: np.ndarray) -> vhb.LocalDescriptors:
    if path.exists():
        with np.load(path) as stored:
            if len(stored["counts"]) == len(images):
                return vhb.LocalDescriptors(stored["descriptors"], stored["counts"])
    descriptors = vhb.extract_sift(images)
    np.savez(path, descriptors=descriptors.descriptors, counts=descriptors.counts)
    return descriptors


def run_vhb(bits_list: list[int], splits: dict, args: argparse.Namespace,
            info: dict) -> list[dict]:
    """Evaluate VHB at each code length on the class-balanced subsets."""
    train_labels = splits["train"].labels
    test_labels = splits["test"].labels
    database, validation = per_class_subsets(
        train_labels, (args.vhb_database_per_class, args.vhb_validation_per_class), args.seed)
    (queries,) = per_class_subsets(test_labels, (args.vhb_queries_per_class,), args.seed)

    folder = Path(args.output) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    suffix = f"sift{vhb.DESCRIPTOR_IMAGE_SIZE}_seed{args.seed}"
    database_descriptors = cached_descriptors(
        folder / f"{suffix}_database_{len(database)}.npz", splits["train"].images[database])
    validation_descriptors = cached_descriptors(
        folder / f"{suffix}_validation_{len(validation)}.npz", splits["train"].images[validation])
    query_descriptors = cached_descriptors(
        folder / f"{suffix}_queries_{len(queries)}.npz", splits["test"].images[queries])
    info["timings"]["vhb_descriptors_s"] = time.perf_counter() - start
    info["vhb"] = {
        "num_queries": len(queries), "num_database": len(database),
        "num_validation_queries": len(validation),
        "mean_descriptors_per_database_image": float(database_descriptors.counts.mean()),
        "database_images_without_descriptors": int((database_descriptors.counts == 0).sum()),
        "radius": {}, "validation_map_tie_aware": {},
    }

    rows = []
    for bits in bits_list:
        start = time.perf_counter()
        hash_function = vhb.fit_descriptor_hash(database_descriptors, bits)
        database_codes = vhb.encode_descriptors(hash_function, database_descriptors)

        # Choose the radius on training images outside the database, never on the queries. At
        # 64 bits the best radius on the default subsets lay above bits / 4, so radii run to
        # bits / 2.
        radii = list(range(bits // 2 + 1))
        validation_scores = vhb.bag_of_hash_bits_scores(
            vhb.encode_descriptors(hash_function, validation_descriptors), database_codes, radii)
        validation_map = [
            baselines.evaluate_scores(scores, train_labels[validation], train_labels[database],
                                      k=K)[f"map@{K}_tie_aware"]
            for scores in validation_scores]
        radius = radii[int(np.argmax(validation_map))]

        query_scores = vhb.bag_of_hash_bits_scores(
            vhb.encode_descriptors(hash_function, query_descriptors), database_codes, [radius])[0]
        metrics = baselines.evaluate_scores(query_scores, test_labels[queries],
                                            train_labels[database], k=K)
        info["vhb"]["radius"][bits] = radius
        info["vhb"]["validation_map_tie_aware"][bits] = dict(zip(radii, validation_map))
        info["timings"][f"vhb_{bits}_s"] = time.perf_counter() - start
        logging.info("vhb %d bits: radius %d, map@%d %.4f (tie-aware %.4f) in %.1f s.", bits,
                     radius, K, metrics[f"map@{K}"], metrics[f"map@{K}_tie_aware"],
                     info["timings"][f"vhb_{bits}_s"])
        rows.append(metric_row("vhb", bits, metrics))
    return rows


# --- Reports ----------------------------------------------------------------------------------


def markdown_table(rows: list[dict], bits_list: list[int], info: dict) -> str:
    """Return the results as a Markdown table, one row per method and one column per length."""
    by_run = {(row["method"], row["bits"]): row for row in rows}
    lines = [
        f"MAP@{K} in %: tie-aware value (deterministic value, ties broken by lower database "
        "index) [worst, best over the orders of tied items].", "",
        "| Method | Input | " + " | ".join(f"{bits} bits" for bits in bits_list)
        + " | Paper, 64 bits (location dataset) |",
        "|---|---|" + "---|" * len(bits_list) + "---|",
    ]
    features = f"MobileNet v1 features, {info['feature_size']} px"
    inputs = {method: features for method in LINEAR_METHODS}
    if "vhb" in info:
        inputs["vhb"] = (f"SIFT at {vhb.DESCRIPTOR_IMAGE_SIZE} px, {info['vhb']['num_queries']} "
                         f"queries x {info['vhb']['num_database']} database")
    methods = [method for method in (*LINEAR_METHODS, "vhb")
               if any(key[0] == method for key in by_run)]
    for method in methods:
        cells = [METHOD_NAMES[method], inputs[method]]
        for bits in bits_list:
            row = by_run.get((method, bits))
            if row is None:
                cells.append("–")
                continue
            cells.append(f"{100 * row[f'map@{K}_tie_aware']:.2f} ({100 * row[f'map@{K}']:.2f}) "
                         f"[{100 * row[f'map@{K}_worst']:.2f}, {100 * row[f'map@{K}_best']:.2f}]")
        paper = PAPER_64_BITS.get(method)
        cells.append("–" if paper is None else f"{paper:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| SSFS | not implemented (no public description detailed enough) | "
                 + " | ".join("–" for _ in bits_list) + f" | {PAPER_64_BITS['ssfs']:.2f} |")
    return "\n".join(lines) + "\n"


def write_reports(rows: list[dict], bits_list: list[int], info: dict, output: Path) -> None:
    with open(output / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (output / "results.md").write_text(markdown_table(rows, bits_list, info), encoding="utf-8")
    (output / "run_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    logging.info("Wrote %s, %s and %s.", output / "results.csv", output / "results.md",
                 output / "run_info.json")


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    methods = parse_list(args.methods)
    unknown = sorted(set(methods) - set(METHOD_NAMES))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; valid: {sorted(METHOD_NAMES)}.")
    bits_list = [int(bits) for bits in parse_list(args.bits)]
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    info = {"command": " ".join(sys.argv), "machine": platform.platform(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "feature_size": args.feature_size, "seed": args.seed, "timings": {}}
    run_start = time.perf_counter()

    train, test = load_cifar(args.data_root, args.data_dir)
    splits = {"train": train, "test": test}
    logging.info("Loaded %d training and %d test images.", len(train), len(test))

    rows = []
    linear = [method for method in methods if method in LINEAR_METHODS]
    if linear:
        features = cached_features(args, splits, info["timings"])
        for bits in bits_list:
            for method in linear:
                rows.append(run_linear(method, bits, features, splits, args))
    if "vhb" in methods:
        rows.extend(run_vhb(bits_list, splits, args, info))

    info["timings"]["total_s"] = time.perf_counter() - run_start
    write_reports(rows, bits_list, info, output)
    print(markdown_table(rows, bits_list, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
