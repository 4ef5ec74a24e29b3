"""SqueezeNet v1.0 (Iandola et al., 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters and <0.5MB model size"), without the classifier by default.

conv1 has 96 7x7 filters with stride 2 and no padding. Eight fire modules follow, with 3x3
stride-2 max-pools after conv1, fire4 and fire8. A fire module squeezes its input with 1x1
filters and expands the result with 1x1 and 3x3 (padding 1) filters whose outputs are
concatenated, with ReLU after every convolution. Dropout 0.5 follows fire9. Pools round output
sizes up, as Caffe does, so a 224x224 input gives 109, 54, 27 and 13 pixels per side after conv1
and the three pools.

The paper's classifier is conv10, a 1x1 convolution to 1000 channels with ReLU, followed by
global average pooling. With `classifier_channels` unset the module returns the globally
average-pooled fire9 features [N, 512], on which `HashingNetwork` puts its hash layer. With
`classifier_channels` set it adds conv10 with that many channels and returns the pooled conv10
output, so the module is the paper's whole network (used to count its parameters and
multiply-adds).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mvs_jax.models.input_size import check_input_size, smallest_input_size

from mvs_jax.models.alexnet import POOL_WINDOW, caffe_max_pool, pooled_size

CONV1_FEATURES = 96
CONV1_KERNEL = 7
CONV1_STRIDE = 2

# (name, squeeze 1x1 channels, expand 1x1 channels, expand 3x3 channels) of the v1.0 fire
# modules, in order.
FIRE_MODULES: tuple[tuple[str, int, int, int], ...] = (
    ("fire2", 16, 64, 64), ("fire3", 16, 64, 64), ("fire4", 32, 128, 128),
    ("fire5", 32, 128, 128), ("fire6", 48, 192, 192), ("fire7", 48, 192, 192),
    ("fire8", 64, 256, 256), ("fire9", 64, 256, 256),
)
POOL_AFTER = ("fire4", "fire8")  # And after conv1.


def pool_input_sizes(input_size: int) -> tuple[int, int, int]:
    """Return the spatial size entering each of the three max-pools for a square input."""
    conv1 = (input_size - CONV1_KERNEL) // CONV1_STRIDE + 1
    pool4_input = pooled_size(conv1)  # Fire modules keep the size.
    pool8_input = pooled_size(pool4_input)
    return conv1, pool4_input, pool8_input


MIN_INPUT_SIZE = smallest_input_size(pool_input_sizes, POOL_WINDOW,
                                     start=CONV1_KERNEL)  # 29 pixels.


class Fire(nn.Module):
    """A fire module: 1x1 squeeze, then 1x1 and 3x3 expand filters concatenated on channels."""

    squeeze: int
    expand_1x1: int
    expand_3x3: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def conv(features: int, kernel: int, name: str) -> nn.Conv:
            pad = kernel // 2
            return nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                           kernel_init=nn.initializers.he_normal(), dtype=self.dtype, name=name)

        x = nn.relu(conv(self.squeeze, 1, "squeeze1x1")(x))
        left = nn.relu(conv(self.expand_1x1, 1, "expand1x1")(x))
        right = nn.relu(conv(self.expand_3x3, 3, "expand3x3")(x))
        return jnp.concatenate([left, right], axis=-1)


class SqueezeNet(nn.Module):
    """SqueezeNet v1.0: returns pooled fire9 features [N, 512], or pooled conv10 outputs.

    Dropout after fire9 is active when `train` is true and then needs a `dropout` random key in
    `rngs`. Weights start from He-normal initialisation (no pretrained weights are used).
    """

    classifier_channels: int | None = None
    dropout_rate: float = 0.5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        height, width = images.shape[1:3]
        check_input_size("SqueezeNet", height, width, MIN_INPUT_SIZE,
                         "its three 3x3 stride-2 max-pools each get a full window",
                         "SqueezeNet was trained at 224")

        x = images.astype(self.dtype)
        conv1 = nn.Conv(CONV1_FEATURES, (CONV1_KERNEL, CONV1_KERNEL),
                        strides=(CONV1_STRIDE, CONV1_STRIDE), padding="VALID",
                        kernel_init=nn.initializers.he_normal(), dtype=self.dtype, name="conv1")
        x = caffe_max_pool(nn.relu(conv1(x)))
        for name, squeeze, expand_1x1, expand_3x3 in FIRE_MODULES:
            x = Fire(squeeze, expand_1x1, expand_3x3, dtype=self.dtype, name=name)(x)
            if name in POOL_AFTER:
                x = caffe_max_pool(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)

        if self.classifier_channels is not None:
            conv10 = nn.Conv(self.classifier_channels, (1, 1),
                             kernel_init=nn.initializers.he_normal(), dtype=self.dtype,
                             name="conv10")
            x = nn.relu(conv10(x))
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
