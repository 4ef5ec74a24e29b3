"""experiments/table3.py: a real two-run sweep on the CIFAR subset, resumption, and flags."""

import csv
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import table3  # noqa: E402


def _tiny_overrides(root: Path, data_dir: Path) -> list[str]:
    overrides = {
        "data.root": root, "data.data_dir": data_dir, "model.width": 0.25, "batch_size": 16,
        "num_steps": 2, "log_every": 1, "checkpoint_every": 2, "eval.batch_size": 32,
        "eval.k": 20,
    }
    arguments = []
    for field, value in overrides.items():
        arguments += ["--override", f"config.{field}={value}"]
    return arguments


@pytest.fixture(scope="module")
def sweep(cifar_subset, tmp_path_factory):
    """Two methods at 16 bits: dlbh (AlexNet, no BatchNorm) and hashnet (uses the train step)."""
    output = tmp_path_factory.mktemp("table3")
    argv = ["--output", str(output), "--methods", "dlbh,hashnet", "--bits", "16",
            *_tiny_overrides(cifar_subset, tmp_path_factory.mktemp("tfds")),
            "--method-override", "dlbh:config.model.input_size=55"]
    status = table3.main(argv)
    return output, argv, status


def test_sweep_writes_reports(sweep):
    output, _, status = sweep
    assert status == 0, (output / "dlbh_16" / "launch.log").read_text()[-3000:]
    for name in ("results.csv", "table3.md", "table3.png"):
        assert (output / name).stat().st_size > 0, name

    rows = list(csv.DictReader(open(output / "results.csv", encoding="utf-8")))
    assert [(row["method"], row["bits"]) for row in rows] == [("dlbh", "16"), ("hashnet", "16")]
    for row in rows:
        assert row["k"] == "20"
        assert row["steps"] == "2"
        assert 0.0 <= float(row["map_worst"]) <= float(row["map_tie_aware"]) <= float(
            row["map_best"]) <= 1.0
    assert rows[0]["backbone"] == "alexnet"
    assert rows[1]["backbone"] == "mobilenet_v1"
    # AlexNet at 55 px: pool5 is 1x1x256, so fc6 has 256 * 4096 + 4096 parameters, and the
    # network far outweighs MobileNet at width 0.25.
    assert float(rows[0]["size_mb"]) > 80
    assert float(rows[1]["size_mb"]) < 1


def test_markdown_marks_different_dataset(sweep):
    output, _, _ = sweep
    page = (output / "table3.md").read_text()
    assert "**Different datasets**" in page
    assert "cifar_subset" in page
    # Table 3 of the MobileNet hashing paper reports DLBH at 59.80 for 16 bits, beside ours.
    dlbh_row = next(line for line in page.splitlines() if line.startswith("| dlbh |"))
    assert "59.80" in dlbh_row
    assert "| VHB |" in page


def test_rerun_skips_finished_runs(sweep, caplog):
    output, argv, _ = sweep
    before = {path: path.stat().st_mtime_ns for path in output.glob("*/results.json")}
    with caplog.at_level(logging.INFO):
        assert table3.main(argv) == 0
    assert sum("skipped" in record.getMessage() for record in caplog.records) == 2
    assert {path: path.stat().st_mtime_ns for path in output.glob("*/results.json")} == before


def test_print_commands(capsys, tmp_path):
    assert table3.main(["--output", str(tmp_path), "--methods", "paper,ssdh", "--bits", "16,64",
                        "--override", "config.num_steps=500",
                        "--method-override", "ssdh:config.loss.ssdh.binary_weight=0.5",
                        "--print-commands"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert all("launch.py --config" in line for line in lines)
    assert all("--config.num_steps=500" in line for line in lines)
    assert "default.py:64" in lines[1]
    assert f"--workdir {tmp_path / 'ssdh_16'}" in lines[2]
    assert "--config.method=ssdh" in lines[2]
    assert "--config.loss.ssdh.binary_weight=0.5" in lines[3]
    assert "binary_weight" not in lines[0]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv,message", [
    (["--methods", "paper,vhb"], "Unknown method 'vhb'; valid methods"),
    (["--bits", "16,0"], "Invalid code length '0'"),
    (["--override", "num_steps=5"], "expected config.FIELD=VALUE"),
    (["--method-override", "dlbh=config.num_steps=5"], "expected METHOD:config.FIELD=VALUE"),
])
def test_invalid_flags_rejected(argv, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        table3.main(["--output", str(tmp_path), "--print-commands", *argv])
