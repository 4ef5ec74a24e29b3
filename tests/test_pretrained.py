"""Pretrained MobileNet v1 import, checked against known ImageNet classes and numpy references.

The references below run MobileNet v1 in plain numpy straight from the file tensors (TF-slim
names, or the TFLite operator list). They share only the low-level file parsers with the code
under test, not its name mapping, layout transposes, BatchNorm folding or Flax model.
"""

import dataclasses
import functools
import logging
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import default
from mvs_jax import pretrained, training
from mvs_jax.models import HashingNetwork, MobileNetV1, build_model
from mvs_jax.pretrained import protobuf, tf_graph, tflite

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WEIGHTS = SHARED_DATA / "weights"
FROZEN_GRAPH = WEIGHTS / "mobilenet_v1_1.0_224_imagenet_frozen_graph.pb"
EMBEDDING_EXTRACTOR = WEIGHTS / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
IMAGES = ("cat.bmp", "grace_hopper.bmp")
# ImageNet classes with background at 0: 286 "Egyptian cat", 653 "military uniform".
EXPECTED_TOP1 = (286, 653)
EPSILON = 1e-3
DEPTHWISE_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)

pytestmark = pytest.mark.skipif(
    not FROZEN_GRAPH.exists(),
    reason=f"{WEIGHTS} not found; these tests need the shared data folder next to the repo.")


# --------------------------------------------------------------------------------------------
# Inputs and the Flax side.


@functools.lru_cache(maxsize=None)
def load_pixels(size: int) -> np.ndarray:
    """Return both test images, resized bilinearly to size x size, as RGB uint8 [2, H, W, 3]."""
    batch = []
    for name in IMAGES:
        image = Image.open(SHARED_DATA / "images" / name).convert("RGB")
        batch.append(np.asarray(image.resize((size, size), Image.BILINEAR), np.uint8))
    return np.stack(batch)


@functools.lru_cache(maxsize=None)
def load_images(size: int) -> np.ndarray:
    """Both test images, resized bilinearly to size x size, RGB scaled to [-1, 1]."""
    return load_pixels(size).astype(np.float32) / 127.5 - 1.0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Return the cosine similarity of two vectors."""
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@functools.lru_cache(maxsize=None)
def flax_model(width: float):
    """A HashingNetwork of `width` with ReLU6, its initial variables, and one jitted forward."""
    model = HashingNetwork(MobileNetV1(width=width, activation="relu6"), num_bits=16,
                           num_classes=10)
    # Compiling `model.init` costs seconds per width, so the variables are filled from their
    # shapes instead. The importer replaces the backbone part and checks that it covers it.
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    rng = np.random.default_rng(0)
    variables = jax.tree_util.tree_map(
        lambda leaf: jnp.asarray(rng.normal(size=leaf.shape), leaf.dtype), shapes)
    apply = jax.jit(lambda params, batch_stats, images: model.apply(
        {"params": params, "batch_stats": batch_stats}, images)["features"])
    return variables, apply


def imported_features(path: Path, width: float, size: int):
    """Load `path` into a fresh model and return (pooled features, BackboneWeights, params)."""
    (variables, apply) = flax_model(width)
    weights = pretrained.read_backbone(path)
    params, batch_stats = pretrained.assign_backbone(
        weights, variables["params"], variables["batch_stats"])
    features = np.asarray(apply(params, batch_stats, load_images(size)))
    return features, weights, params


# --------------------------------------------------------------------------------------------
# numpy reference forward passes.


def pad_same(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Zero-pad NHWC `x` as TensorFlow's SAME padding does (the extra pixel goes after)."""
    pads = [(0, 0)]
    for size in x.shape[1:3]:
        output = -(-size // stride)
        total = max((output - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)])


