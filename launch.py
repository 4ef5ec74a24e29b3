"""Train and evaluate a deep hashing model.

  python launch.py --config configs/default.py[:bits] --workdir DIR [--config.a.b=value ...]
"""

import logging
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from mvs_jax import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, optionally followed by ':arg'.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for config.json, metrics, TensorBoard files and checkpoints. "
    "A run relaunched on the same folder resumes from its latest checkpoint.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", "~/.cache/mvs_jax/jax_compilation_cache",
    "Folder of JAX's persistent compilation cache; empty to disable it.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(logging.Filter):
    """Drop INFO records of orbax and TFDS, which log several lines per checkpoint or file."""

    def filter(self, record: logging.LogRecord) -> bool:
        noisy = any(part in record.pathname for part in ("/orbax/", "/tensorflow_datasets/"))
        return record.levelno >= logging.WARNING or not noisy


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.getLogger().setLevel(logging.INFO)
    for handler in logging.getLogger().handlers + logging.getLogger("absl").handlers:
        handler.addFilter(_QuietLibraries())
    if _COMPILATION_CACHE.value:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_COMPILATION_CACHE.value))
    config = _CONFIG.value
    logging.info("JAX %s on %d %s devices (%d processes).", jax.__version__, jax.device_count(),
                 jax.default_backend(), jax.process_count())
    train.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
