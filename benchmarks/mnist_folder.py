"""Write MNIST-LT as a PNG ImageFolder the way users keep data: ``train/``, ``val/``, ``test/``
split folders with one sub-folder per class.

    python -m benchmarks.mnist_folder OUT [--ratio 100]

train/: the 50,000 MNIST training digits made long-tailed with the CIFAR-LT construction (class i
keeps floor(n_max * ratio^(-i/9)) images, n_max = the smallest full class); val/: the 10,000
validation digits; test/: the 10,000 test digits (both about 1,000 per class).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from engine.data.builtin import load_builtin
from engine.data.longtail import longtail_counts, longtail_indices

MNIST_TRAIN = 50_000  # the pool's first 50,000 are MNIST's training set, the rest its validation set


def write_mnist_lt_folder(out: str | Path, ratio: float = 100.0, seed: int = 0) -> dict[str, list[int]]:
    """Write the folder (skipped when it is complete already); returns images per class per split."""
    out = Path(out)
    d = load_builtin("mnist")
    x, y = d.train_images[:MNIST_TRAIN], d.train_labels[:MNIST_TRAIN]
    counts = longtail_counts(int(np.bincount(y).min()), 10, ratio)
    tr = longtail_indices(y, counts, seed)
    parts = {"train": (x[tr], y[tr]),
             "val": (d.train_images[MNIST_TRAIN:], d.train_labels[MNIST_TRAIN:]),
             "test": (d.test_images, d.test_labels)}
    done = out / ".complete"
    if not done.exists():
        for split, (xs, ys) in parts.items():
            for c in range(10):
                (out / split / str(c)).mkdir(parents=True, exist_ok=True)
            for i, (img, label) in enumerate(zip(xs, ys)):
                Image.fromarray(img, mode="L").save(out / split / str(int(label)) / f"{i:05d}.png")
        done.touch()
    return {s: np.bincount(ys, minlength=10).tolist() for s, (_, ys) in parts.items()}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--ratio", type=float, default=100.0)
    a = p.parse_args()
    print(write_mnist_lt_folder(a.out, a.ratio))