def taps(x: np.ndarray, stride: int):
    """Yield (i, j, strided 3x3 tap) of SAME-padded NHWC `x`."""
    padded = pad_same(x, 3, stride)
    height = -(-x.shape[1] // stride)
    width = -(-x.shape[2] // stride)
    for i in range(3):
        for j in range(3):
            yield i, j, padded[:, i:i + stride * height:stride, j:j + stride * width:stride]


def conv3x3(x: np.ndarray, kernel_hwio: np.ndarray, stride: int) -> np.ndarray:
    return sum(tap @ kernel_hwio[i, j] for i, j, tap in taps(x, stride))


def depthwise3x3(x: np.ndarray, kernel_hwc: np.ndarray, stride: int) -> np.ndarray:
    return sum(tap * kernel_hwc[i, j] for i, j, tap in taps(x, stride))


def reference_tf_slim(constants: dict, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MobileNet v1 from TF-slim tensors: returns (pooled features, logits)."""
    def batch_norm_relu6(x, scope):
        gamma, beta, mean, var = (constants[f"MobilenetV1/{scope}/BatchNorm/{n}"]
                                  for n in ("gamma", "beta", "moving_mean", "moving_variance"))
        return np.clip((x - mean) / np.sqrt(var + EPSILON) * gamma + beta, 0.0, 6.0)

    x = images
    x = batch_norm_relu6(conv3x3(x, constants["MobilenetV1/Conv2d_0/weights"], 2), "Conv2d_0")
    for block, stride in enumerate(DEPTHWISE_STRIDES, start=1):
        # TF-slim depthwise weights are [3, 3, C, 1].
        kernel = constants[f"MobilenetV1/Conv2d_{block}_depthwise/depthwise_weights"][..., 0]
        x = batch_norm_relu6(depthwise3x3(x, kernel, stride), f"Conv2d_{block}_depthwise")
        kernel = constants[f"MobilenetV1/Conv2d_{block}_pointwise/weights"][0, 0]
        x = batch_norm_relu6(x @ kernel, f"Conv2d_{block}_pointwise")
    pooled = x.mean(axis=(1, 2))
    logits = (pooled @ constants["MobilenetV1/Logits/Conv2d_1c_1x1/weights"][0, 0]
              + constants["MobilenetV1/Logits/Conv2d_1c_1x1/biases"])
    return pooled, logits


def fake_quantize(x: np.ndarray, tensor: tflite.Tensor) -> np.ndarray:
    """Round `x` to the uint8 grid of `tensor`'s quantization, as the TFLite kernels do."""
    scale, zero_point = float(tensor.scale[0]), float(tensor.zero_point[0])
    return (np.clip(np.round(x / scale) + zero_point, 0, 255) - zero_point) * scale


def reference_tflite(path: Path, images: np.ndarray, quantize_activations: bool) -> dict:
    """Interpret a TFLite MobileNet v1 operator by operator.

    Weights are the dequantized constants. With `quantize_activations`, every activation is
    rounded to its uint8 grid. This approximates the integer kernels of the TFLite runtime,
    whose fixed-point rescaling may round differently. Returns {tensor index: value}, plus
    the parsed "tensors" and "operators".
    """
    tensors, operators = tflite.read_model(path)
    values = {}
    first_input = operators[0].inputs[0]
    values[first_input] = images
    if quantize_activations:
        values[first_input] = fake_quantize(values[first_input], tensors[first_input])

    for op in operators:
        x = values[op.inputs[0]]
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kernel = tensors[op.inputs[1]].data
            bias = tensors[op.inputs[2]].data
            stride = op.options["strides"][0]
            if op.name == "DEPTHWISE_CONV_2D":
                y = depthwise3x3(x, kernel[0], stride)  # [1, 3, 3, C]
            elif kernel.shape[1] == 1:
                y = x[:, ::stride, ::stride] @ kernel[:, 0, 0, :].T  # [O, 1, 1, I]
            else:
                y = conv3x3(x, kernel.transpose(1, 2, 3, 0), stride)  # [O, 3, 3, I]
            y = y + bias
            if op.options["activation"] == "RELU6":
                y = np.clip(y, 0.0, 6.0)
            else:
                assert op.options["activation"] == "NONE"
        elif op.name == "AVERAGE_POOL_2D":
            y = x.mean(axis=(1, 2), keepdims=True)
        elif op.name in ("RESHAPE", "SQUEEZE"):
            y = x.reshape(x.shape[0], -1)
        elif op.name == "SOFTMAX":
            continue
        else:
            raise AssertionError(f"operator {op.name} is not part of MobileNet v1")
        if quantize_activations:
            y = fake_quantize(y, tensors[op.outputs[0]])
        values[op.outputs[0]] = y
    values["tensors"] = tensors
    values["operators"] = operators
    return values


def tflite_outputs(path: Path, size: int, quantize_activations: bool):
    """Return (pooled features [N, D], logits [N, 1001] or None) of the TFLite reference."""
    values = reference_tflite(path, load_images(size), quantize_activations)
    operators = values["operators"]
    pool = next(op for op in operators if op.name == "AVERAGE_POOL_2D")
    pooled = values[pool.outputs[0]].reshape(len(IMAGES), -1)
    logits_ops = [op for op in operators if op.name == "CONV_2D" and op.index > pool.index]
    logits = values[logits_ops[0].outputs[0]].reshape(len(IMAGES), -1) if logits_ops else None
    return pooled, logits


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """Maximum absolute difference over the largest reference magnitude."""
    return float(np.max(np.abs(actual - reference)) / np.max(np.abs(reference)))


# --------------------------------------------------------------------------------------------
# The float TF-slim frozen graph.


@functools.lru_cache(maxsize=None)
def frozen_graph_results():
    features, weights, params = imported_features(FROZEN_GRAPH, 1.0, 224)
    kernel, bias = weights.classifier
    logits = features @ kernel + bias
    constants, _ = tf_graph.read_graph_constants(FROZEN_GRAPH)
    reference_features, reference_logits = reference_tf_slim(constants, load_images(224))
    return logits, reference_logits, features, reference_features, weights


def test_frozen_graph_top1_classes():
    logits, _, _, _, _ = frozen_graph_results()
    assert logits.shape == (2, 1001)
    assert int(np.argmax(logits[0])) == EXPECTED_TOP1[0]
    assert int(np.argmax(logits[1])) == EXPECTED_TOP1[1]


def test_frozen_graph_matches_numpy_reference():
    logits, reference_logits, features, reference_features, _ = frozen_graph_results()
    assert int(np.argmax(reference_logits[0])) == EXPECTED_TOP1[0]
    assert int(np.argmax(reference_logits[1])) == EXPECTED_TOP1[1]
    assert relative_error(features, reference_features) < 1e-3
    assert relative_error(logits, reference_logits) < 1e-3


def test_frozen_graph_metadata():
    *_, weights = frozen_graph_results()
    assert weights.width == 1.0
    assert weights.activation == "relu6"
    assert not weights.batch_norm_folded
    assert weights.classifier[0].shape == (1024, 1001)
    # The retrained 2-class head and the reshape constant are reported, not loaded.
    assert "final_training_ops/weights/final_weights" in weights.unused
    assert "MobilenetV1/Conv2d_0/weights" not in weights.unused


# --------------------------------------------------------------------------------------------
# TFLite quantized classifiers and the embedding extractor.

# Top-1 of each uint8 classifier on (cat, grace_hopper). The smaller quantized models disagree
# with the float 1.0/224 graph (286, 653) on some images: 282 is "tabby cat" and 401 "academic
# gown". The numpy reference on the file's tensors and Google's LiteRT runtime give the same
# classes, so these are properties of the models, not import errors.
TFLITE_CLASSIFIERS = {
    "mobilenet_v1_0.25_128_quant.tflite": (0.25, 128, (286, 401)),
    "mobilenet_v1_0.5_160_quant.tflite": (0.5, 160, (286, 401)),
    "mobilenet_v1_0.75_192_quant.tflite": (0.75, 192, (282, 653)),
}


@pytest.mark.parametrize("name", sorted(TFLITE_CLASSIFIERS))
def test_tflite_classifier_matches_references(name):
    width, size, expected_top1 = TFLITE_CLASSIFIERS[name]
    features, weights, _ = imported_features(WEIGHTS / name, width, size)
    kernel, bias = weights.classifier
    logits = features @ kernel + bias
    float_features, float_logits = tflite_outputs(WEIGHTS / name, size, False)

    assert weights.width == width
    assert weights.batch_norm_folded
    assert relative_error(features, float_features) < 1e-3
    assert relative_error(logits, float_logits) < 1e-3
    assert tuple(int(i) for i in np.argmax(float_logits, -1)) == expected_top1
    assert tuple(int(i) for i in np.argmax(logits, -1)) == expected_top1


@pytest.mark.parametrize("name", sorted(TFLITE_CLASSIFIERS))
def test_tflite_classifier_close_to_uint8_inference(name):
    # With activations rounded to uint8 as the TFLite runtime does, the top class may change
    # between near-tied classes (cat breeds). So our top-1 class must score at most one step
    # of the uint8 logit grid below the best class. The bound of 1.5 steps absorbs rounding.
    width, size, _ = TFLITE_CLASSIFIERS[name]
    features, weights, _ = imported_features(WEIGHTS / name, width, size)
    kernel, bias = weights.classifier
    top1 = np.argmax(features @ kernel + bias, -1)
    quantized_features, quantized_logits = tflite_outputs(WEIGHTS / name, size, True)
    tensors, operators = tflite.read_model(WEIGHTS / name)
    logits_tensor = tensors[[op for op in operators if op.name == "CONV_2D"][-1].outputs[0]]
    step = float(logits_tensor.scale[0])

    for image in range(len(IMAGES)):
        best = quantized_logits[image].max()
        assert quantized_logits[image, top1[image]] >= best - 1.5 * step, IMAGES[image]
        assert cosine(features[image], quantized_features[image]) > 0.99, IMAGES[image]


def test_tflite_embedding_extractor_matches_reference():
    features, weights, _ = imported_features(EMBEDDING_EXTRACTOR, 1.0, 224)
    float_features, _ = tflite_outputs(EMBEDDING_EXTRACTOR, 224, False)
    quantized_features, _ = tflite_outputs(EMBEDDING_EXTRACTOR, 224, True)

    assert weights.classifier is None
    assert features.shape == (2, 1024)
    assert relative_error(features, float_features) < 1e-3
    for ours, theirs in zip(features, quantized_features):
        assert cosine(ours, theirs) > 0.99


def litert_outputs(path: Path, size: int) -> np.ndarray:
    """Run `path` in Google's LiteRT (TFLite) runtime on both images; return dequantized outputs.

    This is the runtime the files were released for, with its integer kernels, and it shares no
    code with ours. It gets the uint8 pixels from which `load_images` computes its inputs.
    """
    from ai_edge_litert.interpreter import Interpreter  # Imported here: it is slow to load.

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (input_details,) = interpreter.get_input_details()
    (output_details,) = interpreter.get_output_details()
    assert input_details["dtype"] == np.uint8
    outputs = []
    for pixels in load_pixels(size):
        interpreter.set_tensor(input_details["index"], pixels[None])
        interpreter.invoke()
        quantized = interpreter.get_tensor(output_details["index"]).reshape(-1)
        scale, zero_point = output_details["quantization"]
        outputs.append((quantized.astype(np.float32) - zero_point) * scale)
    return np.stack(outputs)


@pytest.mark.parametrize("name", sorted(TFLITE_CLASSIFIERS))
def test_tflite_top1_matches_litert(name):
    width, size, expected_top1 = TFLITE_CLASSIFIERS[name]
    features, weights, _ = imported_features(WEIGHTS / name, width, size)
    kernel, bias = weights.classifier
    ours = np.argmax(features @ kernel + bias, -1)
    probabilities = litert_outputs(WEIGHTS / name, size)  # The files end in a softmax.
    assert probabilities.shape == (2, 1001)
    runtime_top1 = tuple(int(i) for i in np.argmax(probabilities, -1))
    assert runtime_top1 == expected_top1
    assert tuple(int(i) for i in ours) == runtime_top1


def test_embedding_extractor_matches_litert():
    features, _, _ = imported_features(EMBEDDING_EXTRACTOR, 1.0, 224)
    runtime_features = litert_outputs(EMBEDDING_EXTRACTOR, 224)
    assert runtime_features.shape == (2, 1024)
    for image, ours, theirs in zip(IMAGES, features, runtime_features):
        assert cosine(ours, theirs) > 0.99, image


def test_folded_batch_norm_is_identity():
    weights = pretrained.read_backbone(EMBEDDING_EXTRACTOR)
    for name, stats in weights.batch_stats.items():
        # var + epsilon must round to exactly 1 in float32, so BatchNorm adds only the bias.
        assert np.all(stats["var"].astype(np.float32) + np.float32(EPSILON) == 1.0), name
        assert np.all(stats["mean"] == 0.0), name
        assert np.all(weights.params[name]["scale"] == 1.0), name


# --------------------------------------------------------------------------------------------
# load_backbone on a HashingNetwork.


def test_load_backbone_keeps_new_layers(caplog):
    (variables, _) = flax_model(1.0)
    with caplog.at_level(logging.INFO):
        params, batch_stats = pretrained.load_backbone(
            FROZEN_GRAPH, "tf_frozen_graph", variables["params"], variables["batch_stats"],
            activation="relu")

    for layer in ("hash", "classifier"):
        for name, value in params[layer].items():
            assert np.array_equal(value, variables["params"][layer][name]), (layer, name)
    constants, _ = tf_graph.read_graph_constants(FROZEN_GRAPH)
    np.testing.assert_array_equal(params["backbone"]["Conv2d_3_pointwise"]["kernel"],
                                  constants["MobilenetV1/Conv2d_3_pointwise/weights"])
    np.testing.assert_array_equal(batch_stats["backbone"]["Conv2d_0_bn"]["var"],
                                  constants["MobilenetV1/Conv2d_0/BatchNorm/moving_variance"])
    # The unused retrained head is listed, and the ReLU/ReLU6 mismatch is reported.
    assert "final_training_ops/weights/final_weights" in caplog.text
    assert "trained with relu6 activations but the model uses relu" in caplog.text


# --------------------------------------------------------------------------------------------
# Bad input.


def varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_field(number: int, payload: bytes) -> bytes:
    """Encode one length-delimited protobuf field."""
    return varint(number << 3 | protobuf.LENGTH_DELIMITED) + varint(len(payload)) + payload


def graph_without(node_name: str) -> bytes:
    """Re-encode the frozen graph without the node `node_name`."""
    kept = []
    for number, wire_type, value in protobuf.iter_fields(FROZEN_GRAPH.read_bytes()):
        assert wire_type == protobuf.LENGTH_DELIMITED
        if number == 1 and encode_field(1, node_name.encode()) in bytes(value):
            continue
        kept.append(encode_field(number, bytes(value)))
    return b"".join(kept)


def test_wrong_width_rejected():
    (variables, _) = flax_model(1.0)
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.load_backbone(WEIGHTS / "mobilenet_v1_0.25_128_quant.tflite", "auto",
                                 variables["params"], variables["batch_stats"])
    message = str(error.value)
    assert "width mismatch" in message
    assert "MobilenetV1/MobilenetV1/Conv2d_0/Conv2D_Fold" in message
    assert "(3, 3, 3, 8)" in message
    assert "(3, 3, 3, 32)" in message
    assert "set model.width to 0.25" in message


def test_missing_tensor_rejected(tmp_path):
    path = tmp_path / "incomplete.pb"
    path.write_bytes(graph_without("MobilenetV1/Conv2d_7_pointwise/weights"))
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(path, "tf_frozen_graph")
    assert "missing tensor 'MobilenetV1/Conv2d_7_pointwise/weights'" in str(error.value)


def test_shape_mismatch_rejected():
    (variables, _) = flax_model(1.0)
    weights = pretrained.read_backbone(FROZEN_GRAPH)
    params = dict(weights.params)
    params["Conv2d_5_pointwise"] = {"kernel": weights.params["Conv2d_5_pointwise"]["kernel"][
        ..., :100]}
    broken = dataclasses.replace(weights, params=params)
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.assign_backbone(broken, variables["params"], variables["batch_stats"])
    message = str(error.value)
    assert "params/Conv2d_5_pointwise/kernel" in message
    assert "'MobilenetV1/Conv2d_5_pointwise/weights'" in message
    assert "(1, 1, 256, 100)" in message
    assert "(1, 1, 256, 256)" in message


def test_truncated_frozen_graph_rejected(tmp_path):
    path = tmp_path / "truncated.pb"
    path.write_bytes(FROZEN_GRAPH.read_bytes()[:1_000_000])
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(path, "tf_frozen_graph")
    assert "is not a valid GraphDef protobuf" in str(error.value)
    assert "remain" in str(error.value)


def test_garbage_file_rejected(tmp_path):
    path = tmp_path / "garbage.bin"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(path, "auto")
    assert "is not a valid GraphDef protobuf" in str(error.value)
    assert "detected from the contents" in str(error.value)
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(path, "tflite")
    assert "is not a TFLite model" in str(error.value)


def test_tflite_file_as_frozen_graph_rejected():
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(EMBEDDING_EXTRACTOR, "tf_frozen_graph")
    assert "is not a valid GraphDef protobuf" in str(error.value)


def test_truncated_tflite_rejected(tmp_path):
    path = tmp_path / "truncated.tflite"
    path.write_bytes(EMBEDDING_EXTRACTOR.read_bytes()[:500_000])
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(path, "auto")
    assert "is a corrupt TFLite model" in str(error.value)
    assert "outside the 500000-byte buffer" in str(error.value)


def test_unknown_format_and_missing_file_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown pretrained format 'onnx'"):
        pretrained.read_backbone(FROZEN_GRAPH, "onnx")
    with pytest.raises(FileNotFoundError, match="not_there.pb"):
        pretrained.read_backbone(tmp_path / "not_there.pb", "auto")


# --------------------------------------------------------------------------------------------
# TensorFlow V2 checkpoints. No checkpoint written by TensorFlow is available here, so this
# writer builds one from LevelDB's table format and TensorFlow's tensor_bundle.proto. The tests
# check that the reader agrees with this writer, not with TensorFlow itself.


def table_block(entries: list[tuple[bytes, bytes]], restart_interval: int = 4) -> bytes:
    """Encode a table block with prefix-compressed keys and a restart point every few keys."""
    body = bytearray()
    restarts = []
    previous = b""
    for index, (key, value) in enumerate(entries):
        shared = 0
        if index % restart_interval == 0:
            restarts.append(len(body))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        body += varint(shared) + varint(len(key) - shared) + varint(len(value))
        body += key[shared:] + value
        previous = key
    restarts = restarts or [0]
    return bytes(body) + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack(
        "<I", len(restarts))


def write_checkpoint(prefix: Path, variables: dict[str, np.ndarray], per_block: int = 20):
    """Write `variables` (float32 or int64) as a one-shard V2 checkpoint at `prefix`."""
    data = bytearray()
    entries = [(b"", varint(1 << 3) + varint(1))]  # BundleHeaderProto.num_shards = 1.
    for name in sorted(variables):
        array = np.ascontiguousarray(variables[name])
        dtype_enum = {np.dtype("float32"): 1, np.dtype("int64"): 9}[array.dtype]
        shape = b"".join(encode_field(2, varint(1 << 3) + varint(size)) for size in array.shape)
        entry = (varint(1 << 3) + varint(dtype_enum) + encode_field(2, shape)
                 + varint(4 << 3) + varint(len(data)) + varint(5 << 3) + varint(array.nbytes))
        entries.append((name.encode(), entry))
        data += array.tobytes()
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))

    table = bytearray()
    index_entries = []
    for start in range(0, len(entries), per_block):
        chunk = entries[start:start + per_block]
        block = table_block(chunk)
        index_entries.append((chunk[-1][0], varint(len(table)) + varint(len(block))))
        table += block + b"\0\0\0\0\0"  # Compression type 0 and an unchecked CRC.
    handles = []
    for block in (table_block([]), table_block(index_entries, restart_interval=1)):
        handles.append(varint(len(table)) + varint(len(block)))
        table += block + b"\0\0\0\0\0"
    footer = b"".join(handles).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(bytes(table + footer))


def test_checkpoint_matches_frozen_graph(tmp_path):
    constants, _ = tf_graph.read_graph_constants(FROZEN_GRAPH)
    variables = {name: value for name, value in constants.items()
                 if name.startswith("MobilenetV1/Conv2d_") or "/Logits/" in name}
    variables["global_step"] = np.asarray(123456, np.int64)
    prefix = tmp_path / "model.ckpt-123456"
    write_checkpoint(prefix, variables)

    from_checkpoint = pretrained.read_backbone(prefix, "auto")
    from_graph = pretrained.read_backbone(FROZEN_GRAPH)
    assert from_checkpoint.format == "tf_checkpoint"
    assert from_checkpoint.unused == ("global_step",)
    for tree in ("params", "batch_stats"):
        ours, theirs = getattr(from_checkpoint, tree), getattr(from_graph, tree)
        for module in theirs:
            for name in theirs[module]:
                np.testing.assert_array_equal(ours[module][name], theirs[module][name])
    np.testing.assert_array_equal(from_checkpoint.classifier[0], from_graph.classifier[0])


def test_checkpoint_errors(tmp_path):
    prefix = tmp_path / "model.ckpt"
    write_checkpoint(prefix, {"MobilenetV1/Conv2d_0/weights": np.zeros((3, 3, 3, 32),
                                                                        np.float32)})
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(prefix, "tf_checkpoint")
    assert "missing tensor 'MobilenetV1/Conv2d_0/BatchNorm/gamma'" in str(error.value)

    index = Path(f"{prefix}.index")
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(prefix, "tf_checkpoint")
    assert "is not a TensorFlow checkpoint index" in str(error.value)

    write_checkpoint(prefix, {"MobilenetV1/Conv2d_0/weights": np.zeros((3, 3, 3, 32),
                                                                        np.float32)})
    Path(f"{prefix}.data-00000-of-00001").write_bytes(b"\0" * 100)
    with pytest.raises(pretrained.PretrainedWeightsError) as error:
        pretrained.read_backbone(prefix, "tf_checkpoint")
    assert "'MobilenetV1/Conv2d_0/weights'" in str(error.value)
    assert "claims 3456 bytes at offset 0 of a 100-byte data file" in str(error.value)


# --------------------------------------------------------------------------------------------
# Optimizer settings for fine-tuning a pretrained backbone.


def sgd_updates(multiplier: float, freeze_backbone: bool) -> tuple[dict, float]:
    """Return the first SGD updates for unit gradients, and the base learning rate."""
    config = ml_collections.ConfigDict({
        "num_steps": 100,
        "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True,
                      "weight_decay": 0.0, "decay_steps": 0, "decay_factor": 0.1,
                      "new_layer_lr_multiplier": multiplier,
                      "freeze_backbone": freeze_backbone}})
    params = {"backbone": {"Conv2d_0": {"kernel": jnp.ones(3)}},
              "hash": {"kernel": jnp.ones(2)}, "classifier": {"bias": jnp.ones(1)}}
    optimizer = training.make_optimizer(config)
    updates, _ = optimizer.update(params, optimizer.init(params), params)
    return jax.tree_util.tree_map(np.asarray, updates), config.optimizer.learning_rate


