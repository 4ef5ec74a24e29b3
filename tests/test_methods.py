"""The method registry, `apply_method`, and the AlexNet (CaffeNet) backbone of DLBH."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from mvs_jax import losses, methods, train
from mvs_jax.models import BACKBONES, INPUT_NORMALIZATION, HashingNetwork, build_model
from mvs_jax.models.alexnet import (MIN_INPUT_SIZE, AlexNet, GroupedConv,
                                    local_response_normalization, pool_input_sizes, pooled_size)


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


# --- Registry and apply_method --------------------------------------------------------------


def test_every_method_names_registered_parts():
    for name, method in methods.METHODS.items():
        if name == methods.CUSTOM:
            continue
        assert method.backbone in BACKBONES, name
        assert method.backbone in INPUT_NORMALIZATION, name
        assert method.loss in losses.LOSSES, name


def test_every_loss_has_a_method():
    registered = {method.loss for method in methods.METHODS.values()}
    assert set(losses.LOSSES) <= registered


def test_default_config_matches_default_method():
    config = default.get_config()
    assert config.method == methods.DEFAULT_METHOD
    assert config.model.backbone == methods.METHODS[methods.DEFAULT_METHOD].backbone
    assert config.loss.name == methods.METHODS[methods.DEFAULT_METHOD].loss


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown method 'hashnet2'; valid methods: \['csq'"):
        methods.get_method("hashnet2")


def test_train_rejects_unknown_method(tmp_path):
    config = default.get_config()
    config.method = "lsh"
    with pytest.raises(ValueError, match="Unknown method 'lsh'; valid methods"):
        train.train_and_evaluate(config, str(tmp_path))


def test_unknown_backbone_lists_valid_names():
    config = default.get_config()
    config.model.backbone = "vgg16"
    with pytest.raises(ValueError, match=r"Unknown backbone 'vgg16'; valid backbones: \['alexnet'"):
        build_model(config, num_classes=10)


def test_apply_method_sets_loss():
    config = default.get_config("32")
    config.method = "ssdh"
    resolved = methods.apply_method(config)
    assert resolved.loss.name == "ssdh"
    assert resolved.model.backbone == "mobilenet_v1"
    # The input config is left unchanged.
    assert config.loss.name == "cross_entropy"


def test_apply_method_dlbh_changes():
    config = default.get_config()
    config.method = "dlbh"
    resolved = methods.apply_method(config)
    assert resolved.model.backbone == "alexnet"
    assert resolved.loss.name == "cross_entropy"
    assert resolved.optimizer.learning_rate == 0.01
    assert resolved.is_locked


def test_greedyhash_sets_sign_classifier():
    config = default.get_config("16")
    config.method = "greedyhash"
    resolved = methods.apply_method(config)
    assert resolved.loss.name == "greedyhash"
    assert resolved.model.classifier_input == "sign"
    train.validate_config(resolved)
    assert build_model(resolved, num_classes=10).classifier_input == "sign"


def test_unknown_classifier_input_config():
    config = default.get_config()
    config.model.classifier_input = "tanh"
    with pytest.raises(ValueError, match=r"model.classifier_input 'tanh'; valid: \['hash'"):
        build_model(config, num_classes=10)


def test_apply_method_rejects_conflicting_loss():
    config = default.get_config()
    config.loss.name = "dpsh"
    with pytest.raises(ValueError, match="loss.name='dpsh' conflicts with method 'paper'"):
        methods.apply_method(config)


def test_custom_method_keeps_config():
    config = default.get_config()
    config.method = "custom"
    config.model.backbone = "alexnet"
    config.loss.name = "dpsh"
    resolved = methods.apply_method(config)
    assert (resolved.model.backbone, resolved.loss.name) == ("alexnet", "dpsh")
    assert resolved.optimizer.learning_rate == config.optimizer.learning_rate


# --- AlexNet --------------------------------------------------------------------------------


def test_caffenet_sizes_at_227():
    # conv1: (227 - 11) / 4 + 1 = 55; pools round up: (55 - 3) / 2 + 1 = 27, (27 - 3) / 2 + 1 =
    # 13, (13 - 3) / 2 + 1 = 6.
    assert pool_input_sizes(227) == (55, 27, 13)
    assert pooled_size(13) == 6
    # Caffe rounds up: a 12-pixel map pools to ceil(9 / 2) + 1 = 6, not 5.
    assert pooled_size(12) == 6


def test_minimum_input_size():
    # 55: conv1 (55 - 11) // 4 + 1 = 12, pool -> 6, pool -> 3 (one full window for pool5).
    # 54: conv1 11, pool -> 5, pool -> 2 < 3.
    assert MIN_INPUT_SIZE == 55
    assert pool_input_sizes(55) == (12, 6, 3)
    assert pool_input_sizes(54)[2] == 2


def test_parameter_count_at_227():
    # K = 48 bits and 10 classes, as in the DLBH CIFAR-10 network:
    # conv1 11*11*3*96 + 96 = 34944; conv2 (2 groups) 5*5*48*256 + 256 = 307456;
    # conv3 3*3*256*384 + 384 = 885120; conv4 3*3*192*384 + 384 = 663936;
    # conv5 3*3*192*256 + 256 = 442624; fc6 6*6*256*4096 + 4096 = 37752832;
    # fc7 4096*4096 + 4096 = 16781312; hash 4096*48 + 48 = 196656; classifier 48*10 + 10 = 490.
    expected = (34944 + 307456 + 885120 + 663936 + 442624 + 37752832 + 16781312 + 196656 + 490)
    assert expected == 57_065_370
    model = HashingNetwork(AlexNet(), num_bits=48, num_classes=10)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 227, 227, 3))))
    assert _count(variables["params"]) == expected
    assert "batch_stats" not in variables
    # float32 size in MB (10^6 bytes): about 228 MB.
    assert math.floor(expected * 4 / 1e6) == 228


def test_small_input_rejected_naming_minimum():
    model = HashingNetwork(AlexNet(), num_bits=16, num_classes=10)
    with pytest.raises(ValueError, match="at least 55x55 pixels.*got 32x32.*model.input_size"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_local_response_normalization_by_hand():
    # One pixel, channels a = (100, 200, 300, 400). The window c-2..c+2 is clipped at the edges:
    # c=0 sums channels 0..2: 1e4 + 4e4 + 9e4 = 14e4; c=1 and c=2 sum 0..3: 30e4;
    # c=3 sums 1..3: 4e4 + 9e4 + 16e4 = 29e4.
    # b_c = a_c / (1 + 1e-4 / 5 * sum_c) ** 0.75 = a_c / (1 + 2e-5 * sum_c) ** 0.75.
    x = jnp.array([100.0, 200.0, 300.0, 400.0]).reshape(1, 1, 1, 4)
    expected = [100 / 3.8 ** 0.75, 200 / 7.0 ** 0.75, 300 / 7.0 ** 0.75, 400 / 6.8 ** 0.75]
    np.testing.assert_allclose(np.ravel(local_response_normalization(x)), expected, rtol=1e-6)


def test_grouped_conv_matches_feature_groups():
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 8))
    grouped = GroupedConv(features=6, kernel_size=3, padding=1, groups=2)
    params = grouped.init(jax.random.key(1), x)
    reference = nn.Conv(6, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=2)
    np.testing.assert_allclose(jax.jit(grouped.apply)(params, x),
                               jax.jit(reference.apply)(params, x), rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training():
    model = AlexNet()
    x = jax.random.uniform(jax.random.key(0), (2, 55, 55, 3), minval=-1.0, maxval=1.0)
    variables = jax.jit(model.init, static_argnames="train")(jax.random.key(1), x, train=False)
    apply = jax.jit(model.apply, static_argnames="train")
    first = apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    second = apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)})
    assert first.shape == (2, 4096)
    assert not np.allclose(first, second)
    # Dropout 0.5 zeroes about half of the fc7 units that are active without it.
    evaluated = apply(variables, x, train=False)
    active = np.asarray(evaluated) > 0
    assert 0.3 < np.mean(np.asarray(first)[active] == 0) < 0.7
    np.testing.assert_array_equal(evaluated, apply(variables, x, train=False))
