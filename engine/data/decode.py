"""Decode every image of a dataset version once, into uint8 arrays at the model's input size.

Training reads pixels many times (every epoch) but they never change for a given dataset version
and input size, so they are decoded once, resized once and kept as one ``.npy`` file per
(version, size, channels) under ``<workspace>/cache/decoded/``. Later runs on the same version
load it in well under a second. When the decoded set would not fit ``max_cache_bytes`` (default
2 GiB, ``$TAILLAB_DECODE_CACHE_MB``), images are decoded from their files every epoch instead;
``decoded_arrays`` says which.

Decoding: OpenCV where it is faster and gives the same pixels as Pillow (PNG, JPEG and BMP files
stored as 8-bit greyscale or RGB; ``benchmarks/decode.py`` measured 3.1x faster on 28 px PNG digits
and 1.2x on 500 px JPEGs, identical pixels), Pillow (``engine.data.io.open_image``, the path
prediction uses) for every other format and mode. Resizing uses the evaluation transform's own
resize (torchvision's antialiased bilinear, within one grey level of Pillow's), so cached pixels
equal what prediction computes from the same file: it measured 2.4x faster than OpenCV's
INTER_AREA, which also differs from it by up to 6 grey levels.
"""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine import workspace
from engine.data.io import ImageReadError, open_image

DECODE_VERSION = 1  # bump when decoding or resizing changes: old cache files are then ignored
CV2_FORMATS = {"PNG", "JPEG", "BMP"}
CV2_MODES = {"L", "RGB"}


def max_cache_bytes() -> int:
    mb = os.environ.get("TAILLAB_DECODE_CACHE_MB")
    return int(float(mb) * 1024**2) if mb else 2 * 1024**3


def _cv2():
    try:
        import cv2
    except ImportError:  # opencv is a declared dependency; Pillow still works without it
        return None
    cv2.setNumThreads(1)  # threads of our own decode files in parallel
    return cv2


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    """(H, W[, C]) uint8 -> (size, size[, C]) with the evaluation transform's resize."""
    if arr.shape[:2] == (size, size):
        return arr
    import torch
    from torchvision.transforms.v2.functional import resize

    if not (arr.flags.writeable and arr.flags.c_contiguous):  # e.g. np.asarray of a PIL image
        arr = np.array(arr, order="C")
    t = torch.from_numpy(arr)
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    out = resize(t, [size, size], antialias=True)
    return out[0].numpy() if arr.ndim == 2 else out.permute(1, 2, 0).numpy()


def decode_pillow(path: str, channels: int) -> np.ndarray:
    """The reference decoder (what prediction uses): upright, 8-bit, in the run's colour mode."""
    from engine.data.io import convert_mode

    img = convert_mode(open_image(path), "L" if channels == 1 else "RGB")
    return np.asarray(img, dtype=np.uint8)


def decode_file(path: str, channels: int, *, fmt: str = "", mode: str = "",
                upright: tuple[int, int] | None = None, cv2=None) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8. ``fmt`` / ``mode`` / ``upright`` (height, width) are the scan's
    facts about the file: they pick the OpenCV path and check its result."""
    if cv2 is not None and fmt in CV2_FORMATS and mode in CV2_MODES and not (mode == "RGB" and channels == 1):
        buf = np.fromfile(path, dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if mode == "L" else cv2.IMREAD_COLOR)
        if arr is not None and (upright is None or arr.shape[:2] == tuple(upright)):
            if arr.ndim == 3:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
            elif channels == 3:
                arr = np.repeat(arr[:, :, None], 3, axis=2)
            return arr
    return decode_pillow(path, channels)


def decode_many(paths: Sequence[str], *, size: int, channels: int,
                facts: Sequence[tuple[str, str, tuple[int, int] | None]] | None = None,
                out: np.ndarray | None = None, progress: Callable[[int, int], None] | None = None,
                workers: int | None = None) -> np.ndarray:
    """Decode and resize ``paths`` into ``out`` (N, size, size[, 3]) uint8, in parallel threads
    (OpenCV, Pillow and torch release the GIL while they decode and resize)."""
    n = len(paths)
    shape = (n, size, size) if channels == 1 else (n, size, size, 3)
    out = np.empty(shape, dtype=np.uint8) if out is None else out
    cv2 = _cv2()
    facts = facts or [("", "", None)] * n

    def one(i: int) -> None:
        fmt, mode, upright = facts[i]
        try:
            out[i] = _resize(decode_file(paths[i], channels, fmt=fmt, mode=mode, upright=upright, cv2=cv2), size)
        except ImageReadError as e:
            from engine.data.sources import DatasetError
            raise DatasetError(f"Cannot read a training image: {e}") from e

    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each resize is small: one thread each, many at once
    try:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            step = 2048
            for start in range(0, n, step):
                list(pool.map(one, range(start, min(n, start + step))))
                if progress is not None:
                    progress(min(n, start + step), n)
    finally:
        torch.set_num_threads(threads)
    return out


def cache_path(key: str, size: int, channels: int) -> Path:
    d = workspace.cache_dir() / "decoded"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{key[:16]}-{size}px-{channels}ch-v{DECODE_VERSION}.npy"


def decoded_arrays(key: str, paths: Sequence[str], *, size: int, channels: int,
                   facts=None, progress=None) -> tuple[np.ndarray | None, str]:
    """(arrays in the order of ``paths``, note) with ``key`` naming the set of files (a dataset
    version's hash); (None, note) when the set is too large to keep decoded."""
    n = len(paths)
    nbytes = n * size * size * channels
    human = f"{nbytes / 1024**2:,.0f} MB" if nbytes >= 1024**2 else f"{nbytes / 1024:,.0f} kB"
    limit = max_cache_bytes()
    if nbytes > limit:
        # a limit under 1 GiB in MB (a 100 MB limit is not "0.1 GiB", a 10 kB one not "0.0 GiB")
        limit_h = f"{limit / 1024**3:.1f} GiB" if limit >= 1024**3 else f"{limit / 1024**2:.3g} MB"
        return None, (f"images are decoded from their files every epoch: decoded, the {n:,} images "
                      f"would take {human}, over the {limit_h} cache limit (TAILLAB_DECODE_CACHE_MB)")
    path = cache_path(key, size, channels)
    if path.is_file():
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.shape[0] == n:
                return np.ascontiguousarray(arr), (f"{n:,} images read from the decoded cache "
                                                    f"({human}, {size}x{size}x{channels})")
        except (OSError, ValueError):
            pass  # damaged: decode again
    fd, tmp = tempfile.mkstemp(prefix=".decode-", suffix=".npy", dir=path.parent)
    os.close(fd)
    try:
        shape = (n, size, size) if channels == 1 else (n, size, size, 3)
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        decode_many(paths, size=size, channels=channels, facts=facts, out=mm, progress=progress)
        mm.flush()
        del mm
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    arr = np.load(path, allow_pickle=False)
    return arr, f"{n:,} images decoded once into the cache ({human}, {size}x{size}x{channels}); later runs reuse it"
