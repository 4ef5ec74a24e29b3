"""Load dataset splits into memory as uint8 image arrays with integer labels.

A split is decoded once with Pillow, resized to a fixed square size, and cached as a `.npy` pair
next to the TFDS files, so later runs read it in a second. Images that are not square are resized
so that the shorter side matches, then center-cropped.
"""

import concurrent.futures
import dataclasses
import io
import logging
import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mvs_jax.data.folder import ImageFolder

SOURCES = ("folder", "tfds")


@dataclasses.dataclass(frozen=True)
class Split:
    """A split held in memory: images [N, S, S, 3] uint8 and labels [N] int32."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def get_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """Return the prepared TFDS builder that `config.data` names."""
    data = config.data
    data_dir = os.path.expanduser(data.data_dir)
    if data.source == "folder":
        builder = ImageFolder(root=os.path.expanduser(data.root), test_fraction=data.test_fraction,
                              split_seed=data.split_seed, on_bad_image=data.on_bad_image,
                              data_dir=data_dir)
    elif data.source == "tfds":
        try:
            builder = tfds.builder(data.name, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError as error:
            raise ValueError(f"Unknown TFDS dataset data.name={data.name!r}: {error}") from error
    else:
        raise ValueError(f"Unknown data.source {data.source!r}; valid sources: {SOURCES}.")

    try:
        builder.download_and_prepare()
    except (ConnectionError, OSError) as error:
        if data.source != "tfds":
            raise
        raise RuntimeError(
            f"Could not download TFDS dataset {data.name!r} into {data_dir}: {error}. On a machine "
            "without internet access, point data.source='folder' and data.root at an image folder "
            "or archive, such as the CIFAR-10 JPEG archive.") from error
    return builder


def _decode(data: bytes, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        width, height = image.size
        if (width, height) != (size, size):
            scale = size / min(width, height)
            new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
            image = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=None)
            left = (new_size[0] - size) // 2
            top = (new_size[1] - size) // 2
            image = image.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.uint8)


def load_split(builder: tfds.core.DatasetBuilder, split: str, image_size: int,
               num_threads: int = 8) -> Split:
    """Decode every example of `split` at `image_size` x `image_size`, in the builder's order."""
    if split not in builder.info.splits:
        raise ValueError(
            f"Split {split!r} not found in {builder.name}; available: {sorted(builder.info.splits)}.")
    label_feature = builder.info.features["label"]
    class_names = tuple(label_feature.names)

    cache_dir = os.path.join(builder.data_dir, "decoded")
    stem = os.path.join(cache_dir, f"{split}_{image_size}")
    if os.path.exists(stem + "_labels.npy"):
        return Split(np.load(stem + "_images.npy"), np.load(stem + "_labels.npy"), class_names)

    source = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    num_examples = len(source)
    images = np.empty((num_examples, image_size, image_size, 3), np.uint8)
    labels = np.empty((num_examples,), np.int32)

    def decode_one(index: int) -> None:
        example = source[index]
        images[index] = _decode(example["image"], image_size)
        labels[index] = example["label"]

    logging.info("Decoding %d images of split %r at %dx%d.", num_examples, split, image_size,
                 image_size)
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        list(pool.map(decode_one, range(num_examples)))

    # Write under a temporary name first so that an interrupted run leaves no partial cache.
    os.makedirs(cache_dir, exist_ok=True)
    for name, array in (("images", images), ("labels", labels)):
        temporary = f"{stem}_{name}.tmp.npy"
        np.save(temporary, array)
        os.replace(temporary, f"{stem}_{name}.npy")
    return Split(images, labels, class_names)
