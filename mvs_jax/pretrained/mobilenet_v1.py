"""Map TF-slim and TFLite MobileNet v1 tensors onto this project's `MobileNetV1` parameters.

Both sources are turned into one `BackboneWeights` value whose trees have exactly the layout
of `MobileNetV1`'s `params` and `batch_stats`. `assign_backbone` then checks it against a
model's trees and replaces the backbone part of them.
"""

import dataclasses
import logging
from typing import Any, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from mvs_jax.models.mobilenet import BATCH_NORM_EPSILON, BLOCKS, FIRST_CONV_CHANNELS
from mvs_jax.pretrained.tflite import Operator, Tensor

NUM_BLOCKS = len(BLOCKS)
TF_SLIM_SCOPE = "MobilenetV1"
LOGITS_WEIGHTS = "MobilenetV1/Logits/Conv2d_1c_1x1/weights"
LOGITS_BIASES = "MobilenetV1/Logits/Conv2d_1c_1x1/biases"
# TF-slim's BatchNorm variables, in the order of our (collection, name) pairs.
TF_SLIM_BATCH_NORM = (("params", "scale", "gamma"), ("params", "bias", "beta"),
                      ("batch_stats", "mean", "moving_mean"),
                      ("batch_stats", "var", "moving_variance"))


class PretrainedWeightsError(ValueError):
    """A pretrained file cannot be loaded into the requested model (the message explains why)."""


@dataclasses.dataclass(frozen=True)
class BackboneWeights:
    """MobileNet v1 weights read from a file, in the layout of `MobileNetV1`'s variables.

    `params` and `batch_stats` map a module name (`Conv2d_0`, `Conv2d_0_bn`, ...) to its
    variables as float32 arrays. `sources` maps "collection/module/variable" to the source
    tensor name, for error messages. `classifier` is the ImageNet logits layer as a (kernel
    [D, 1001], bias [1001]) pair, or None when the file has no classifier. `unused` lists the
    source tensors that no backbone or classifier variable took.
    """

    params: dict[str, dict[str, np.ndarray]]
    batch_stats: dict[str, dict[str, np.ndarray]]
    sources: dict[str, str]
    width: float
    activation: str | None
    batch_norm_folded: bool
    classifier: tuple[np.ndarray, np.ndarray] | None
    unused: tuple[str, ...]
    path: str
    format: str


def layer_names() -> list[tuple[str, str]]:
    """Return (our module name, kind) for the 27 convolutions in execution order."""
    layers = [("Conv2d_0", "conv")]
    for index in range(1, NUM_BLOCKS + 1):
        layers.append((f"Conv2d_{index}_depthwise", "depthwise"))
        layers.append((f"Conv2d_{index}_pointwise", "pointwise"))
    return layers


def _width(first_conv_channels: int) -> float:
    return first_conv_channels / FIRST_CONV_CHANNELS


def _empty_trees(layers) -> tuple[dict, dict]:
    params = {}
    batch_stats = {}
    for name, _ in layers:
        params[name] = {}
        params[f"{name}_bn"] = {}
        batch_stats[f"{name}_bn"] = {}
    return params, batch_stats


# --------------------------------------------------------------------------------------------
# TF-slim names (frozen GraphDef or checkpoint).


def _tf_slim_kernel_name(name: str, kind: str) -> str:
    suffix = "depthwise_weights" if kind == "depthwise" else "weights"
    return f"{TF_SLIM_SCOPE}/{name}/{suffix}"


def _require(tensors: Mapping[str, np.ndarray], name: str, path: str) -> np.ndarray:
    if name not in tensors:
        raise PretrainedWeightsError(
            f"{path}: missing tensor {name!r}; the file is not a complete TF-slim MobileNet v1 "
            f"({len(tensors)} tensors present).")
    return np.asarray(tensors[name], np.float32)


