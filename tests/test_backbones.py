"""The Table 2 backbones (VGG-16, SqueezeNet v1.0, GoogLeNet) and the complexity counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from mvs_jax import complexity
from mvs_jax.models import BACKBONES, INPUT_NORMALIZATION, build_model
from mvs_jax.models import alexnet, googlenet, squeezenet, vgg
from mvs_jax.models.mobilenet import BLOCKS

NEW_BACKBONES = ("vgg_16", "squeezenet_v1_0", "googlenet")


def _fire(inputs: int, squeeze: int, expand: int) -> int:
    # squeeze 1x1 + expand 1x1 + expand 3x3 (equal expand widths in v1.0), each with biases.
    return (inputs * squeeze + squeeze) + (squeeze * expand + expand) + (9 * squeeze * expand
                                                                         + expand)


def _inception(inputs: int, n1: int, r3: int, n3: int, r5: int, n5: int, pool: int) -> int:
    return ((inputs * n1 + n1) + (inputs * r3 + r3) + (9 * r3 * n3 + n3) + (inputs * r5 + r5)
            + (25 * r5 * n5 + n5) + (inputs * pool + pool))


# Parameters of each network with a 1000-class classifier at 224x224, from the layer shapes.
HAND_PARAMETERS = {
    # Conv2d_0 3*3*3*32 = 864; depthwise 9 * (32+64+128+128+256+256+5*512+512+1024) = 44640;
    # pointwise 32*64 + 64*128 + 128*128 + 128*256 + 256*256 + 256*512 + 5*512*512 + 512*1024
    # + 1024*1024 = 3139584; BatchNorm scale and bias on 32 + 4960 (depthwise) + 5952
    # (pointwise) channels = 2 * 10944 = 21888; classifier 1024*1000 + 1000 = 1025000.
    "mobilenet_v1": 864 + 44640 + 3139584 + 21888 + 1025000,
    # CaffeNet: conv1 11*11*3*96+96, conv2 5*5*48*256+256 (2 groups), conv3 3*3*256*384+384,
    # conv4 3*3*192*384+384, conv5 3*3*192*256+256, fc6 6*6*256*4096+4096 (the 224 input also
    # gives 6x6 after pool5), fc7 4096*4096+4096, fc8 4096*1000+1000.
    "alexnet": (34944 + 307456 + 885120 + 663936 + 442624 + 37752832 + 16781312 + 4097000),
    # conv1 7*7*3*96+96 = 14208; fire2..fire9; conv10 512*1000+1000 = 513000.
    "squeezenet_v1_0": (14208 + _fire(96, 16, 64) + _fire(128, 16, 64) + _fire(128, 32, 128)
                        + _fire(256, 32, 128) + _fire(256, 48, 192) + _fire(384, 48, 192)
                        + _fire(384, 64, 256) + _fire(512, 64, 256) + 513000),
    # conv1 7*7*3*64+64 = 9472; conv2 reduce 64*64+64 = 4160; conv2 9*64*192+192 = 110784;
    # inception 3a..5b; classifier 1024*1000+1000 = 1025000.
    "googlenet": (9472 + 4160 + 110784
                  + _inception(192, 64, 96, 128, 16, 32, 32)
                  + _inception(256, 128, 128, 192, 32, 96, 64)
                  + _inception(480, 192, 96, 208, 16, 48, 64)
                  + _inception(512, 160, 112, 224, 24, 64, 64)
                  + _inception(512, 128, 128, 256, 24, 64, 64)
                  + _inception(512, 112, 144, 288, 32, 64, 64)
                  + _inception(528, 256, 160, 320, 32, 128, 128)
                  + _inception(832, 256, 160, 320, 32, 128, 128)
                  + _inception(832, 384, 192, 384, 48, 128, 128) + 1025000),
    # 13 convolutions 3x3 with biases: 1792 + 36928 + 73856 + 147584 + 295168 + 2 * 590080
    # + 1180160 + 5 * 2359808 = 14714688; fc6 7*7*512*4096+4096 = 102764544;
    # fc7 4096*4096+4096 = 16781312; fc8 4096*1000+1000 = 4097000.
    "vgg_16": 14714688 + 102764544 + 16781312 + 4097000,
}


def test_hand_counts_totals():
    # The sums written out. torchvision's squeezenet1_0 page lists the same 1,248,424.
    assert HAND_PARAMETERS["mobilenet_v1"] == 4_231_976
    assert HAND_PARAMETERS["alexnet"] == 60_965_224
    assert HAND_PARAMETERS["squeezenet_v1_0"] == 1_248_424
    assert HAND_PARAMETERS["googlenet"] == 6_998_552
    assert HAND_PARAMETERS["vgg_16"] == 138_357_544


@pytest.mark.parametrize("backbone", sorted(HAND_PARAMETERS))
def test_parameter_count_at_224(backbone):
    variables = complexity.abstract_variables(complexity.reference_network(backbone), 224)
    assert complexity.count_parameters(variables["params"]) == HAND_PARAMETERS[backbone]


def _mobilenet_multiply_adds_by_hand(size: int = 224) -> int:
    # Conv2d_0: stride 2 with SAME padding, 3*3*3 products per output, 32 channels.
    size = -(-size // 2)
    total = size * size * 27 * 32
    channels = 32
    for stride, out_channels in BLOCKS:
        size = -(-size // stride)
        total += size * size * 9 * channels  # depthwise 3x3
        total += size * size * channels * out_channels  # pointwise 1x1
        channels = out_channels
    return total + channels * 1000  # classifier


def test_mobilenet_multiply_adds():
    counts = complexity.measure_complexity(complexity.reference_network("mobilenet_v1"), 224)
    assert counts.multiply_adds == _mobilenet_multiply_adds_by_hand()
    # The MobileNet paper gives 569M for 1.0 MobileNet-224.
    assert abs(counts.multiply_adds / 569e6 - 1) < 0.05


def test_multiply_adds_of_small_layers_by_hand():
    x = jnp.zeros((1, 8, 8, 4))
    # 3x3 SAME convolution to 6 channels: 8*8 positions * 6 outputs * 3*3*4 products = 13824.
    conv = nn.Conv(6, (3, 3))
    params = jax.eval_shape(conv.init, jax.random.key(0), x)
    assert complexity.count_multiply_adds(conv.apply, params, x) == 8 * 8 * 6 * 36
    # Two feature groups halve the products per output: 8*8*6*(3*3*2) = 6912.
    grouped = nn.Conv(6, (3, 3), feature_group_count=2)
    params = jax.eval_shape(grouped.init, jax.random.key(0), x)
    assert complexity.count_multiply_adds(grouped.apply, params, x) == 8 * 8 * 6 * 18
    # A dense layer on [2, 5] -> [2, 3] per call: 2 * 5 * 3 = 30.
    dense = nn.Dense(3)
    vector = jnp.zeros((2, 5))
    params = jax.eval_shape(dense.init, jax.random.key(0), vector)
    assert complexity.count_multiply_adds(dense.apply, params, vector) == 30


def test_multiply_adds_scale_with_scan_length():
    def repeated(x):
        return jax.lax.scan(lambda carry, _: (carry @ jnp.ones((4, 4)), None), x, None,
                            length=3)[0]

    assert complexity.count_multiply_adds(repeated, jnp.zeros((1, 4))) == 3 * 16


def test_multiply_adds_reject_while_loop():
    def looped(x):
        return jax.lax.while_loop(lambda c: c.sum() < 10, lambda c: c @ jnp.ones((2, 2)), x)

    with pytest.raises(NotImplementedError, match="'while' primitive"):
        complexity.count_multiply_adds(looped, jnp.ones((1, 2)))


def test_reference_network_rejects_unknown_name():
    with pytest.raises(ValueError, match="Unknown backbone 'vgg16'; valid backbones"):
        complexity.reference_network("vgg16")


def test_new_backbones_are_registered():
    for name in NEW_BACKBONES:
        assert name in BACKBONES
        assert name in INPUT_NORMALIZATION


def test_spatial_sizes_at_224():
    # SqueezeNet: conv1 (224 - 7) // 2 + 1 = 109; Caffe pools round up: ceil(106 / 2) + 1 = 54,
    # ceil(51 / 2) + 1 = 27, and pool8 gives ceil(24 / 2) + 1 = 13.
    assert squeezenet.pool_input_sizes(224) == (109, 54, 27)
    assert alexnet.pooled_size(27) == 13
    # GoogLeNet: conv1 (224 + 6 - 7) // 2 + 1 = 112, then 56, 28, 14 and 7 after the pools.
    assert googlenet.pool_input_sizes(224) == (112, 56, 28, 14)
    assert alexnet.pooled_size(14) == 7


def test_minimum_input_sizes():
    # Each model's first size at which every max-pool gets one full 3x3 window (VGG: 2x2 pools
    # leave one pixel).
    assert vgg.MIN_INPUT_SIZE == 32
    # SqueezeNet at 29: conv1 12, pool -> 6, pool -> 3; at 28: conv1 11, 5, 2.
    assert squeezenet.MIN_INPUT_SIZE == 29
    assert squeezenet.pool_input_sizes(29) == (12, 6, 3)
    assert squeezenet.pool_input_sizes(28)[2] == 2
    # GoogLeNet at 47: conv1 (47 + 6 - 7) // 2 + 1 = 24, then 12, 6, 3; at 46: 23, 11, 5, 2.
    assert googlenet.MIN_INPUT_SIZE == 47
    assert googlenet.pool_input_sizes(47) == (24, 12, 6, 3)
    assert googlenet.pool_input_sizes(46)[3] == 2


@pytest.mark.parametrize("backbone, minimum", [
    ("alexnet", alexnet.MIN_INPUT_SIZE), ("vgg_16", vgg.MIN_INPUT_SIZE),
    ("squeezenet_v1_0", squeezenet.MIN_INPUT_SIZE), ("googlenet", googlenet.MIN_INPUT_SIZE)])
def test_small_input_rejected_naming_minimum(backbone, minimum):
    config = default.get_config("16")
    config.model.backbone = backbone
    model = build_model(config, num_classes=10)
    below = jnp.zeros((1, minimum - 1, minimum - 1, 3))
    with pytest.raises(ValueError, match=(f"at least {minimum}x{minimum} pixels.*got "
                                          f"{minimum - 1}x{minimum - 1}.*model.input_size")):
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x), below)
    at_minimum = jnp.zeros((1, minimum, minimum, 3))
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x), at_minimum)


@pytest.mark.parametrize("backbone, size, features", [
    ("vgg_16", 32, 4096), ("squeezenet_v1_0", 32, 512), ("googlenet", 48, 1024)])
def test_backbone_under_hash_head(backbone, size, features):
    config = default.get_config("16")
    config.model.backbone = backbone
    model = build_model(config, num_classes=10)
    images = jax.random.uniform(jax.random.key(1), (2, size, size, 3), minval=-1.0, maxval=1.0)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x))(images)
    assert "batch_stats" not in variables

    outputs = jax.jit(lambda v, x: model.apply(v, x, train=True, rngs={"dropout":
                                                                         jax.random.key(2)}))(
        variables, images)
    assert outputs["features"].shape == (2, features)
    assert outputs["hash"].shape == (2, 16)
    assert outputs["logits"].shape == (2, 10)
    assert np.all(np.isfinite(outputs["logits"]))
    hash_values = np.asarray(outputs["hash"])
    assert np.all((hash_values > 0) & (hash_values < 1))


def test_vgg_fc6_inputs_follow_input_size():
    # After five halvings, 224 leaves 7x7x512 = 25088 inputs to fc6 and 32 leaves 1x1x512.
    for size, inputs in ((224, 25088), (32, 512)):
        variables = complexity.abstract_variables(vgg.VGG16(), size)
        assert variables["params"]["fc6"]["kernel"].shape == (inputs, 4096)


def test_squeezenet_classifier_is_conv10():
    variables = complexity.abstract_variables(squeezenet.SqueezeNet(classifier_channels=1000), 224)
    assert variables["params"]["conv10"]["kernel"].shape == (1, 1, 512, 1000)
    assert "conv10" not in complexity.abstract_variables(squeezenet.SqueezeNet(), 224)["params"]
