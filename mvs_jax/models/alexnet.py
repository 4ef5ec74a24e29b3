"""AlexNet in the CaffeNet variant that DLBH (Lin et al., CVPRW 2015) builds on.

The layers follow the authors' released network (kevinlin311tw/caffe-cvprw15,
KevinNet_CIFAR10_48_deploy.prototxt): conv1 96 11x11 stride 4 -> ReLU -> max-pool 3x3/2 -> LRN,
conv2 256 5x5 pad 2 in 2 groups -> ReLU -> max-pool -> LRN, conv3 384 3x3, conv4 384 3x3 in 2
groups, conv5 256 3x3 in 2 groups (all pad 1, ReLU), max-pool, fc6 4096 and fc7 4096 each with
ReLU and dropout 0.5. CaffeNet pools before normalising, where the original AlexNet normalises
first. The hash layer and classifier are added by `HashingNetwork`.

Pooling rounds output sizes up, as Caffe does, so a 227x227 input gives 55, 27, 13 and 6 pixels
per side after conv1 and the three pools, and fc6 has 6 * 6 * 256 = 9216 inputs. Inputs smaller
than `MIN_INPUT_SIZE` are rejected.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mvs_jax.models.input_size import check_input_size, smallest_input_size

# Caffe's LRN across channels: b_c = a_c / (k + alpha / n * sum_{c' in window} a_c'^2) ** beta.
LRN_SIZE = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
LRN_K = 1.0

POOL_WINDOW = 3
POOL_STRIDE = 2
FC_FEATURES = 4096


def local_response_normalization(x: jax.Array) -> jax.Array:
    """Normalise each channel by the squared activations of its 5 neighbouring channels (NHWC)."""
    half = LRN_SIZE // 2
    window_sums = jax.lax.reduce_window(
        jnp.square(x), 0.0, jax.lax.add, (1, 1, 1, LRN_SIZE), (1, 1, 1, 1),
        ((0, 0), (0, 0), (0, 0), (half, half)))
    return x / jnp.power(LRN_K + LRN_ALPHA / LRN_SIZE * window_sums, LRN_BETA)


def pooled_size(size: int) -> int:
    """Return the output size of a 3x3 stride-2 max-pool that rounds up, as Caffe's does."""
    return math.ceil((size - POOL_WINDOW) / POOL_STRIDE) + 1


def caffe_max_pool(x: jax.Array) -> jax.Array:
    """3x3 stride-2 max-pool whose last window may run past the edge (padding is -inf)."""
    pads = []
    for size in x.shape[1:3]:
        pads.append((0, (pooled_size(size) - 1) * POOL_STRIDE + POOL_WINDOW - size))
    return nn.max_pool(x, (POOL_WINDOW, POOL_WINDOW), (POOL_STRIDE, POOL_STRIDE), padding=pads)


def pool_input_sizes(input_size: int) -> tuple[int, int, int]:
    """Return the spatial size entering pool1, pool2 and pool5 for a square input."""
    conv1 = (input_size - 11) // 4 + 1
    pool2_input = pooled_size(conv1)  # conv2 keeps the size (5x5, pad 2).
    pool5_input = pooled_size(pool2_input)  # conv3 to conv5 keep the size (3x3, pad 1).
    return conv1, pool2_input, pool5_input


MIN_INPUT_SIZE = smallest_input_size(pool_input_sizes, POOL_WINDOW, start=11)  # 55 pixels.


class GroupedConv(nn.Module):
    """A convolution whose input and output channels are split into `groups` independent groups.

    The kernel has the layout [kh, kw, C_in / groups, C_out] of
    `nn.Conv(feature_group_count=groups)`, so parameters are interchangeable. Each group is a
    separate convolution and the outputs are concatenated, because XLA's grouped convolution is
    about 4 times slower on CPU (conv2 on 6x6x96 maps at batch 500, jax 0.10.2, 2 cores).
    """

    features: int
    kernel_size: int
    padding: int
    groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        if in_features % self.groups or self.features % self.groups:
            raise ValueError(f"{in_features} input and {self.features} output channels do not "
                             f"split into {self.groups} groups.")
        size = self.kernel_size
        kernel = self.param("kernel", nn.initializers.he_normal(),
                            (size, size, in_features // self.groups, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)

        pad = ((self.padding, self.padding), (self.padding, self.padding))
        outputs = [
            jax.lax.conv_general_dilated(
                inputs, group_kernel.astype(self.dtype), (1, 1), pad,
                dimension_numbers=("NHWC", "HWIO", "NHWC"))
            for inputs, group_kernel in zip(jnp.split(x.astype(self.dtype), self.groups, axis=-1),
                                            jnp.split(kernel, self.groups, axis=-1))]
        return jnp.concatenate(outputs, axis=-1) + bias.astype(self.dtype)


class AlexNet(nn.Module):
    """CaffeNet up to fc7: returns the fc7 activations [N, 4096] after ReLU and dropout.

    Dropout is active when `train` is true and then needs a `dropout` random key in `rngs`.
    Weights start from He-normal initialisation, since this project trains AlexNet from scratch.
    """

    dropout_rate: float = 0.5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        height, width = images.shape[1:3]
        check_input_size("AlexNet", height, width, MIN_INPUT_SIZE,
                         "its three 3x3 stride-2 max-pools each get a full window",
                         "the DLBH authors use 227")

        def conv(features: int, kernel: int, name: str, stride: int = 1,
                 padding: int = 0) -> nn.Conv:
            return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                           padding=((padding, padding), (padding, padding)),
                           kernel_init=nn.initializers.he_normal(), dtype=self.dtype, name=name)

        def grouped_conv(features: int, kernel: int, name: str, padding: int) -> GroupedConv:
            return GroupedConv(features, kernel, padding, groups=2, dtype=self.dtype, name=name)

        def dense(features: int, name: str) -> nn.Dense:
            return nn.Dense(features, kernel_init=nn.initializers.he_normal(), dtype=self.dtype,
                            name=name)

        x = images.astype(self.dtype)
        x = nn.relu(conv(96, 11, "conv1", stride=4)(x))
        x = local_response_normalization(caffe_max_pool(x))
        x = nn.relu(grouped_conv(256, 5, "conv2", padding=2)(x))
        x = local_response_normalization(caffe_max_pool(x))
        x = nn.relu(conv(384, 3, "conv3", padding=1)(x))
        x = nn.relu(grouped_conv(384, 3, "conv4", padding=1)(x))
        x = nn.relu(grouped_conv(256, 3, "conv5", padding=1)(x))
        x = caffe_max_pool(x)

        # NOTE: this flattens in (H, W, C) order; Caffe's fc6 weights expect (C, H, W).
        x = x.reshape((x.shape[0], -1))
        for name in ("fc6", "fc7"):
            x = nn.relu(dense(FC_FEATURES, name)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return x.astype(jnp.float32)
