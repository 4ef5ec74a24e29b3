"""Run methods x code lengths, as in Table 3 of the MobileNet hashing paper, and tabulate MAP@k.

"The paper" below is the mobile visual search paper that this project reproduces (MobileNet v1
with a sigmoid hash layer). Its Table 3 reports MAP@100 on a location dataset that is not
public, for VHB, SSFS, DLBH, SSDH and MobileNet + hash layer at 16, 32 and 64 bits.

  python experiments/table3.py --output runs/table3 [--config configs/default.py]
      [--methods paper,dlbh,ssdh,...] [--bits 16,32,64]
      [--override config.num_steps=500 ...] [--method-override dlbh:config.num_steps=60 ...]
      [--print-commands] [--same-dataset-as-paper]

Each run is one `launch.py` process with its own workdir, OUTPUT/<method>_<bits>, and its log in
OUTPUT/<method>_<bits>/launch.log. A run whose workdir holds results.json is skipped, so a
stopped sweep resumes where it stopped, and a run stopped midway resumes from its last
checkpoint. Changed overrides need a new output folder, because finished runs are not redone.
A failed run is reported and the sweep goes on; the exit status is 1 if any run failed.

Writes, from every finished run:
- OUTPUT/results.csv: one row per run;
- OUTPUT/table3.md: the paper's Table 3 beside our numbers, with model sizes;
- OUTPUT/table3.png: tie-aware MAP@k against code length, one line per method.
"""

import argparse
import csv
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import orbax.checkpoint as ocp

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from configs import default  # noqa: E402
from mvs_jax import methods  # noqa: E402
from mvs_jax.models import build_model  # noqa: E402

DEFAULT_METHODS = ("paper", "dlbh", "ssdh", "hashnet", "dpsh", "dsh", "csq", "dpn", "orthohash",
                   "greedyhash")
DEFAULT_BITS = (16, 32, 64)

# Table 3 of the MobileNet hashing paper: MAP@100 in % on its location dataset, at 16/32/64 bits.
# None marks a value that the table does not report.
PAPER_TABLE3: dict[str, dict[int, float | None]] = {
    "VHB": {16: None, 32: None, 64: 19.36},
    "SSFS": {16: None, 32: None, 64: 20.22},
    "DLBH": {16: 59.80, 32: 78.68, 64: 87.15},
    "SSDH": {16: 78.26, 32: 91.82, 64: 92.43},
    "MobileNet + hash layer": {16: 96.66, 32: 97.61, 64: 97.80},
}
PAPER_ROW_OF_METHOD = {"dlbh": "DLBH", "ssdh": "SSDH", "paper": "MobileNet + hash layer"}

# Input sizes of the MobileNet hashing paper (224) and of DLBH's CaffeNet (227), at which the
# paper gives float32 model sizes of 13 MB (MobileNet) and over 230 MB (AlexNet-based methods).
PAPER_INPUT_SIZES = {"mobilenet_v1": 224, "alexnet": 227}

CSV_FIELDS = ("method", "bits", "backbone", "k", "map_tie_aware", "map", "map_worst",
              "map_best", "num_parameters", "size_mb", "steps", "workdir")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/table3",
                        help="Folder for one workdir per run and the tables (default %(default)s).")
    parser.add_argument("--config", default="configs/default.py",
                        help="Dataset config file; ':BITS' is appended per run.")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"Comma-separated method names; valid: {sorted(methods.METHODS)}.")
    parser.add_argument("--bits", default=",".join(map(str, DEFAULT_BITS)),
                        help="Comma-separated code lengths in bits.")
    parser.add_argument("--override", action="append", default=[], metavar="config.FIELD=VALUE",
                        help="Config override for every run, e.g. config.num_steps=500; "
                        "repeat for several.")
    parser.add_argument("--method-override", action="append", default=[],
                        metavar="METHOD:config.FIELD=VALUE",
                        help="Config override for one method's runs, applied after --override, "
                        "e.g. dlbh:config.num_steps=60; repeat for several.")
    parser.add_argument("--print-commands", action="store_true",
                        help="Print one launch.py command per run and exit without running.")
    parser.add_argument("--same-dataset-as-paper", action="store_true",
                        help="State that the config's dataset is the paper's location dataset, "
                        "so the table does not mark the columns as different datasets.")
    return parser.parse_args(argv)


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_bits(text: str) -> list[int]:
    """Parse '16,32,64' into [16, 32, 64]; raise ValueError for a value that is not positive."""
    bits = []
    for item in _split_list(text):
        if not item.isdigit() or int(item) <= 0:
            raise ValueError(f"Invalid code length {item!r} in --bits; expected positive integers "
                             "such as 16,32,64.")
        bits.append(int(item))
    return bits


