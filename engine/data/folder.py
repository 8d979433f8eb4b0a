"""A folder of images with one sub-folder per class (nested folders belong to their class)."""
from __future__ import annotations

import os
from pathlib import Path

from engine.data.io import is_image_name
from engine.data.sources import DataError

NOISE = {"__MACOSX", ".DS_Store", "Thumbs.db", ".ipynb_checkpoints"}


class DatasetError(DataError):
    """A data source we cannot use; the message says what is wrong and what to do.
    (A DataError, so one ``except DataError`` covers every data problem.)"""


def list_image_folder(root: str | os.PathLike) -> tuple[list[str], list[int], list[str]]:
    """(relative paths, labels, class names) of an ImageFolder-style tree, classes sorted by name.

    Hidden files, macOS noise and non-image extensions are skipped. Raises DatasetError for a
    missing path, a file, a folder without class sub-folders, or a class folder without images.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"The folder {root} does not exist.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder of class sub-folders.")
    classes = sorted(d.name for d in root.iterdir()
                     if d.is_dir() and d.name not in NOISE and not d.name.startswith("."))
    if not classes:
        loose = [f for f in root.iterdir() if f.is_file() and is_image_name(f.name)]
        hint = (" It holds images directly: put each class's images in a sub-folder named after "
                "the class." if loose else "")
        raise DatasetError(f"The folder {root} holds no class sub-folders with images.{hint}")
    paths, labels, empty = [], [], []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in NOISE and not d.startswith("."))
            for f in sorted(filenames):
                if is_image_name(f) and not f.startswith("."):
                    found.append(os.path.relpath(os.path.join(dirpath, f), root))
        if not found:
            empty.append(name)
        paths += found
        labels += [label] * len(found)
    if empty:
        raise DatasetError(
            f"Class folder(s) with no images: {', '.join(empty)}. Add images (PNG, JPEG, WebP, "
            "BMP, GIF, TIFF) or remove the folder(s).")
    return paths, labels, classes
