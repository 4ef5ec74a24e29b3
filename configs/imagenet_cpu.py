"""CPU-sized fine-tuning of ImageNet MobileNet v1 weights on the CIFAR-10 JPEG archive.

The backbone starts from the TF-slim MobileNet v1 1.0/224 ImageNet weights (a frozen graph); the
hash and classifier layers start at random and learn 10x faster. The 32x32 images are upscaled to
64x64 on the device. Run:
  python launch.py --config configs/imagenet_cpu.py:64 --workdir runs/imagenet_cpu_64
The argument is the number of hash bits (default 64). At 64 bits this reached MAP@100 0.818 on the
10,000 test queries against the 50,000 training images, against 0.430 for the same config trained
from scratch (docs/cpu_run.md).
"""

import ml_collections

from configs import default

WEIGHTS = "../shared/data/weights/mobilenet_v1_1.0_224_imagenet_frozen_graph.pb"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Return the config; `arg` is the number of hash bits."""
    config = default.get_config(arg)
    with config.unlocked():
        config.init_from.path = WEIGHTS
        config.init_from.format = "tf_frozen_graph"
        config.model.width = 1.0
        config.model.input_size = 64
        config.model.activation = "relu6"  # The activation the ImageNet weights were trained with.
        config.optimizer.learning_rate = 0.01
        config.optimizer.new_layer_lr_multiplier = 10.0
        config.optimizer.nesterov = False
        config.optimizer.weight_decay = 1e-4
        config.optimizer.decay_steps = 2000
        config.batch_size = 64
        config.num_steps = 3000
        config.checkpoint_every = 500
    return config