def test_new_layer_learning_rate_multiplier():
    updates, learning_rate = sgd_updates(10.0, False)
    # Nesterov SGD's first step with momentum m moves by lr * (1 + m) per unit gradient.
    step = learning_rate * (1 + 0.9)
    np.testing.assert_allclose(updates["backbone"]["Conv2d_0"]["kernel"], -step, rtol=1e-6)
    np.testing.assert_allclose(updates["hash"]["kernel"], -10 * step, rtol=1e-6)
    np.testing.assert_allclose(updates["classifier"]["bias"], -10 * step, rtol=1e-6)


def test_frozen_backbone_gets_no_updates():
    updates, learning_rate = sgd_updates(1.0, True)
    step = learning_rate * (1 + 0.9)
    assert np.all(updates["backbone"]["Conv2d_0"]["kernel"] == 0.0)
    np.testing.assert_allclose(updates["hash"]["kernel"], -step, rtol=1e-6)


def frozen_step_results(freeze_backbone: bool):
    """One real train step of a small MobileNet on random images, without augmentation.

    Returns (state before, state after, step metrics, images, labels, model, config).
    """
    config = default.get_config("16")
    with config.unlocked():
        config.model.width = 0.25
        config.batch_size = 8
        config.augment.crop_padding = 0
        config.augment.flip = False
        config.optimizer.freeze_backbone = freeze_backbone
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (8,), dtype=np.int32)
    model = build_model(config, num_classes=4)
    optimizer = training.make_optimizer(config)
    mesh = training.make_mesh(jax.devices()[:1])
    before = jax.device_get(training.create_train_state(model, optimizer, config))
    state, state_sharding = training.replicate_state(before, mesh)
    step = training.make_train_step(model, optimizer, config, mesh, state_sharding)
    after, metrics = step(state, images, labels, jax.random.key(0))
    return before, jax.device_get(after), jax.device_get(metrics), images, labels, model, config