def parse_methods(text: str) -> list[str]:
    """Parse a comma-separated method list; unknown names raise with the valid names."""
    names = _split_list(text)
    for name in names:
        methods.get_method(name)
    return names


def launch_flag(override: str) -> str:
    """Turn 'config.FIELD=VALUE' (with or without leading '--') into a launch.py flag."""
    text = override.removeprefix("--")
    if not text.startswith("config.") or "=" not in text:
        raise ValueError(f"Invalid override {override!r}; expected config.FIELD=VALUE, e.g. "
                         "config.num_steps=500.")
    return "--" + text


def parse_method_overrides(items: list[str], method_names: list[str]) -> dict[str, list[str]]:
    """Parse 'METHOD:config.FIELD=VALUE' items into {method: [launch.py flags]}."""
    flags: dict[str, list[str]] = {name: [] for name in method_names}
    for item in items:
        method, separator, override = item.partition(":")
        if not separator:
            raise ValueError(f"Invalid --method-override {item!r}; expected "
                             "METHOD:config.FIELD=VALUE, e.g. dlbh:config.num_steps=60.")
        methods.get_method(method)
        flags.setdefault(method, []).append(launch_flag(override))
    return flags


def run_name(method: str, bits: int) -> str:
    return f"{method}_{bits}"


def launch_command(config: Path, bits: int, workdir: Path, method: str,
                   flags: list[str]) -> list[str]:
    """Return the launch.py command of one run; its paths are absolute."""
    return ["python", str(REPO / "launch.py"), "--config", f"{config}:{bits}", "--workdir", str(workdir),
            f"--config.method={method}", *flags]


def plan_runs(args: argparse.Namespace) -> list[dict]:
    """Return one dict per run: method, bits, workdir and launch.py command."""
    method_names = parse_methods(args.methods)
    bits_list = parse_bits(args.bits)
    common = [launch_flag(override) for override in args.override]
    per_method = parse_method_overrides(args.method_override, method_names)
    output = Path(args.output).resolve()
    config = Path(args.config).resolve()

    runs = []
    for method in method_names:
        for bits in bits_list:
            workdir = output / run_name(method, bits)
            command = launch_command(config, bits, workdir, method, common + per_method[method])
            runs.append({"method": method, "bits": bits, "workdir": workdir, "command": command})
    return runs


def execute_runs(runs: list[dict]) -> list[str]:
    """Run every unfinished run in turn; return the names of the runs that failed."""
    failed = []
    for index, run in enumerate(runs, start=1):
        name = run_name(run["method"], run["bits"])
        prefix = f"[{index}/{len(runs)}] {name}"
        if (run["workdir"] / "results.json").exists():
            logging.info("%s: skipped, %s exists.", prefix, run["workdir"] / "results.json")
            continue

        run["workdir"].mkdir(parents=True, exist_ok=True)
        log_path = run["workdir"] / "launch.log"
        logging.info("%s: running, log in %s", prefix, log_path)
        start = time.perf_counter()
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(run['command'])}\n")
            log.flush()
            returncode = subprocess.run([sys.executable, *run["command"][1:]], cwd=REPO,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        check=False).returncode
        seconds = time.perf_counter() - start
        if returncode != 0:
            logging.error("%s: failed with exit status %d after %.0f s; see %s", prefix,
                          returncode, seconds, log_path)
            failed.append(name)
        else:
            logging.info("%s: finished in %.0f s.", prefix, seconds)
    return failed


