"""The data-parallel train step, checkpoint resumption and config validation."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import default
from mvs_jax import train

REPO = Path(__file__).resolve().parents[1]


def test_four_devices_match_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, str(REPO / "tests" / "multi_device_step.py")],
                            env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loss_4"] == pytest.approx(report["loss_1"], rel=1e-5)
    assert report["params_max_difference"] < 1e-5
    # Equal batch_stats show BatchNorm used the statistics of the global batch on 4 devices.
    assert report["batch_stats_max_difference"] < 1e-5


def _tiny_config(root: Path, data_dir: Path, num_steps: int = 6):
    config = default.get_config("16")
    with config.unlocked():
        config.data.root = str(root)
        config.data.data_dir = str(data_dir)
        config.data.query_split = "test"
        config.data.database_split = "train"
        config.model.width = 0.25
        config.batch_size = 16
        config.num_steps = num_steps
        config.log_every = 2
        config.checkpoint_every = 3
        config.optimizer.decay_steps = 4
        config.eval.batch_size = 32
        config.eval.k = 20
    return config


def _restore_params(workdir: Path, step: int):
    manager = ocp.CheckpointManager(workdir / "checkpoints")
    restored = manager.restore(step, args=ocp.args.StandardRestore())
    manager.close()
    return restored["params"]


def _flatten(tree) -> list[np.ndarray]:
    import jax
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def straight_run(cifar_subset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    config = _tiny_config(cifar_subset, tmp_path_factory.mktemp("tfds"))
    results = train.train_and_evaluate(config, str(workdir))
    return config, workdir, results


def test_run_writes_outputs(straight_run):
    _, workdir, results = straight_run
    assert (workdir / "config.json").exists()
    assert json.loads((workdir / "config.json").read_text())["model"]["num_bits"] == 16
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "train/loss" in r]
    assert train_steps == [2, 4, 6]
    assert any(name.startswith("events.out.tfevents")
               for name in os.listdir(workdir / "tensorboard"))
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["map@20"] == pytest.approx(results["map@20"])
    assert 0.0 <= results["map@20"] <= 1.0


def test_checkpoints_kept(straight_run):
    _, workdir, _ = straight_run
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 6]


def test_resume_after_crash_gives_same_result(straight_run, tmp_path):
    config, workdir, results = straight_run
    # Simulate a crash after step 3: keep only the step-3 checkpoint, then relaunch.
    crashed = tmp_path / "crashed"
    shutil.copytree(workdir / "checkpoints", crashed / "checkpoints")
    shutil.rmtree(crashed / "checkpoints" / "6")
    resumed = train.train_and_evaluate(config, str(crashed))

    for a, b in zip(_flatten(_restore_params(workdir, 6)), _flatten(_restore_params(crashed, 6))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert resumed["map@20"] == pytest.approx(results["map@20"], abs=1e-9)


def test_relaunch_of_finished_run_only_evaluates(straight_run):
    config, workdir, results = straight_run
    again = train.train_and_evaluate(config, str(workdir))
    assert again["map@20"] == pytest.approx(results["map@20"], abs=1e-9)
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 6]


@pytest.mark.parametrize("field,value,message", [
    ("model.num_bits", 0, "model.num_bits must be a positive"),
    ("model.num_bits", -8, "got -8"),
    ("eval.k", 0, "eval.k must be a positive"),
    ("eval.k", -1, "got -1"),
    ("loss.name", "hinge", "Unknown loss 'hinge'; valid losses"),
    ("loss.name", "greedyhash", "needs model.classifier_input='sign', got 'hash'"),
])
def test_invalid_config_rejected(field, value, message):
    config = default.get_config()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=message):
        train.validate_config(config)


def test_missing_dataset_path(tmp_path):
    config = _tiny_config(tmp_path / "nowhere", tmp_path / "tfds")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train.train_and_evaluate(config, str(tmp_path / "work"))


def _launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def test_launch_rejects_unknown_config_field(tmp_path):
    result = _launch("--config", "configs/default.py", "--workdir", str(tmp_path),
                     "--config.model.num_bitz=8")
    assert result.returncode != 0
    assert "num_bitz" in result.stderr


def test_launch_rejects_zero_bits(tmp_path):
    result = _launch("--config", "configs/default.py:0", "--workdir", str(tmp_path))
    assert result.returncode != 0
    assert "model.num_bits must be a positive number of hash bits, got 0" in result.stderr
