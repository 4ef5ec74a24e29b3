"""Metric writers: log lines, JSON Lines and TensorBoard event files.

The interface mirrors clu's `MetricWriter` (`write_scalars`, `write_texts`, `flush`, `close`), but
clu's writers import TensorFlow at import time, so these are written with the standard library
and tensorboardX, which need neither TensorFlow nor a GPU.
"""

import json
import logging
import os
from typing import Any, Mapping

import numpy as np


def _to_python(value: Any) -> Any:
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


class LoggingWriter:
    """Write `[step] name = value` log lines."""

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        values = ", ".join(f"{name} = {_to_python(value):.6g}" if np.ndim(value) == 0
                           else f"{name} = {_to_python(value)}" for name, value in scalars.items())
        logging.info("[%d] %s", step, values)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        for name, text in texts.items():
            logging.info("[%d] %s: %s", step, name, text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlWriter:
    """Append one JSON object per `write_scalars` call: {"step": ..., name: value, ...}."""

    def __init__(self, path: str):
        self._file = open(path, "a", encoding="utf-8")

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        record = {"step": int(step)}
        record.update({name: _to_python(value) for name, value in scalars.items()})
        self._file.write(json.dumps(record) + "\n")

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        self._file.write(json.dumps({"step": int(step), **texts}) + "\n")

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self.flush()
        self._file.close()


class TensorBoardWriter:
    """Write scalars and text to TensorBoard event files through tensorboardX."""

    def __init__(self, logdir: str):
        from tensorboardX import SummaryWriter  # Imported here: it is slow to import.
        self._writer = SummaryWriter(logdir)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for name, value in scalars.items():
            if np.ndim(value) == 0:
                # TensorBoard tag names allow [A-Za-z0-9_./-]: "map@100" becomes "map_at_100".
                tag = name.replace("@", "_at_")
                self._writer.add_scalar(tag, float(np.asarray(value)), global_step=int(step))

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        for name, text in texts.items():
            self._writer.add_text(name, text, global_step=int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MultiWriter:
    """Forward every call to several writers."""

    def __init__(self, writers: list):
        self._writers = writers

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for writer in self._writers:
            writer.write_scalars(step, scalars)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        for writer in self._writers:
            writer.write_texts(step, texts)

    def flush(self) -> None:
        for writer in self._writers:
            writer.flush()

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


def create_writer(workdir: str, write_files: bool = True) -> MultiWriter:
    """Log lines on every process; `metrics.jsonl` and TensorBoard files under `workdir` only
    where `write_files` is set (process 0)."""
    writers: list = [LoggingWriter()]
    if write_files:
        writers.append(JsonlWriter(os.path.join(workdir, "metrics.jsonl")))
        writers.append(TensorBoardWriter(os.path.join(workdir, "tensorboard")))
    return MultiWriter(writers)
