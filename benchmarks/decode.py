"""OpenCV against Pillow for what the training cache does: decode, then resize to the input size.

    python -m benchmarks.decode [--n 3000]

Files: MNIST digits as 28x28 greyscale PNGs, and 375x500 RGB photos-like JPEGs (smooth noise with
edges), written to a temporary folder. For each, per image, one thread: decode with
``cv2.imdecode`` and with Pillow (``engine.data.decode.decode_pillow``, the path prediction uses),
and resize to 224 px with OpenCV's INTER_AREA and with the evaluation transform's antialiased
bilinear resize. Prints a table (microseconds per image, speed-up, largest pixel difference) and
``name: value`` lines. A method is kept only where it is faster *and* within one grey level.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from engine.data.builtin import load_builtin
from engine.data.decode import _resize, decode_file, decode_pillow


def _per_image(fn, items) -> tuple[float, list]:
    fn(items[0])  # warm-up: first-call imports (torchvision) and allocations are not per-image costs
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return (time.perf_counter() - t0) / len(items) * 1e6, out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=3000)
    a = p.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        digits = load_builtin("mnist").test_images[:a.n]
        pngs = []
        for i, d in enumerate(digits):
            pngs.append(str(Path(tmp) / f"{i}.png"))
            Image.fromarray(d, mode="L").save(pngs[-1])
        jpgs = []
        for i in range(max(50, a.n // 20)):
            img = cv2.GaussianBlur(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), (7, 7), 0)
            img[120:180, :] = 250
            jpgs.append(str(Path(tmp) / f"{i}.jpg"))
            Image.fromarray(img).save(jpgs[-1], quality=90)
        for name, files, mode, ch in (("png_28px_grey", pngs, "L", 1), ("jpeg_500px_rgb", jpgs, "RGB", 3)):
            fmt = "PNG" if files is pngs else "JPEG"
            t_cv, a_cv = _per_image(lambda f: decode_file(f, ch, fmt=fmt, mode=mode, cv2=cv2), files)
            t_pil, a_pil = _per_image(lambda f: decode_pillow(f, ch), files)
            diff = max(int(np.abs(x.astype(int) - y).max()) for x, y in zip(a_cv, a_pil))
            rows.append((f"decode {name}", t_pil, t_cv, diff))
            figures[f"decode_{name}_speedup"] = t_pil / t_cv
            figures[f"decode_{name}_max_diff"] = diff
        big = [decode_pillow(f, 3) for f in jpgs]
        t_area, r_area = _per_image(lambda x: cv2.resize(x, (224, 224), interpolation=cv2.INTER_AREA), big)
        t_bil, r_bil = _per_image(lambda x: _resize(x, 224), big)
        diff = max(int(np.abs(x.astype(int) - y).max()) for x, y in zip(r_area, r_bil))
        rows.append(("resize 500->224 px (cv2 INTER_AREA vs ours)", t_bil, t_area, diff))
        figures["resize_cv2_area_speedup"] = t_bil / t_area
        figures["resize_cv2_area_max_diff"] = diff
    print(f"{'':46} {'Pillow/ours us':>14} {'OpenCV us':>10} {'speed-up':>8} {'max diff':>8}")
    for name, slow, fast, diff in rows:
        print(f"{name:46} {slow:14.1f} {fast:10.1f} {slow / fast:8.2f} {diff:8d}")
    for k, v in figures.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
