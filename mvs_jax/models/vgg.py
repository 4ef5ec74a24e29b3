"""VGG-16 (Simonyan and Zisserman, ICLR 2015, configuration D) up to fc7.

Thirteen 3x3 convolutions with padding 1 and ReLU form five stages of 64, 128, 256, 512 and 512
channels (2, 2, 3, 3 and 3 convolutions). Each stage ends in a 2x2 stride-2 max-pool. Then come
fc6 and fc7 with 4096 units, ReLU and dropout 0.5. The hash layer and classifier are added by
`HashingNetwork`; the 1000-class fc8 of the paper is not part of the backbone.

fc6 takes the flattened output of the last pool, so its size depends on the input: 7 * 7 * 512 =
25088 inputs at 224x224 (the paper's 102.8M fc6 weights), 512 inputs at 32x32.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mvs_jax.models.input_size import check_input_size

# (output channels, number of 3x3 convolutions) per stage; each stage ends with a max-pool.
STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
FC_FEATURES = 4096

# Each 2x2 stride-2 pool halves the size and rounds down, so five pools need 2**5 pixels to
# leave one.
MIN_INPUT_SIZE = 2 ** len(STAGES)  # 32 pixels.


class VGG16(nn.Module):
    """VGG-16 up to fc7: returns the fc7 activations [N, 4096] after ReLU and dropout.

    Dropout is active when `train` is true and then needs a `dropout` random key in `rngs`.
    Weights start from He-normal initialisation, since this project trains VGG-16 from scratch.
    """

    dropout_rate: float = 0.5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        height, width = images.shape[1:3]
        check_input_size("VGG-16", height, width, MIN_INPUT_SIZE,
                         "its five 2x2 stride-2 max-pools leave at least one pixel",
                         "VGG-16 was trained at 224")

        x = images.astype(self.dtype)
        for stage, (features, num_convs) in enumerate(STAGES, start=1):
            for index in range(1, num_convs + 1):
                conv = nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)),
                               kernel_init=nn.initializers.he_normal(), dtype=self.dtype,
                               name=f"conv{stage}_{index}")
                x = nn.relu(conv(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))

        x = x.reshape((x.shape[0], -1))
        for name in ("fc6", "fc7"):
            dense = nn.Dense(FC_FEATURES, kernel_init=nn.initializers.he_normal(),
                             dtype=self.dtype, name=name)
            x = nn.relu(dense(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return x.astype(jnp.float32)