def count_parameters(workdir: Path) -> int:
    """Return the number of trained parameters in the run's last checkpoint."""
    manager = ocp.CheckpointManager(workdir / "checkpoints")
    try:
        restored = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
    finally:
        manager.close()
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(restored["params"]))


def read_result(method: str, bits: int, workdir: Path) -> dict:
    """Return the CSV row of a finished run."""
    results = json.loads((workdir / "results.json").read_text())
    config = json.loads((workdir / "config.json").read_text())
    k = config["eval"]["k"]
    suffix = "all" if k is None else str(k)
    num_parameters = count_parameters(workdir)
    return {
        "method": method, "bits": bits, "backbone": config["model"]["backbone"], "k": suffix,
        "map_tie_aware": results[f"map@{suffix}_tie_aware"], "map": results[f"map@{suffix}"],
        "map_worst": results[f"map@{suffix}_worst"], "map_best": results[f"map@{suffix}_best"],
        "num_parameters": num_parameters, "size_mb": num_parameters * 4 / 1e6,
        "steps": results["step"], "workdir": str(workdir),
    }


def dataset_name(workdir: Path) -> str:
    """Name the dataset of a run: the TFDS name, or the file name of the folder or archive."""
    data = json.loads((workdir / "config.json").read_text())["data"]
    if data["source"] == "tfds":
        return data["name"]
    return Path(data["root"]).name


def paper_setting_size_mb(backbone: str, num_bits: int = 64, num_classes: int = 10) -> float:
    """Return the float32 size in MB of `backbone` at the paper's input size and width 1.0."""
    config = default.get_config(str(num_bits))
    config.model.backbone = backbone
    config.model.width = 1.0
    size = PAPER_INPUT_SIZES[backbone]
    model = build_model(config, num_classes)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["params"])) * 4e-6


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _paper_cells(values: dict[int, float | None], bits_list: list[int]) -> list[str]:
    return ["–" if values.get(bits) is None else f"{values[bits]:.2f}" for bits in bits_list]


def _method_row(method: str, by_run: dict, bits_list: list[int], failed: list[str]) -> str:
    """Return the table row of one method: backbone, size, the paper's MAP and ours."""
    finished = [by_run[(method, bits)] for bits in bits_list if (method, bits) in by_run]
    if finished:
        backbone = finished[0]["backbone"]
        longest = max(finished, key=lambda row: row["bits"])
        size = f"{longest['size_mb']:.1f}"
    else:
        backbone = methods.get_method(method).backbone or "–"
        size = "–"

    cells = [method, backbone, size]
    cells += _paper_cells(PAPER_TABLE3.get(PAPER_ROW_OF_METHOD.get(method, ""), {}), bits_list)
    for bits in bits_list:
        row = by_run.get((method, bits))
        if row is not None:
            cells.append(f"{_percent(row['map_tie_aware'])} ({_percent(row['map'])})")
        elif run_name(method, bits) in failed:
            cells.append("failed")
        else:
            cells.append("–")
    return "| " + " | ".join(cells) + " |"


