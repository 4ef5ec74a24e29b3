"""The paper's recipe for MobileNet + hash layer, for a GPU or TPU.

224x224 input, batch 32, SGD with momentum 0.9, learning rate 0.01 divided by 10 every 10,000
steps, 30,000 steps, cross-entropy only, ReLU activations. On CIFAR-10 the 32x32 images are
upscaled to 224 on the device. Run:
  python launch.py --config configs/paper.py:64 --workdir runs/paper_64
"""

import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Return the config; `arg` is the number of hash bits (default 64)."""
    config = default.get_config(arg)
    with config.unlocked():
        config.model.width = 1.0
        config.model.input_size = 224
        config.model.depthwise = "conv"
        config.model.batch_norm_momentum = 0.99
        config.augment.crop_padding = 4
        config.optimizer.learning_rate = 0.01
        config.optimizer.nesterov = False
        config.optimizer.weight_decay = 0.0
        config.optimizer.decay_steps = 10_000
        config.batch_size = 32
        config.num_steps = 30_000
        config.log_every = 200
        config.checkpoint_every = 2000
    return config
