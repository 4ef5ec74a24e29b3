"""Backbones registered by name, and the hashing network built from a config."""

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mvs_jax.models.alexnet import AlexNet
from mvs_jax.models.googlenet import GoogLeNet
from mvs_jax.models.mobilenet import (CLASSIFIER_INPUTS, HashingNetwork, MobileNetV1,
                                      binary_codes, check_classifier_input)
from mvs_jax.models.squeezenet import SqueezeNet
from mvs_jax.models.vgg import VGG16

__all__ = ["BACKBONES", "CLASSIFIER_INPUTS", "HashingNetwork", "MobileNetV1", "binary_codes",
           "build_model"]


def _mobilenet_v1(config: ml_collections.ConfigDict) -> nn.Module:
    return MobileNetV1(
        width=config.width, activation=config.activation, depthwise=config.depthwise,
        batch_norm_momentum=config.batch_norm_momentum,
        dtype=jnp.dtype(config.dtype))


BACKBONES: dict[str, Callable[[ml_collections.ConfigDict], nn.Module]] = {
    "mobilenet_v1": _mobilenet_v1,
    "alexnet": lambda config: AlexNet(dtype=jnp.dtype(config.dtype)),
    "vgg_16": lambda config: VGG16(dtype=jnp.dtype(config.dtype)),
    "squeezenet_v1_0": lambda config: SqueezeNet(dtype=jnp.dtype(config.dtype)),
    "googlenet": lambda config: GoogLeNet(dtype=jnp.dtype(config.dtype)),
}

# The normalisation each backbone's pretrained weights expect, as (offset, scale) applied to
# pixels in [0, 255]: x * scale + offset. TF-slim MobileNet v1 takes RGB scaled to [-1, 1].
INPUT_NORMALIZATION: dict[str, tuple[float, float]] = {
    "mobilenet_v1": (-1.0, 2.0 / 255.0),
    "alexnet": (-1.0, 2.0 / 255.0),  # No pretrained weights: trained from scratch on [-1, 1].
    "vgg_16": (-1.0, 2.0 / 255.0),  # The same for VGG-16, SqueezeNet and GoogLeNet.
    "squeezenet_v1_0": (-1.0, 2.0 / 255.0),
    "googlenet": (-1.0, 2.0 / 255.0),
}


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> HashingNetwork:
    """Build the hashing network of `config.model` for `num_classes` classes.

    `config.optimizer.freeze_backbone` (default False) runs the backbone as a fixed feature
    extractor; see `HashingNetwork`.
    """
    model_config = config.model
    if model_config.backbone not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {model_config.backbone!r}; valid backbones: {sorted(BACKBONES)}.")
    if model_config.num_bits <= 0:
        raise ValueError(
            f"model.num_bits must be a positive number of hash bits, got {model_config.num_bits}.")
    if num_classes <= 1:
        raise ValueError(f"The dataset must have at least 2 classes, found {num_classes}.")
    backbone = BACKBONES[model_config.backbone](model_config)
    classifier_input = model_config.get("classifier_input", "hash")
    check_classifier_input(classifier_input, "model.classifier_input")
    freeze_backbone = config.get("optimizer", {}).get("freeze_backbone", False)
    return HashingNetwork(backbone, model_config.num_bits, num_classes,
                          freeze_backbone=freeze_backbone, classifier_input=classifier_input)
