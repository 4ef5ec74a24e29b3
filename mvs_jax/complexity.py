"""Count the parameters and multiply-adds of Flax modules from their shapes alone.

One multiply-add is counted per product in a convolution or a dense layer. Every
`conv_general_dilated` and `dot_general` in the traced computation is counted, so grouped and
depthwise convolutions are included, and pooling, normalisation, activations, additions and
biases are not. Nothing is computed: the model is traced with abstract inputs of batch 1.

`reference_network` builds each registered backbone with a 1000-class ImageNet classifier,
which is the form in which the papers give their sizes.
"""

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

from mvs_jax.models import BACKBONES
from mvs_jax.models.alexnet import AlexNet
from mvs_jax.models.googlenet import GoogLeNet
from mvs_jax.models.mobilenet import MobileNetV1
from mvs_jax.models.squeezenet import SqueezeNet
from mvs_jax.models.vgg import VGG16

IMAGENET_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class Complexity:
    """Trained parameters and multiply-adds per image of a network."""

    parameters: int
    multiply_adds: int

    @property
    def float32_megabytes(self) -> float:
        """Size of the parameters stored as float32, in MB (10^6 bytes)."""
        return self.parameters * 4 / 1e6


def count_parameters(params: Any) -> int:
    """Return the number of scalars in a parameter tree (arrays or shape structs)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


def _convolution_multiply_adds(equation: jax_core.JaxprEqn) -> int:
    # Each output element is a dot product over the kernel's window and input channels. With
    # feature groups, the kernel's input dimension already holds only one group's channels.
    kernel_shape = equation.invars[1].aval.shape
    output_features_axis = equation.params["dimension_numbers"].rhs_spec[0]
    products_per_output = math.prod(kernel_shape) // kernel_shape[output_features_axis]
    return math.prod(equation.outvars[0].aval.shape) * products_per_output


def _dot_multiply_adds(equation: jax_core.JaxprEqn) -> int:
    (lhs_contracting, _), _ = equation.params["dimension_numbers"]
    lhs_shape = equation.invars[0].aval.shape
    products_per_output = math.prod(lhs_shape[axis] for axis in lhs_contracting)
    return math.prod(equation.outvars[0].aval.shape) * products_per_output


def _count_jaxpr(jaxpr: jax_core.Jaxpr) -> int:
    """Return the multiply-adds of `jaxpr` and of the jaxprs nested in it."""
    total = 0
    for equation in jaxpr.eqns:
        name = equation.primitive.name
        if name == "conv_general_dilated":
            total += _convolution_multiply_adds(equation)
        elif name == "dot_general":
            total += _dot_multiply_adds(equation)
        elif name in ("while", "cond"):
            # A loop's trip count or a branch's choice is not known from shapes.
            raise NotImplementedError(
                f"Cannot count multiply-adds through a {name!r} primitive; count a model "
                "without data-dependent control flow.")

        repeats = equation.params.get("length", 1) if name == "scan" else 1
        for inner in jax_core.jaxprs_in_params(equation.params):
            total += repeats * _count_jaxpr(inner)
    return total


def count_multiply_adds(function: Callable[..., Any], *args: Any) -> int:
    """Return the multiply-adds of convolutions and dot products in one call of `function`.

    `args` may be arrays or `jax.ShapeDtypeStruct`s; the function is traced, not run.
    """
    return _count_jaxpr(jax.make_jaxpr(function)(*args).jaxpr)


def _abstract_images(input_size: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32)


def abstract_variables(module: nn.Module, input_size: int) -> Any:
    """Return the shapes of `module`'s variables at a square input, without initialising them."""
    return jax.eval_shape(
        lambda x: module.init(jax.random.key(0), x, train=False), _abstract_images(input_size))


def measure_complexity(module: nn.Module, input_size: int) -> Complexity:
    """Count the parameters of `module` and its multiply-adds per image at a square input.

    The module is called as `module.apply(variables, images, train=False)` with images
    [1, input_size, input_size, 3]; BatchNorm statistics are not counted as parameters.
    """
    images = _abstract_images(input_size)
    variables = abstract_variables(module, input_size)
    multiply_adds = count_multiply_adds(
        lambda v, x: module.apply(v, x, train=False), variables, images)
    return Complexity(parameters=count_parameters(variables["params"]), multiply_adds=multiply_adds)


class Classifier(nn.Module):
    """A backbone followed by a dense layer of `num_classes` logits."""

    backbone: nn.Module
    num_classes: int = IMAGENET_CLASSES

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        features = self.backbone(images, train=train)
        return nn.Dense(self.num_classes, name="classifier")(features)


def reference_network(backbone: str, num_classes: int = IMAGENET_CLASSES,
                      depthwise: str = "conv") -> nn.Module:
    """Return registered `backbone` with its paper's `num_classes`-way classifier.

    MobileNet v1 has width 1.0, and `depthwise` picks its depthwise implementation: "conv" is
    needed for counting, because the "shift" form multiplies slices elementwise and is not
    seen as a convolution. SqueezeNet's classifier is its conv10 (a 1x1 convolution before the
    average pool); every other backbone gets a dense layer on its pooled or fc7 features.
    """
    if backbone not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {backbone!r}; valid backbones: {sorted(BACKBONES)}.")
    if backbone == "squeezenet_v1_0":
        return SqueezeNet(classifier_channels=num_classes)
    backbones: dict[str, Callable[[], nn.Module]] = {
        "mobilenet_v1": lambda: MobileNetV1(width=1.0, depthwise=depthwise),
        "alexnet": AlexNet,
        "vgg_16": VGG16,
        "googlenet": GoogLeNet,
    }
    if backbone not in backbones:
        raise ValueError(f"No reference network is defined for backbone {backbone!r}; add it to "
                         "`reference_network`.")
    return Classifier(backbones[backbone](), num_classes)
