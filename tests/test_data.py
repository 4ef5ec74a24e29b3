"""The folder-per-class TFDS builder and in-memory loading, on real CIFAR-10 JPEGs."""

import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CIFAR_ARCHIVE, extract_subset
from mvs_jax.data.folder import ImageFile, ImageFolder, scan_image_files, split_per_class
from mvs_jax.data.loading import load_split


def _build(root, data_dir, **kwargs) -> ImageFolder:
    builder = ImageFolder(root=str(root), data_dir=str(data_dir), **kwargs)
    builder.download_and_prepare()
    return builder


def test_split_layout_counts_and_labels(cifar_subset, tmp_path):
    builder = _build(cifar_subset, tmp_path)
    assert builder.info.splits["train"].num_examples == 3 * 40
    assert builder.info.splits["test"].num_examples == 3 * 10
    assert builder.info.features["label"].names == ["airplane", "cat", "ship"]


def test_loaded_pixels_match_jpeg_decoding(cifar_subset, tmp_path):
    builder = _build(cifar_subset, tmp_path)
    split = load_split(builder, "test", 32)
    source = builder.as_data_source("test")
    for index in (0, 7, 29):
        name = source[index]["file_name"].decode()
        expected = np.asarray(Image.open(cifar_subset / name).convert("RGB"))
        np.testing.assert_array_equal(split.images[index], expected)
        assert split.class_names[split.labels[index]] == name.split("/")[-2]


def test_loaded_labels_per_class(cifar_subset, tmp_path):
    split = load_split(_build(cifar_subset, tmp_path), "train", 32)
    assert split.images.shape == (120, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(split.labels), [40, 40, 40])


def test_load_split_resizes(cifar_subset, tmp_path):
    split = load_split(_build(cifar_subset, tmp_path), "test", 48)
    assert split.images.shape == (30, 48, 48, 3)


def test_load_split_cache_is_reused(cifar_subset, tmp_path):
    builder = _build(cifar_subset, tmp_path)
    first = load_split(builder, "test", 32)
    cached = Path(builder.data_dir) / "decoded" / "test_32_images.npy"
    assert cached.exists()
    second = load_split(builder, "test", 32)
    np.testing.assert_array_equal(first.images, second.images)


def test_unknown_split_names_available(cifar_subset, tmp_path):
    with pytest.raises(ValueError, match=r"'validation'.*\['test', 'train'\]"):
        load_split(_build(cifar_subset, tmp_path), "validation", 32)


def test_archive_read_in_place(tmp_path):
    # A .tar.gz with a wrapper folder, as the shared CIFAR-10 archive has.
    source = extract_subset(tmp_path / "src", ("dog", "frog"), {"train": 5, "test": 3})
    archive = tmp_path / "small.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="wrapper")
    builder = _build(archive, tmp_path / "tfds")
    assert builder.info.splits["train"].num_examples == 10
    assert builder.info.splits["test"].num_examples == 6
    assert builder.info.features["label"].names == ["dog", "frog"]


def test_flat_layout_seeded_split(tmp_path):
    # The location-dataset layout: root/<place>/<image>, 15 images per class.
    root = extract_subset(tmp_path / "places", ("bird", "deer", "horse"),
                          {"train": 10, "test": 5}, flat=True)
    builder = _build(root, tmp_path / "tfds", test_fraction=0.2, split_seed=3)
    assert builder.info.splits["test"].num_examples == 3 * 3
    assert builder.info.splits["train"].num_examples == 3 * 12

    train = {x["file_name"] for x in builder.as_data_source("train")}
    test = {x["file_name"] for x in builder.as_data_source("test")}
    assert not train & test
    assert len(train | test) == 45


def test_flat_split_depends_on_seed_only():
    files = [ImageFile(None, f"c{c}", f"c{c}/{i}.jpg") for c in range(4) for i in range(10)]
    first = split_per_class(files, 0.3, seed=1)
    again = split_per_class(list(reversed(files)), 0.3, seed=1)
    other = split_per_class(files, 0.3, seed=2)
    assert first == again
    assert first["test"] != other["test"]
    per_class = [sum(f.label == f"c{c}" for f in first["test"]) for c in range(4)]
    assert per_class == [3, 3, 3, 3]


def test_missing_root_names_path(tmp_path):
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(FileNotFoundError, match="no_such_dataset"):
        ImageFolder(root=str(missing), data_dir=str(tmp_path))


def test_image_outside_class_folder_rejected(tmp_path):
    root = tmp_path / "bad_layout"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(root / "loose.jpg")
    with pytest.raises(ValueError, match="loose.jpg"):
        ImageFolder(root=str(root), data_dir=str(tmp_path / "tfds"))


def _folder_with_corrupt_image(tmp_path) -> Path:
    root = extract_subset(tmp_path / "places", ("cat", "dog"), {"train": 4}, flat=True)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_corrupt_image_raises_with_file_name(tmp_path):
    root = _folder_with_corrupt_image(tmp_path)
    builder = ImageFolder(root=str(root), data_dir=str(tmp_path / "tfds"))
    with pytest.raises(ValueError, match="dog/broken.jpg"):
        builder.download_and_prepare()


def test_corrupt_image_skipped_and_counted(tmp_path, caplog):
    root = _folder_with_corrupt_image(tmp_path)
    with caplog.at_level(logging.WARNING):
        builder = _build(root, tmp_path / "tfds", on_bad_image="skip", test_fraction=0.25)
    total = sum(s.num_examples for s in builder.info.splits.values())
    assert total == 8
    assert builder.info.metadata["skipped_images"] == ["dog/broken.jpg"]
    assert "dog/broken.jpg" in caplog.text
    assert "Left out 1 unreadable" in caplog.text


def test_invalid_bad_image_policy(tmp_path, cifar_subset):
    with pytest.raises(ValueError, match="'ignore'"):
        ImageFolder(root=str(cifar_subset), data_dir=str(tmp_path), on_bad_image="ignore")


def test_grayscale_and_png_converted_to_rgb(tmp_path):
    root = tmp_path / "modes"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    Image.new("L", (6, 6), 200).save(root / "a" / "gray.jpg")
    Image.new("RGBA", (6, 6), (10, 20, 30, 40)).save(root / "b" / "alpha.png")
    Image.new("P", (6, 6)).save(root / "b" / "palette.gif")
    Image.new("RGB", (6, 6), (1, 2, 3)).save(root / "a" / "plain.bmp")
    builder = _build(root, tmp_path / "tfds", test_fraction=0.5)
    images = [x["image"] for split in ("train", "test") for x in builder.as_data_source(split)]
    assert len(images) == 4
    assert all(image.shape == (6, 6, 3) for image in images)


def test_scan_reports_layout_of_shared_archive():
    if not CIFAR_ARCHIVE.exists():
        pytest.skip(f"{CIFAR_ARCHIVE} not found.")
    files, layout = scan_image_files(str(CIFAR_ARCHIVE))
    assert layout == "split"
    assert sum(f.split == "train" for f in files) == 50_000
    assert sum(f.split == "test" for f in files) == 10_000
    assert len({f.label for f in files}) == 10