def _check_epsilons(tensors: Mapping[str, np.ndarray], path: str) -> list[str]:
    """Check the BatchNorm epsilon constants a frozen graph keeps; return their names."""
    names = [name for name in tensors if name.endswith("/BatchNorm/batchnorm/add/y")]
    for name in names:
        value = float(np.asarray(tensors[name]).reshape(-1)[0])
        if not np.isclose(value, BATCH_NORM_EPSILON, rtol=1e-6):
            raise PretrainedWeightsError(
                f"{path}: tensor {name!r} is a BatchNorm epsilon of {value}, but MobileNetV1 "
                f"uses {BATCH_NORM_EPSILON}; the imported statistics would not reproduce the "
                "source network.")
    return names


def from_tf_slim(tensors: Mapping[str, np.ndarray], path: str, file_format: str,
                 activation: str | None = "relu6") -> BackboneWeights:
    """Build BackboneWeights from TF-slim variable names (`MobilenetV1/Conv2d_0/weights`, ...).

    Depthwise kernels go from TF's [3, 3, C, 1] to our [3, 3, 1, C]; every other tensor keeps
    its layout. Raises PretrainedWeightsError naming the first missing tensor.
    """
    layers = layer_names()
    params, batch_stats = _empty_trees(layers)
    sources = {}
    used = set(_check_epsilons(tensors, path))

    for name, kind in layers:
        source = _tf_slim_kernel_name(name, kind)
        kernel = _require(tensors, source, path)
        if kind == "depthwise":
            if kernel.ndim != 4 or kernel.shape[3] != 1:
                raise PretrainedWeightsError(
                    f"{path}: tensor {source!r} has shape {kernel.shape}, expected a depthwise "
                    "kernel [3, 3, C, 1] with depth multiplier 1.")
            kernel = kernel.transpose(0, 1, 3, 2)
        params[name]["kernel"] = kernel
        sources[f"params/{name}/kernel"] = source
        used.add(source)

        for collection, ours, theirs in TF_SLIM_BATCH_NORM:
            source = f"{TF_SLIM_SCOPE}/{name}/BatchNorm/{theirs}"
            tree = params if collection == "params" else batch_stats
            tree[f"{name}_bn"][ours] = _require(tensors, source, path)
            sources[f"{collection}/{name}_bn/{ours}"] = source
            used.add(source)

    classifier = None
    if LOGITS_WEIGHTS in tensors and LOGITS_BIASES in tensors:
        kernel = _require(tensors, LOGITS_WEIGHTS, path)
        bias = _require(tensors, LOGITS_BIASES, path)
        if kernel.ndim != 4 or kernel.shape[:2] != (1, 1) or bias.shape != kernel.shape[3:]:
            raise PretrainedWeightsError(
                f"{path}: classifier tensors {LOGITS_WEIGHTS!r} {kernel.shape} and "
                f"{LOGITS_BIASES!r} {bias.shape} are not a 1x1 convolution and its bias.")
        classifier = (kernel[0, 0], bias)
        used.update((LOGITS_WEIGHTS, LOGITS_BIASES))

    first = params["Conv2d_0"]["kernel"]
    return BackboneWeights(
        params=params, batch_stats=batch_stats, sources=sources,
        width=_width(first.shape[-1]), activation=activation, batch_norm_folded=False,
        classifier=classifier, unused=tuple(sorted(set(tensors) - used)), path=str(path),
        format=file_format)


# --------------------------------------------------------------------------------------------
# TFLite operators.


def _expected_operators() -> list[tuple[str, str, int]]:
    """(our module name, TFLite operator, stride) of the backbone's 27 convolutions."""
    expected = [("Conv2d_0", "CONV_2D", 2)]
    for index, (stride, _) in enumerate(BLOCKS, start=1):
        expected.append((f"Conv2d_{index}_depthwise", "DEPTHWISE_CONV_2D", stride))
        expected.append((f"Conv2d_{index}_pointwise", "CONV_2D", 1))
    return expected


