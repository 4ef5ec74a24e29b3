"""GoogLeNet (Inception v1; Szegedy et al., CVPR 2015) without the auxiliary classifiers.

The layers follow Table 1 of Szegedy et al. The stem is a 7x7 stride-2 convolution with 64
filters (padding 3), a 3x3 stride-2 max-pool, local response normalisation, a 1x1 convolution
with 64 filters, a 3x3 one with 192 (padding 1), normalisation and a max-pool. Then come
inception modules 3a and 3b, a max-pool, 4a to 4e, a max-pool, 5a and 5b, global average
pooling and dropout 0.4. ReLU follows every convolution. Max-pools round output sizes up, as
Caffe does, so a 224x224 input gives 112, 56, 28, 14 and 7 pixels per side after conv1 and the
four pools. The normalisation has the constants of AlexNet's (5 channels, alpha 1e-4, beta
0.75).

An inception module concatenates four branches. The first is 1x1 filters, the second a 1x1
reduction then 3x3 filters, the third a 1x1 reduction then 5x5 filters, and the fourth a 3x3
stride-1 max-pool then 1x1 projection filters.

The backbone returns the pooled 1024 features; the paper's 1000-class linear layer is not part
of it, and `HashingNetwork` adds its hash layer there instead.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mvs_jax.models.input_size import check_input_size, smallest_input_size

from mvs_jax.models.alexnet import (POOL_WINDOW, caffe_max_pool, local_response_normalization,
                                    pooled_size)

# (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool projection), as in Table 1 of
# Szegedy et al., in order.
INCEPTION_MODULES: tuple[tuple[str, int, int, int, int, int, int], ...] = (
    ("inception_3a", 64, 96, 128, 16, 32, 32),
    ("inception_3b", 128, 128, 192, 32, 96, 64),
    ("inception_4a", 192, 96, 208, 16, 48, 64),
    ("inception_4b", 160, 112, 224, 24, 64, 64),
    ("inception_4c", 128, 128, 256, 24, 64, 64),
    ("inception_4d", 112, 144, 288, 32, 64, 64),
    ("inception_4e", 256, 160, 320, 32, 128, 128),
    ("inception_5a", 256, 160, 320, 32, 128, 128),
    ("inception_5b", 384, 192, 384, 48, 128, 128),
)
POOL_AFTER = ("inception_3b", "inception_4e")  # And after conv1 and conv2.
DROPOUT_RATE = 0.4


def pool_input_sizes(input_size: int) -> tuple[int, int, int, int]:
    """Return the spatial size entering each of the four max-pools for a square input."""
    conv1 = (input_size + 2 * 3 - 7) // 2 + 1
    pool2_input = pooled_size(conv1)  # conv2 keeps the size.
    pool3_input = pooled_size(pool2_input)  # Inception modules keep the size.
    pool4_input = pooled_size(pool3_input)
    return conv1, pool2_input, pool3_input, pool4_input


MIN_INPUT_SIZE = smallest_input_size(pool_input_sizes, POOL_WINDOW)  # 47 pixels.


def _conv(features: int, kernel: int, name: str, dtype: jnp.dtype, stride: int = 1) -> nn.Conv:
    """Build a convolution padded by kernel // 2 on each side, which keeps the size at stride 1."""
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), kernel_init=nn.initializers.he_normal(),
                   dtype=dtype, name=name)


class Inception(nn.Module):
    """An inception module; the output has #1x1 + #3x3 + #5x5 + pool projection channels."""

    features_1x1: int
    reduce_3x3: int
    features_3x3: int
    reduce_5x5: int
    features_5x5: int
    pool_projection: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch_1x1 = nn.relu(_conv(self.features_1x1, 1, "1x1", self.dtype)(x))

        branch_3x3 = nn.relu(_conv(self.reduce_3x3, 1, "3x3_reduce", self.dtype)(x))
        branch_3x3 = nn.relu(_conv(self.features_3x3, 3, "3x3", self.dtype)(branch_3x3))

        branch_5x5 = nn.relu(_conv(self.reduce_5x5, 1, "5x5_reduce", self.dtype)(x))
        branch_5x5 = nn.relu(_conv(self.features_5x5, 5, "5x5", self.dtype)(branch_5x5))

        branch_pool = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        branch_pool = nn.relu(_conv(self.pool_projection, 1, "pool_proj", self.dtype)(branch_pool))

        return jnp.concatenate([branch_1x1, branch_3x3, branch_5x5, branch_pool], axis=-1)


class GoogLeNet(nn.Module):
    """GoogLeNet up to the average pool: returns the pooled features [N, 1024] after dropout.

    Dropout is active when `train` is true and then needs a `dropout` random key in `rngs`.
    Weights start from He-normal initialisation (no pretrained weights are used).
    """

    dropout_rate: float = DROPOUT_RATE
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        height, width = images.shape[1:3]
        check_input_size("GoogLeNet", height, width, MIN_INPUT_SIZE,
                         "its four 3x3 stride-2 max-pools each get a full window",
                         "GoogLeNet was trained at 224")

        x = images.astype(self.dtype)
        x = nn.relu(_conv(64, 7, "conv1", self.dtype, stride=2)(x))
        x = local_response_normalization(caffe_max_pool(x))
        x = nn.relu(_conv(64, 1, "conv2_reduce", self.dtype)(x))
        x = nn.relu(_conv(192, 3, "conv2", self.dtype)(x))
        x = caffe_max_pool(local_response_normalization(x))

        for name, *widths in INCEPTION_MODULES:
            x = Inception(*widths, dtype=self.dtype, name=name)(x)
            if name in POOL_AFTER:
                x = caffe_max_pool(x)

        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return nn.Dropout(self.dropout_rate, deterministic=not train)(x)