def numpy_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def test_frozen_backbone_keeps_statistics():
    before, after, _, _, _, _, _ = frozen_step_results(True)
    leaves = jax.tree_util.tree_leaves
    for old, new in zip(leaves(before.params["backbone"]), leaves(after.params["backbone"])):
        np.testing.assert_array_equal(new, old)
    for old, new in zip(leaves(before.batch_stats), leaves(after.batch_stats)):
        np.testing.assert_array_equal(new, old)
    assert not np.array_equal(after.params["hash"]["kernel"], before.params["hash"]["kernel"])
    assert not np.array_equal(after.params["classifier"]["kernel"],
                              before.params["classifier"]["kernel"])


def test_frozen_backbone_inference_mode():
    # The step's loss must be that of the model in inference mode (BatchNorm on its moving
    # statistics), computed here by a separate apply and a numpy cross-entropy.
    before, _, metrics, images, labels, model, config = frozen_step_results(True)
    inputs = images.astype(np.float32) / 127.5 - 1.0
    assert config.model.input_size == 32
    outputs = model.apply({"params": before.params, "batch_stats": before.batch_stats},
                          inputs, train=False)
    training_mode = model.clone(freeze_backbone=False).apply(
        {"params": before.params, "batch_stats": before.batch_stats}, inputs, train=True,
        mutable=["batch_stats"])[0]
    expected = numpy_cross_entropy(np.asarray(outputs["logits"]), labels)
    np.testing.assert_allclose(float(metrics["cross_entropy"]), expected, rtol=1e-5)
    # Batch statistics of random images give a different loss, so the check above can fail.
    assert abs(numpy_cross_entropy(np.asarray(training_mode["logits"]), labels) - expected) > 1e-3


def test_trainable_backbone_updates_statistics():
    before, after, _, _, _, _, _ = frozen_step_results(False)
    leaves = jax.tree_util.tree_leaves
    assert any(not np.array_equal(old, new)
               for old, new in zip(leaves(before.batch_stats), leaves(after.batch_stats)))