def _constant_input(tensors: Sequence[Tensor], operator: Operator, slot: int,
                    what: str, path: str) -> Tensor:
    if len(operator.inputs) <= slot or operator.inputs[slot] < 0:
        raise PretrainedWeightsError(
            f"{path}: operator {operator.index} ({operator.name}) has no {what} input.")
    tensor = tensors[operator.inputs[slot]]
    if tensor.data is None:
        raise PretrainedWeightsError(
            f"{path}: the {what} of operator {operator.index} ({operator.name}), tensor "
            f"{tensor.name!r}, is not a constant with numeric data.")
    return tensor


def _check_convolution(operator: Operator, expected: str, stride: int, name: str,
                       path: str, activation: str | None) -> None:
    options = operator.options
    problems = []
    if operator.name != expected:
        problems.append(f"operator {operator.name}, expected {expected}")
    else:
        if options.get("strides") != (stride, stride):
            problems.append(f"strides {options.get('strides')}, expected {(stride, stride)}")
        if options.get("padding") != "SAME":
            problems.append(f"padding {options.get('padding')}, expected SAME")
        if options.get("dilation") != (1, 1):
            problems.append(f"dilation {options.get('dilation')}, expected (1, 1)")
        if options.get("depth_multiplier", 1) != 1:
            problems.append(f"depth multiplier {options['depth_multiplier']}, expected 1")
        if activation is not None and options.get("activation") != activation:
            problems.append(
                f"fused activation {options.get('activation')}, expected {activation} like "
                "the layers before it")
    if problems:
        raise PretrainedWeightsError(
            f"{path}: convolution {operator.index} does not match MobileNet v1 layer {name}: "
            + "; ".join(problems) + ".")


