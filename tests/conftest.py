"""Shared fixtures: small real image folders cut from the CIFAR-10 JPEG archive."""

import os
import tarfile
from pathlib import Path

import jax
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_ARCHIVE = SHARED_DATA / "cifar10_jpeg.tar.gz"

# A persistent compilation cache makes repeated model compilations in the tests cheap.
jax.config.update("jax_compilation_cache_dir",
                  os.path.expanduser("~/.cache/mvs_jax/test_compilation_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def extract_subset(destination: Path, classes: tuple[str, ...], per_split: dict[str, int],
                   flat: bool = False) -> Path:
    """Copy the first `per_split[split]` images of each class out of the CIFAR-10 archive.

    With `flat`, the images of both splits go to `destination/<class>/` (the location-dataset
    layout); otherwise to `destination/<split>/<class>/`.
    """
    if not CIFAR_ARCHIVE.exists():
        pytest.skip(f"{CIFAR_ARCHIVE} not found; the tests need the shared data folder.")
    wanted = {}
    for split, count in per_split.items():
        for label in classes:
            for index in range(count):
                wanted[f"cifar10/{split}/{label}/{index:04d}.jpg"] = (split, label)
    with tarfile.open(CIFAR_ARCHIVE) as archive:
        for member in archive:
            if member.name not in wanted:
                continue
            split, label = wanted[member.name]
            folder = destination / label if flat else destination / split / label
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{split}_{Path(member.name).name}" if flat else Path(member.name).name
            (folder / name).write_bytes(archive.extractfile(member).read())
    return destination


@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory) -> Path:
    """Three classes, 40 training and 10 test images each, in the train/test layout."""
    root = tmp_path_factory.mktemp("cifar_subset")
    return extract_subset(root, ("airplane", "cat", "ship"), {"train": 40, "test": 10})
