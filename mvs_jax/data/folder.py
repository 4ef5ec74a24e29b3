"""A TFDS builder for folder-per-class image datasets, as a directory or a tar archive.

Two layouts are accepted:
- `root/{train,test}/<class>/<image>`: the splits are taken as they are (CIFAR-10 as JPEGs);
- `root/<class>/<image>` with no split, the layout of a location-recognition dataset (one folder
  per place): a seeded per-class split puts `test_fraction` of each class into `test` (the
  queries) and the rest into `train` (training set and retrieval database).

`root` may also be a `.tar`, `.tar.gz` or `.tgz` archive of either layout, read in place; a single
top-level folder inside the archive is looked through. Images are stored as their original bytes
and checked with Pillow at build time: an unreadable image stops the build with its path, or, with
`on_bad_image="skip"`, is left out, logged by path and counted in `info.metadata`.
"""

import hashlib
import io
import logging
import os
import tarfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS = ("train", "test")
BAD_IMAGE_POLICIES = ("raise", "skip")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class ImageFile:
    """One image of the source: its split folder (or None), class name and path in the source."""

    split: str | None
    label: str
    path: str


def _is_archive(root: str) -> bool:
    return root.endswith(ARCHIVE_SUFFIXES)


def _list_source(root: str) -> tuple[list[str], int]:
    """List the relative file paths under `root`, and count the entries that are not images."""
    if not os.path.exists(root):
        raise FileNotFoundError(
            f"Dataset path {root!r} does not exist. Set data.root to a folder or a .tar(.gz) "
            "archive laid out as root/<class>/<image> or root/{train,test}/<class>/<image>.")
    if _is_archive(root):
        with tarfile.open(root) as archive:
            paths = [member.name for member in archive.getmembers() if member.isfile()]
    elif os.path.isdir(root):
        paths = []
        for directory, _, files in os.walk(root, followlinks=True):
            for name in files:
                paths.append(os.path.relpath(os.path.join(directory, name), root))
    else:
        raise ValueError(
            f"Dataset path {root!r} is neither a folder nor a .tar/.tar.gz/.tgz archive.")

    images = [p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(images), len(paths) - len(images)


def _strip_common_folder(paths: list[str]) -> tuple[list[str], str]:
    """Drop a single top-level folder shared by every path (an archive's `cifar10/`)."""
    prefix = ""
    while paths:
        heads = {p.split("/", 1)[0] for p in paths}
        if len(heads) != 1 or any("/" not in p for p in paths):
            break
        head = heads.pop()
        if head in SPLIT_FOLDERS:
            break
        # A single class folder is not a wrapper: stop once the remainder has no subfolders.
        if not any("/" in p.split("/", 1)[1] for p in paths):
            break
        prefix += head + "/"
        paths = [p.split("/", 1)[1] for p in paths]
    return paths, prefix


def scan_image_files(root: str) -> tuple[list[ImageFile], str]:
    """Find the images of `root` and its layout: `"split"` or `"flat"` (one folder per class)."""
    paths, num_other = _list_source(root)
    if num_other:
        logging.info("Ignoring %d files under %s that are not images (extensions: %s).",
                     num_other, root, ", ".join(IMAGE_EXTENSIONS))
    relative, prefix = _strip_common_folder(paths)
    if not relative:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {root!r}.")

    heads = {p.split("/", 1)[0] for p in relative}
    layout = "split" if heads <= set(SPLIT_FOLDERS) else "flat"
    files = []
    for path in relative:
        parts = path.split("/")
        expected_depth = 3 if layout == "split" else 2
        if len(parts) != expected_depth:
            raise ValueError(
                f"Image {prefix + path!r} in {root!r} is not at <class>/<image>"
                + (" inside train/ or test/" if layout == "split" else "")
                + "; move it into a class folder or remove it.")
        split = parts[0] if layout == "split" else None
        files.append(ImageFile(split, parts[-2], prefix + path))
    return files, layout


def split_per_class(
    files: list[ImageFile], test_fraction: float, seed: int,
) -> dict[str, list[ImageFile]]:
    """Split each class at random into train and test, `test_fraction` of it (at least one
    image when the class has two or more) going to test. The split depends only on the seed and
    the sorted file list."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data.test_fraction must be in (0, 1), got {test_fraction}.")
    by_class: dict[str, list[ImageFile]] = {}
    for item in sorted(files, key=lambda f: f.path):
        by_class.setdefault(item.label, []).append(item)

    splits: dict[str, list[ImageFile]] = {"train": [], "test": []}
    for index, label in enumerate(sorted(by_class)):
        items = by_class[label]
        rng = np.random.default_rng([seed, index])
        order = rng.permutation(len(items))
        num_test = 0 if len(items) < 2 else max(1, round(test_fraction * len(items)))
        splits["test"] += [items[i] for i in order[:num_test]]
        splits["train"] += [items[i] for i in order[num_test:]]
    return splits


def _config_name(root: str, layout_options: str) -> str:
    base = os.path.basename(os.path.normpath(root))
    for suffix in ARCHIVE_SUFFIXES:
        base = base.removesuffix(suffix)
    base = "".join(c if c.isalnum() else "_" for c in base).strip("_").lower() or "images"
    digest = hashlib.sha1(f"{os.path.abspath(root)}|{layout_options}".encode()).hexdigest()[:8]
    return f"{base}_{digest}"


class ImageFolder(tfds.core.GeneratorBasedBuilder):
    """Folder-per-class images with integer labels in sorted class-name order."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def __init__(self, *, root: str, test_fraction: float = 0.2, split_seed: int = 0,
                 on_bad_image: str = "raise", **kwargs):
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(
                f"data.on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}.")
        self._root = root
        self._test_fraction = test_fraction
        self._split_seed = split_seed
        self._on_bad_image = on_bad_image
        self._files, self._layout = scan_image_files(root)
        self._class_names = sorted({f.label for f in self._files})
        self._skipped: list[str] = []
        options = (f"{self._layout}|{test_fraction}|{split_seed}|{on_bad_image}"
                   if self._layout == "flat" else f"split|{on_bad_image}")
        config = tfds.core.BuilderConfig(
            name=_config_name(root, options), description=f"Images from {os.path.abspath(root)}")
        super().__init__(config=config, file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Folder-per-class images from {self._root} ({self._layout} layout).",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=self._class_names),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        if self._layout == "split":
            splits = {name: [f for f in self._files if f.split == name] for name in SPLIT_FOLDERS}
        else:
            splits = split_per_class(self._files, self._test_fraction, self._split_seed)
        return {name: self._generate_examples(items) for name, items in splits.items() if items}

    def _generate_examples(self, items: list[ImageFile]) -> Iterator[tuple[str, dict]]:
        for path, data in self._read_bytes(items):
            try:
                encoded = _as_rgb_bytes(data)
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                if self._on_bad_image == "raise":
                    raise ValueError(
                        f"Cannot decode image {path!r} in {self._root!r}: {error}. Remove or "
                        "replace the file, or set data.on_bad_image='skip' to leave it out."
                    ) from error
                logging.warning("Skipping unreadable image %s: %s", path, error)
                self._skipped.append(path)
                continue
            label = path.split("/")[-2]
            yield path, {"image": encoded, "label": label, "file_name": path}

    def _read_bytes(self, items: list[ImageFile]) -> Iterator[tuple[str, bytes]]:
        wanted = {item.path for item in items}
        if _is_archive(self._root):
            with tarfile.open(self._root) as archive:
                for member in archive:
                    if member.name in wanted:
                        yield member.name, archive.extractfile(member).read()
        else:
            for item in items:
                with open(os.path.join(self._root, item.path), "rb") as f:
                    yield item.path, f.read()

    def _download_and_prepare(self, dl_manager, download_config=None):
        super()._download_and_prepare(dl_manager, download_config)
        self.info.metadata["skipped_images"] = sorted(self._skipped)
        if self._skipped:
            logging.warning("Left out %d unreadable images of %s (data.on_bad_image='skip').",
                            len(self._skipped), self._root)


def _as_rgb_bytes(data: bytes) -> bytes:
    """Decode an image fully (so corrupt files fail here) and return RGB JPEG or PNG bytes.

    RGB JPEG and PNG files keep their original bytes. Other modes (grayscale, palette, RGBA) and
    other formats are converted to RGB and re-encoded losslessly as PNG.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode == "RGB" and image.format in ("JPEG", "PNG"):
            return data
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()