def _find_classifier(tensors: Sequence[Tensor], operators: Sequence[Operator],
                     extra: Sequence[Operator], path: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not extra:
        return None
    pools = [op for op in operators if op.name == "AVERAGE_POOL_2D"]
    logits = extra[0]
    if len(extra) > 1 or logits.name != "CONV_2D" or not pools or pools[0].index > logits.index:
        names = ", ".join(f"{op.index}:{op.name}" for op in extra)
        raise PretrainedWeightsError(
            f"{path}: after the 27 MobileNet v1 convolutions the model has convolutions "
            f"{names}; expected none, or one 1x1 CONV_2D logits layer after the average pool.")
    kernel = _constant_input(tensors, logits, 1, "kernel", path)
    bias = _constant_input(tensors, logits, 2, "bias", path)
    if (len(kernel.shape) != 4 or kernel.shape[1:3] != (1, 1)
            or bias.shape != kernel.shape[:1]):
        raise PretrainedWeightsError(
            f"{path}: logits tensors {kernel.name!r} {kernel.shape} and {bias.name!r} "
            f"{bias.shape} are not a 1x1 convolution [O, 1, 1, I] and its bias [O].")
    # [O, 1, 1, I] -> a dense kernel [I, O].
    return kernel.data[:, 0, 0, :].T.copy(), bias.data.astype(np.float32)


def from_tflite(tensors: Sequence[Tensor], operators: Sequence[Operator], path: str,
                file_format: str = "tflite") -> BackboneWeights:
    """Build BackboneWeights from a TFLite MobileNet v1 (float or quantized).

    Layers are matched by position: the first 27 CONV_2D / DEPTHWISE_CONV_2D operators must
    have the operator types and strides of MobileNet v1. BatchNorm is folded into the
    convolution biases in TFLite, so each BatchNorm gets scale 1, bias = the folded bias,
    mean 0 and var 1 - epsilon, which makes (x - mean) / sqrt(var + epsilon) = x.
    """
    convolutions = [op for op in operators if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    expected = _expected_operators()
    if len(convolutions) < len(expected):
        raise PretrainedWeightsError(
            f"{path}: {len(convolutions)} convolution operators, but MobileNet v1 has "
            f"{len(expected)}; this is not a MobileNet v1 model.")

    layers = layer_names()
    params, batch_stats = _empty_trees(layers)
    sources = {}
    used = set()
    activation = convolutions[0].options.get("activation")
    for operator, (name, kind, stride) in zip(convolutions, expected):
        _check_convolution(operator, kind, stride, name, path, activation)
        kernel = _constant_input(tensors, operator, 1, "kernel", path)
        bias = _constant_input(tensors, operator, 2, "bias", path)
        output_axis = -1 if kind == "DEPTHWISE_CONV_2D" else 0
        if len(kernel.shape) != 4 or bias.shape != (kernel.shape[output_axis],):
            raise PretrainedWeightsError(
                f"{path}: layer {name}: kernel {kernel.name!r} {kernel.shape} and bias "
                f"{bias.name!r} {bias.shape} do not fit a convolution and its bias.")
        if kind == "DEPTHWISE_CONV_2D":
            # [1, 3, 3, C] -> [3, 3, 1, C].
            ours = kernel.data.transpose(1, 2, 0, 3)
        else:
            # [O, H, W, I] -> [H, W, I, O].
            ours = kernel.data.transpose(1, 2, 3, 0)
        params[name]["kernel"] = np.ascontiguousarray(ours, np.float32)
        sources[f"params/{name}/kernel"] = kernel.name

        channels = bias.shape[0]
        folded = {"scale": np.ones(channels, np.float32),
                  "bias": bias.data.astype(np.float32)}
        statistics = {"mean": np.zeros(channels, np.float32),
                      "var": np.full(channels, 1.0 - BATCH_NORM_EPSILON, np.float32)}
        params[f"{name}_bn"] = folded
        batch_stats[f"{name}_bn"] = statistics
        sources[f"params/{name}_bn/bias"] = bias.name
        for collection, variable in (("params", "scale"), ("batch_stats", "mean"),
                                     ("batch_stats", "var")):
            sources[f"{collection}/{name}_bn/{variable}"] = f"{bias.name} (folded BatchNorm)"
        used.update((kernel.name, bias.name))

    classifier = _find_classifier(tensors, operators, convolutions[len(expected):], path)
    if classifier is not None:
        logits = convolutions[len(expected)]
        used.update(tensors[i].name for i in logits.inputs[1:3])

    if activation == "NONE":
        # A converter that did not fuse the activation leaves separate RELU6 or RELU operators.
        separate = {op.name for op in operators} & {"RELU6", "RELU"}
        activation = "RELU6" if "RELU6" in separate else next(iter(separate), None)
    constants = {tensor.name for tensor in tensors if tensor.data is not None}
    first = params["Conv2d_0"]["kernel"]
    return BackboneWeights(
        params=params, batch_stats=batch_stats, sources=sources,
        width=_width(first.shape[-1]), activation=activation.lower() if activation else None,
        batch_norm_folded=True, classifier=classifier,
        unused=tuple(sorted(constants - used)), path=str(path), format=file_format)


# --------------------------------------------------------------------------------------------
# Assigning into a model's variables.


def _backbone_subtree(tree: Mapping[str, Any], what: str) -> tuple[Mapping[str, Any], bool]:
    """Return the MobileNetV1 part of a HashingNetwork or bare MobileNetV1 tree."""
    if "backbone" in tree:
        return tree["backbone"], True
    if "Conv2d_0" in tree or "Conv2d_0_bn" in tree:
        return tree, False
    raise PretrainedWeightsError(
        f"{what} has neither a 'backbone' module nor MobileNet v1 layers; its top-level keys "
        f"are {sorted(tree)}.")


def _flatten(tree: Mapping[str, Any], collection: str) -> dict[str, Any]:
    return {f"{collection}/{module}/{variable}": value
            for module, variables in tree.items() for variable, value in variables.items()}


def _place(value: np.ndarray, like: Any) -> jax.Array:
    """Cast to the target's dtype and put it where the target lives (same sharding)."""
    if isinstance(like, jax.Array):
        return jax.device_put(value.astype(like.dtype), like.sharding)
    return jnp.asarray(value, dtype=like.dtype)


def _check_width(weights: BackboneWeights, target: Mapping[str, Any]) -> None:
    source = weights.params["Conv2d_0"]["kernel"]
    expected = target.get("Conv2d_0", {}).get("kernel")
    if expected is None or tuple(source.shape) == tuple(expected.shape):
        return
    target_channels = expected.shape[-1]
    raise PretrainedWeightsError(
        f"{weights.path}: width mismatch: tensor {weights.sources['params/Conv2d_0/kernel']!r} "
        f"gives Conv2d_0/kernel the shape {tuple(source.shape)} ({source.shape[-1]} channels, "
        f"width {weights.width:g}), but the model's Conv2d_0/kernel has shape "
        f"{tuple(expected.shape)} ({target_channels} channels, width "
        f"{_width(target_channels):g}); set model.width to {weights.width:g} or load a file of "
        f"width {_width(target_channels):g}.")


def assign_backbone(weights: BackboneWeights, params: Mapping[str, Any],
                    batch_stats: Mapping[str, Any]) -> tuple[dict, dict]:
    """Return copies of `params` and `batch_stats` with the backbone replaced by `weights`.

    The trees are those of a HashingNetwork (backbone under "backbone"; the hash and classifier
    layers are kept as they are) or of a bare MobileNetV1. Every backbone variable must be
    covered, with the same shape, or PretrainedWeightsError names the first one that is not.
    Arrays keep the dtype and sharding of the variables they replace.
    """
    target_params, nested = _backbone_subtree(params, "params")
    target_stats, stats_nested = _backbone_subtree(batch_stats, "batch_stats")
    if nested != stats_nested:
        raise PretrainedWeightsError(
            "params and batch_stats disagree on whether the backbone is nested under "
            "'backbone'; pass both trees of the same model.")
    _check_width(weights, target_params)

    targets = {**_flatten(target_params, "params"), **_flatten(target_stats, "batch_stats")}
    loaded = {**_flatten(weights.params, "params"), **_flatten(weights.batch_stats, "batch_stats")}
    missing = sorted(set(targets) - set(loaded))
    if missing:
        raise PretrainedWeightsError(
            f"{weights.path}: no source tensor for model variable(s) {missing[:5]} "
            f"({len(missing)} in all); the model is not the MobileNet v1 this file holds.")
    extra = sorted(set(loaded) - set(targets))
    if extra:
        raise PretrainedWeightsError(
            f"{weights.path}: the model has no variable for {extra[0]!r} (from tensor "
            f"{weights.sources[extra[0]]!r}; {len(extra)} in all); the model is not a "
            "MobileNet v1.")
    for key, value in loaded.items():
        expected = tuple(targets[key].shape)
        if tuple(value.shape) != expected:
            raise PretrainedWeightsError(
                f"{weights.path}: shape mismatch for {key}: tensor {weights.sources[key]!r} "
                f"gives shape {tuple(value.shape)}, the model expects {expected}.")

    new_params = {module: {variable: _place(value, target_params[module][variable])
                           for variable, value in variables.items()}
                  for module, variables in weights.params.items()}
    new_stats = {module: {variable: _place(value, target_stats[module][variable])
                          for variable, value in variables.items()}
                 for module, variables in weights.batch_stats.items()}
    if weights.unused:
        logging.info("%s: %d source tensor(s) not used for the backbone or the ImageNet "
                     "classifier: %s", weights.path, len(weights.unused), ", ".join(weights.unused))
    if nested:
        new_params = {**params, "backbone": new_params}
        new_stats = {**batch_stats, "backbone": new_stats}
    if isinstance(params, flax.core.FrozenDict):
        # Keep the container type, so the result has the same pytree structure as the input.
        return flax.core.freeze(new_params), flax.core.freeze(new_stats)
    return new_params, new_stats
