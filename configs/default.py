"""CPU-sized MobileNet hashing on the CIFAR-10 JPEG archive, trained from scratch.

Run:
  python launch.py --config configs/default.py --workdir runs/cifar10_64
The code length is the config argument, e.g. `configs/default.py:32` for 32 bits (default 64).
At 64 bits this reached MAP@100 0.650 on the 10,000 test queries against the 50,000 training
images in 11 min 49 s on 2 CPU cores with no other job (docs/cpu_run.md).
"""

import ml_collections

from mvs_jax import losses


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Return the config; `arg` is the number of hash bits."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.distributed = False

    # Data. CIFAR-10 protocol of DLBH and SSDH: the 10,000 test images are the queries, the
    # 50,000 training images are both the training set and the retrieval database.
    config.data = ml_collections.ConfigDict()
    config.data.source = "folder"  # "folder" (ImageFolder builder) or "tfds" (catalog by name).
    config.data.root = "../shared/data/cifar10_jpeg.tar.gz"
    config.data.name = "cifar10"  # Catalog name, used when source is "tfds".
    config.data.data_dir = "~/tensorflow_datasets"
    config.data.train_split = "train"
    config.data.query_split = "test"
    config.data.database_split = "train"
    config.data.image_size = 32  # Images are held in memory at this square size.
    config.data.test_fraction = 0.2  # Per-class query share for a folder with no train/test.
    config.data.split_seed = 0
    config.data.on_bad_image = "raise"  # "raise" or "skip" (skipped files are logged).

    config.augment = ml_collections.ConfigDict()
    config.augment.crop_padding = 4  # Pixels of zero padding before the random crop.
    config.augment.flip = True

    config.model = ml_collections.ConfigDict()
    config.model.backbone = "mobilenet_v1"
    config.model.width = 0.5
    config.model.input_size = 32
    config.model.activation = "relu"  # "relu" (the paper) or "relu6" (TF-slim weights).
    config.model.depthwise = "shift"  # "shift" (fast on CPU) or "conv" (grouped convolution).
    config.model.batch_norm_momentum = 0.9
    config.model.dtype = "float32"
    config.model.num_bits = int(arg) if arg else 64
    # The classifier reads "hash" (sigmoid activations) or "sign" (straight-through codes).
    config.model.classifier_input = "hash"

    # The method (mvs_jax/methods.py) sets model.backbone and loss.name when training starts.
    config.method = "paper"
    config.loss = losses.default_config("cross_entropy")  # Each loss's hyper-parameters.

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = 5e-4
    config.optimizer.decay_steps = 3000  # Multiply the rate by decay_factor every decay_steps.
    config.optimizer.decay_factor = 0.1
    # Learning-rate multiplier of the layers not in the backbone (hash, classifier); DLBH and
    # SSDH used 10 when fine-tuning from ImageNet.
    config.optimizer.new_layer_lr_multiplier = 1.0
    config.optimizer.freeze_backbone = False

    # Pretrained backbone weights: path "" trains from scratch. format is "auto",
    # "tf_frozen_graph", "tf_checkpoint" or "tflite". A checkpoint in the workdir wins over this.
    config.init_from = ml_collections.ConfigDict()
    config.init_from.path = ""
    config.init_from.format = "auto"

    config.batch_size = 128
    config.num_steps = 7000
    config.log_every = 100
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 500
    config.eval.k = 100  # MAP@k cut-off; None ranks the whole database.
    config.eval.radius = 2  # Hamming radius for precision and recall within the radius.

    config.lock()
    return config
