"""Import ImageNet-trained MobileNet v1 weights into this project's Flax variables.

Formats (no TensorFlow needed):
  "tf_frozen_graph"  a TF-slim frozen GraphDef (`.pb`) with the weights as Const nodes;
  "tf_checkpoint"    a TensorFlow V2 checkpoint (`prefix.index` + `prefix.data-*`);
  "tflite"           a TFLite MobileNet v1, float or uint8-quantized (BatchNorm folded);
  "auto"             chosen from the file's contents (see `detect_format`).

`load_backbone` fills the backbone of a freshly initialised model; `read_backbone` returns the
imported weights, including the ImageNet classifier, for inspection and tests.
"""

import logging
from pathlib import Path
from typing import Any, Mapping

from mvs_jax.pretrained import tf_checkpoint, tf_graph, tflite
from mvs_jax.pretrained.mobilenet_v1 import (BackboneWeights, PretrainedWeightsError,
                                             assign_backbone, from_tf_slim, from_tflite)

__all__ = ["FORMATS", "BackboneWeights", "PretrainedWeightsError", "assign_backbone",
           "detect_format", "load_backbone", "read_backbone"]

FORMATS = ("auto", "tf_frozen_graph", "tf_checkpoint", "tflite")


def detect_format(path: str | Path) -> str:
    """Return the format of `path`: a checkpoint by its prefix, `.index` or `.data-` name,
    TFLite by its file identifier, otherwise a frozen GraphDef (GraphDef has no magic number)."""
    path = Path(path)
    if path.suffix == ".index" or ".data-" in path.name:
        return "tf_checkpoint"
    if not path.is_file() and tf_checkpoint.index_path(path).is_file():
        return "tf_checkpoint"
    with open(path, "rb") as f:
        header = f.read(8)
    if header[4:8] == tflite.FILE_IDENTIFIER:
        return "tflite"
    return "tf_frozen_graph"


def read_backbone(path: str | Path, format: str = "auto") -> BackboneWeights:
    """Read MobileNet v1 weights from `path` in `format` (one of FORMATS).

    Raises FileNotFoundError for a missing file and PretrainedWeightsError (a ValueError) for a
    file of the wrong format, a missing tensor or a layer that does not fit MobileNet v1.
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown pretrained format {format!r}; valid: {FORMATS}.")
    path = Path(path)
    if not path.exists() and not tf_checkpoint.index_path(path).exists():
        raise FileNotFoundError(f"Pretrained weights not found: {path}")
    requested = format
    if format == "auto":
        format = detect_format(path)

    try:
        if format == "tflite":
            tensors, operators = tflite.read_model(path)
            return from_tflite(tensors, operators, str(path))
        if format == "tf_checkpoint":
            variables = tf_checkpoint.read_checkpoint(path)
            return from_tf_slim(variables, str(path), format)
        constants, node_ops = tf_graph.read_graph_constants(path)
    except (tflite.TFLiteError, tf_checkpoint.CheckpointError, tf_graph.GraphDefError) as error:
        hint = f" (format {format!r} detected from the contents)" if requested == "auto" else ""
        raise PretrainedWeightsError(f"{error}{hint}") from error

    backbone_ops = {op for name, op in node_ops.items() if name.startswith("MobilenetV1/")}
    activation = None
    if "Relu6" in backbone_ops:
        activation = "relu6"
    elif "Relu" in backbone_ops:
        activation = "relu"
    return from_tf_slim(constants, str(path), format, activation)


def load_backbone(path: str | Path, format: str, params: Mapping[str, Any],
                  batch_stats: Mapping[str, Any], activation: str | None = None
                  ) -> tuple[dict, dict]:
    """Return `params` and `batch_stats` with the MobileNet v1 backbone loaded from `path`.

    The trees are a HashingNetwork's (the backbone sits under "backbone"; the hash and
    classifier layers keep their values) or a bare MobileNetV1's. Every backbone variable is
    replaced or an error is raised; nothing is loaded partially. With `activation` (the
    model's), a warning is logged when the source network was trained with another one.
    """
    weights = read_backbone(path, format)
    if activation is not None and weights.activation not in (None, activation):
        logging.warning(
            "%s was trained with %s activations but the model uses %s; its outputs will "
            "differ from the source network's until fine-tuned (set model.activation=%r to "
            "match).", path, weights.activation, activation, weights.activation)
    params, batch_stats = assign_backbone(weights, params, batch_stats)
    logging.info(
        "Loaded the MobileNet v1 backbone (width %g%s) from %s (%s).", weights.width,
        ", BatchNorm folded into biases" if weights.batch_norm_folded else "", path,
        weights.format)
    return params, batch_stats
