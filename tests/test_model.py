"""MobileNet v1 architecture, parameter count, depthwise implementations and codes."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mvs_jax.models import HashingNetwork, MobileNetV1, binary_codes
from mvs_jax.models.mobilenet import DepthwiseConv3x3, PointwiseConv, straight_through_sign


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _init(model, size):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


def test_parameter_count_paper_configuration():
    # Width 1.0, K = 64, C = 162, computed by hand from MobileNet's Table 1:
    # first conv 3*3*3*32 = 864, BN 2*32 = 64;
    # depthwise kernels 9 * (32+64+128+128+256+256+512*6+1024) = 9 * 4960 = 44640,
    # depthwise BN 2 * 4960 = 9920;
    # pointwise kernels 32*64 + 64*128 + 128*128 + 128*256 + 256*256 + 256*512 + 5*512*512
    #   + 512*1024 + 1024*1024 = 3139584, pointwise BN 2 * (64+128+128+256+256+512*6+1024*2)
    #   = 2 * 5952 = 11904;
    # hash 1024*64 + 64 = 65600; classifier 64*162 + 162 = 10530.
    expected = 864 + 64 + 44640 + 9920 + 3139584 + 11904 + 65600 + 10530
    assert expected == 3_283_106
    model = HashingNetwork(MobileNetV1(width=1.0), num_bits=64, num_classes=162)
    variables = _init(model, 224)
    assert _count(variables["params"]) == expected
    # float32 size in MB (10^6 bytes), the paper's "13 MB".
    assert round(expected * 4 / 1e6) == 13


def test_batch_stats_count_paper_configuration():
    # Moving mean and variance for every BatchNorm channel: 2 * (32 + 4960 + 5952).
    model = HashingNetwork(MobileNetV1(width=1.0), num_bits=64, num_classes=162)
    assert _count(_init(model, 224)["batch_stats"]) == 2 * (32 + 4960 + 5952)


@pytest.mark.parametrize("width,channels", [(0.25, (8, 256)), (0.5, (16, 512)),
                                            (0.75, (24, 768))])
def test_width_multiplier_channels(width, channels):
    params = _init(HashingNetwork(MobileNetV1(width=width), 16, 10), 32)["params"]
    backbone = params["backbone"]
    assert backbone["Conv2d_0"]["kernel"].shape == (3, 3, 3, channels[0])
    assert backbone["Conv2d_13_pointwise"]["kernel"].shape == (1, 1, channels[1], channels[1])


def test_spatial_size_follows_strides():
    # Strides 2 (first conv), then 1,2,1,2,1,2,1,1,1,1,1,2,1: 224 / 32 = 7.
    model = MobileNetV1(width=0.25)
    x = jnp.zeros((1, 224, 224, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    _, state = model.apply(variables, x, train=False,
                           capture_intermediates=True, mutable=["intermediates"])
    last = state["intermediates"]["Conv2d_13_pointwise"]["__call__"][0]
    assert last.shape == (1, 7, 7, 256)


@pytest.mark.parametrize("stride,size", [(1, 8), (2, 8), (2, 7), (1, 5)])
def test_depthwise_shift_equals_grouped_conv(stride, size):
    x = jax.random.normal(jax.random.key(1), (2, size, size, 6))
    shift = DepthwiseConv3x3(stride, "shift")
    conv = DepthwiseConv3x3(stride, "conv")
    variables = shift.init(jax.random.key(2), x)
    np.testing.assert_allclose(shift.apply(variables, x), conv.apply(variables, x),
                               rtol=1e-5, atol=1e-5)


def test_depthwise_matches_numpy_reference():
    # Plain numpy loops with TensorFlow's SAME padding (odd size, stride 2: pad 1 before, 1 after).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 1, 2)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.zeros((1, 3, 3, 2), np.float32)
    for i in range(3):
        for j in range(3):
            window = padded[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
            expected[0, i, j] = (window * kernel[:, :, 0, :]).sum(axis=(0, 1))
    layer = DepthwiseConv3x3(2, "shift")
    output = layer.apply({"params": {"kernel": jnp.asarray(kernel)}}, jnp.asarray(x))
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)


def test_whole_network_shift_equals_conv():
    x = jax.random.uniform(jax.random.key(3), (2, 32, 32, 3), minval=-1, maxval=1)
    shift = HashingNetwork(MobileNetV1(width=0.25, depthwise="shift"), 16, 10)
    conv = HashingNetwork(MobileNetV1(width=0.25, depthwise="conv"), 16, 10)
    variables = shift.init(jax.random.key(4), x)
    out_shift = shift.apply(variables, x)
    out_conv = conv.apply(variables, x)
    np.testing.assert_allclose(out_shift["logits"], out_conv["logits"], rtol=1e-4, atol=1e-5)


def test_outputs_and_codes():
    model = HashingNetwork(MobileNetV1(width=0.25), num_bits=12, num_classes=7)
    x = jax.random.uniform(jax.random.key(5), (3, 32, 32, 3))
    outputs = model.apply(model.init(jax.random.key(6), x), x)
    assert outputs["hash"].shape == (3, 12)
    assert outputs["logits"].shape == (3, 7)
    np.testing.assert_allclose(outputs["hash"], jax.nn.sigmoid(outputs["hash_logits"]), rtol=1e-6)
    codes = binary_codes(outputs["hash"])
    assert codes.dtype == jnp.uint8
    np.testing.assert_array_equal(codes, np.asarray(outputs["hash"]) >= 0.5)


def test_sign_classifier_reads_codes():
    # With classifier_input="sign", the classifier is the same Dense layer applied to sign(z):
    # recompute it in numpy from the parameters and the hash logits.
    model = HashingNetwork(MobileNetV1(width=0.25), num_bits=12, num_classes=7,
                           classifier_input="sign")
    x = jax.random.uniform(jax.random.key(5), (3, 32, 32, 3))
    variables = model.init(jax.random.key(6), x)
    outputs = model.apply(variables, x)
    z = np.asarray(outputs["hash_logits"])
    classifier = variables["params"]["classifier"]
    expected = (np.where(z >= 0, 1.0, -1.0) @ np.asarray(classifier["kernel"])
                + np.asarray(classifier["bias"]))
    np.testing.assert_allclose(outputs["logits"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["hash"], jax.nn.sigmoid(outputs["hash_logits"]), rtol=1e-6)


def test_straight_through_sign_gradient():
    values = jnp.array([-2.0, -0.1, 0.0, 0.3, 5.0])
    np.testing.assert_array_equal(straight_through_sign(values), [-1, -1, 1, 1, 1])
    weights = jnp.array([1.0, -2.0, 3.0, 0.5, 4.0])
    gradient = jax.grad(lambda v: jnp.sum(weights * straight_through_sign(v)))(values)
    np.testing.assert_array_equal(gradient, weights)


def test_unknown_classifier_input_rejected():
    model = HashingNetwork(MobileNetV1(width=0.25), num_bits=4, num_classes=3,
                           classifier_input="tanh")
    with pytest.raises(ValueError, match=r"Unknown classifier_input 'tanh'; valid: \['hash'"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_binary_codes_threshold_at_half():
    codes = binary_codes(jnp.array([0.0, 0.49999, 0.5, 0.7, 1.0]))
    np.testing.assert_array_equal(codes, [0, 0, 1, 1, 1])


def test_unknown_activation_rejected():
    model = MobileNetV1(activation="gelu")
    with pytest.raises(ValueError, match="gelu"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)


def test_relu6_caps_activations():
    # With relu6 no pooled feature can exceed 6, whatever the input.
    x = jnp.full((1, 32, 32, 3), 1000.0)
    relu6 = MobileNetV1(width=0.25, activation="relu6")
    variables = relu6.init(jax.random.key(0), x, train=False)
    variables = flax.core.unfreeze(variables)
    assert float(relu6.apply(variables, x, train=False).max()) <= 6.0


def test_pointwise_matches_1x1_convolution():
    x = jax.random.normal(jax.random.key(7), (2, 5, 5, 6))
    kernel = jax.random.normal(jax.random.key(8), (1, 1, 6, 4))
    expected = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    output = PointwiseConv(4).apply({"params": {"kernel": kernel}}, x)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