def markdown_table(rows: list[dict], method_names: list[str], bits_list: list[int],
                   dataset: str, same_dataset: bool, failed: list[str]) -> str:
    """Return the Markdown page: the paper's Table 3 beside our tie-aware MAP@k."""
    k = rows[0]["k"] if rows else "100"
    lines = [f"# Table 3: MAP@{k} (%) against code length", ""]
    if same_dataset:
        lines.append(f"Paper and ours are on the same dataset ({dataset}).")
    else:
        lines.append(f"**Different datasets**: the paper's columns are MAP@100 on its location "
                     f"dataset (not public); ours are on {dataset}. Compare the ranking of "
                     "methods, not the numbers.")
    lines += ["", f"Our cells: tie-aware MAP@{k} (the expectation over the orders of items at "
              "equal Hamming distance), with the deterministic value (ties broken by lower "
              "database index) in brackets. Size: float32 parameters of the trained model at "
              "the longest code length, in MB (10^6 bytes).", ""]

    header = (["Method", "Backbone", "Size (MB)"] + [f"Paper {bits}" for bits in bits_list]
              + [f"Ours {bits}" for bits in bits_list])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    by_run = {(row["method"], row["bits"]): row for row in rows}
    for method in method_names:
        lines.append(_method_row(method, by_run, bits_list, failed))
    for name, values in PAPER_TABLE3.items():
        if name not in PAPER_ROW_OF_METHOD.values():
            cells = [name, "–", "–"] + _paper_cells(values, bits_list) + ["–"] * len(bits_list)
            lines.append("| " + " | ".join(cells) + " |")

    lines += ["", "Methods:", ""]
    lines += [f"- `{method}`: {methods.get_method(method).description}" for method in method_names]
    lines += ["", "Model size at the paper's settings (width 1.0, 224 px for MobileNet, 227 px "
              "for AlexNet, 64 bits, 10 classes), computed from our layers: "
              f"MobileNet {paper_setting_size_mb('mobilenet_v1'):.1f} MB, AlexNet "
              f"{paper_setting_size_mb('alexnet'):.1f} MB. The paper reports 13 MB for MobileNet "
              "and over 230 MB for the AlexNet-based methods.", ""]
    return "\n".join(lines)


def plot(rows: list[dict], method_names: list[str], dataset: str, path: Path) -> None:
    """Save tie-aware MAP@k against code length, one line per method, as a PNG."""
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for method in method_names:
        points = sorted((row["bits"], 100 * row["map_tie_aware"]) for row in rows
                        if row["method"] == method)
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
    bits = sorted({row["bits"] for row in rows})
    axes.set_xscale("log", base=2)
    axes.set_xticks(bits, [str(b) for b in bits])
    axes.set_xlabel("code length (bits)")
    k = rows[0]["k"] if rows else "100"
    axes.set_ylabel(f"tie-aware MAP@{k} (%)")
    axes.set_title(f"MAP@{k} against code length on {dataset}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_reports(runs: list[dict], method_names: list[str], bits_list: list[int],
                  output: Path, same_dataset: bool, failed: list[str]) -> list[dict]:
    """Write results.csv, table3.md and table3.png from the finished runs; return the rows."""
    finished = [run for run in runs if (run["workdir"] / "results.json").exists()]
    rows = [read_result(run["method"], run["bits"], run["workdir"]) for run in finished]
    dataset = dataset_name(finished[0]["workdir"]) if finished else "no finished run"

    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / "results.csv")
    (output / "table3.md").write_text(
        markdown_table(rows, method_names, bits_list, dataset, same_dataset, failed),
        encoding="utf-8")
    plot(rows, method_names, dataset, output / "table3.png")
    logging.info("Wrote %s, %s and %s from %d of %d runs.", output / "results.csv",
                 output / "table3.md", output / "table3.png", len(rows), len(runs))
    return rows


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    runs = plan_runs(args)
    if args.print_commands:
        for run in runs:
            print(shlex.join(run["command"]))
        return 0

    failed = execute_runs(runs)
    write_reports(runs, parse_methods(args.methods), parse_bits(args.bits),
                  Path(args.output).resolve(), args.same_dataset_as_paper, failed)
    if failed:
        logging.error("%d of %d runs failed: %s", len(failed), len(runs), ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
