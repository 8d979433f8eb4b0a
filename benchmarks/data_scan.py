"""Benchmark of ``engine.data.scan`` + ``engine.data.stats`` on a generated image folder.

    python -m benchmarks.data_scan [--n 50000] [--classes 100] [--dir /tmp/taillab-bench-scan]

The folder (small PNG and JPEG images, 48-256 px a side, long-tailed over the classes, with a few
planted duplicates, near duplicates and broken files) is generated once and reused while its
parameters match. Three timings:

- first scan: empty cache, scan + all statistics (the figure ``data_scan_images_per_s``);
- naive loop: for a seeded sample of the files, one at a time, PIL open + full decode, then the
  same facts (blake2b of the bytes, size, format, mode, RGB and grey mean/std, dHash) at full
  resolution with numpy; its rate is compared with the first scan's (``data_scan_speedup_vs_naive``);
- re-scan: the same folder again with the warm cache (``data_scan_rescan_speedup``).

The files are in the OS page cache for every timing (they were just written or read), so disk
speed is not measured. The last lines are ``name: value`` figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.data.io import open_image
from engine.data.scan import DHASH_MARGIN, scan_folder
from engine.data.stats import compute_stats

MARKER = ".taillab-bench.json"


# --- the generated folder ------------------------------------------------------------------------

def class_sizes(n: int, classes: int, ratio: float = 10.0) -> list[int]:
    w = ratio ** (-np.arange(classes) / max(classes - 1, 1))
    sizes = np.floor(n * w / w.sum()).astype(int)
    sizes[: n - sizes.sum()] += 1
    return sizes.tolist()


def _picture(seed: int) -> Image.Image:
    """A random smooth colour field with a few shapes and sensor-like noise (varied dHashes)."""
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(48, 257, 2))
    gw, gh = (int(v) for v in rng.integers(4, 12, 2))
    coarse = Image.fromarray(rng.integers(0, 256, (gh, gw, 3), dtype=np.uint8))
    img = coarse.resize((w, h), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(5, w)), y0 + int(rng.integers(5, h))]
        draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-8, 9, (h, w, 1), dtype=np.int16)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _write(job: tuple[str, int, str]) -> None:
    path, seed, ext = job
    img = _picture(seed)
    if ext == ".jpg":
        img.save(path, quality=88)
    else:
        img.save(path, compress_level=3)


def generate(root: Path, n: int, classes: int, seed: int = 0) -> Path:
    """Create (or reuse) the benchmark folder; returns it."""
    params = {"n": n, "classes": classes, "seed": seed, "version": 3}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    if root.exists():
        if not (marker.is_file() or not any(root.iterdir())):
            raise SystemExit(f"{root} exists and is not a benchmark folder; pass another --dir.")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    jobs = []
    for c, size in enumerate(class_sizes(n, classes)):
        d = root / f"class_{c:03d}"
        d.mkdir()
        for j in range(size):
            s = seed * 10_000_000 + c * 100_000 + j
            jobs.append((str(d / f"img_{j:05d}{'.jpg' if s % 10 < 7 else '.png'}"), s,
                         ".jpg" if s % 10 < 7 else ".png"))
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for _ in pool.imap_unordered(_write, jobs, chunksize=64):
            pass
    # Planted problems, about 1% of the files: exact copies (some across classes), re-encoded
    # near copies, truncated and empty files.
    rng = random.Random(seed)
    paths = [j[0] for j in jobs]
    k = max(n // 400, 2)
    for src in rng.sample(paths, k):
        dst_dir = Path(src).parent if rng.random() < 0.7 else Path(rng.choice(paths)).parent
        shutil.copyfile(src, dst_dir / f"copy_{Path(src).parent.name}_{Path(src).name}")
    for src in rng.sample(paths, k):
        img = Image.open(src).convert("RGB")
        img.resize((img.width * 3 // 4, img.height * 3 // 4)).save(
            Path(src).parent / f"near_{Path(src).stem}.jpg", quality=70)
    for src in rng.sample(paths, 5):
        data = Path(src).read_bytes()
        Path(src).write_bytes(data[: len(data) // 2])
    for src in rng.sample(paths, 3):
        Path(src).write_bytes(b"")
    marker.write_text(json.dumps(params))
    print(f"generated {n:,} images in {classes} classes under {root} in {time.perf_counter() - t0:.0f} s")
    return root


# --- the naive loop ------------------------------------------------------------------------------

def naive_facts(path: str) -> dict:
    """One file, the obvious way: full decode, numpy at full resolution."""
    st = os.stat(path)
    with open(path, "rb") as f:
        sha = hashlib.blake2b(f.read(), digest_size=16).hexdigest()
    with Image.open(path) as raw:
        fmt, mode = raw.format, raw.mode
    img = open_image(path)  # full decode, EXIF orientation
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    grey_img = img.convert("L")
    grey = np.asarray(grey_img, dtype=np.float64) / 255.0
    small = np.asarray(grey_img.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = np.packbits(small[:, 1:] > small[:, :-1] + DHASH_MARGIN)
    return {"size": st.st_size, "sha": sha, "format": fmt, "mode": mode, "w": img.width, "h": img.height,
            "mean": rgb.mean(axis=(0, 1)), "std": rgb.std(axis=(0, 1)), "sq": (rgb**2).mean(axis=(0, 1)),
            "grey_mean": grey.mean(), "grey_std": grey.std(), "dhash": int.from_bytes(bits.tobytes(), "big")}


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once they have exited
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# --- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="images to generate (default 50000)")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "taillab-bench-scan")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--naive-sample", type=int, default=2000,
                    help="files timed with the naive loop (its rate is per file; default 2000)")
    args = ap.parse_args(argv)

    root = generate(args.dir, args.n, args.classes)
    cache = Path(tempfile.mkdtemp(prefix="taillab-bench-cache-"))
    load_before = os.getloadavg()[0]
    try:
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        scan = scan_folder(root, cache_dir=cache, workers=args.workers, roots=[root])
        stats = compute_stats(scan)
        t_first = time.perf_counter() - t0
        cpu_first = _cpu_seconds() - cpu0
        n_files = len(scan.images)

        t0 = time.perf_counter()
        rescan = scan_folder(root, cache_dir=cache, workers=args.workers, roots=[root])
        stats2 = compute_stats(rescan)
        t_re = time.perf_counter() - t0
        assert rescan.computed == 0 and stats2.to_dict() == stats.to_dict()
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    by_rel = {f.rel: f for f in scan.images if f.ok}
    sample = random.Random(1).sample(sorted(by_rel), min(args.naive_sample, len(by_rel)))
    t0 = time.perf_counter()
    naive = [naive_facts(str(root / rel)) for rel in sample]
    t_naive = time.perf_counter() - t0

    # Accuracy of the downscaled mean/std against full resolution, on the naive sample.
    fast_m = np.mean([by_rel[r].mean[:3] for r in sample], axis=0)
    fast_sq = np.mean([by_rel[r].sqmean[:3] for r in sample], axis=0)
    full_m = np.mean([d["mean"] for d in naive], axis=0)
    full_sq = np.mean([d["sq"] for d in naive], axis=0)
    err_mean = float(np.abs(fast_m - full_m).max())
    err_std = float(np.abs(np.sqrt(fast_sq - fast_m**2) - np.sqrt(full_sq - full_m**2)).max())
    same_hash = np.mean([by_rel[r].sha == d["sha"] for r, d in zip(sample, naive)])
    dh_dist = np.mean([bin(by_rel[r].dhash ^ d["dhash"]).count("1") for r, d in zip(sample, naive)])

    rate = n_files / t_first
    naive_rate = len(sample) / t_naive
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("files", f"{n_files:,}", f"{stats.num_images:,} readable, {stats.num_classes} classes"),
        ("first scan + stats", f"{t_first:.2f} s", f"{rate:,.0f} files/s, {args.workers} workers"),
        ("re-scan + stats (cache)", f"{t_re:.2f} s", f"{n_files / t_re:,.0f} files/s"),
        ("naive loop", f"{t_naive:.2f} s", f"{naive_rate:,.0f} files/s on {len(sample):,} files"),
        ("CPU time, first scan", f"{cpu_first:.1f} s", f"{cpu_first / n_files * 1e3:.2f} ms per file, all processes"),
        ("  rate if the CPUs were idle", f"{n_files / (cpu_first / min(args.workers, os.cpu_count() or 1)):,.0f} files/s",
         "estimate: CPU time spread over the workers' cores"),
        ("load average (1 min)", f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}",
         f"{os.cpu_count()} CPUs; other work on the machine slows every figure"),
        ("problems found", f"{len(stats.corrupt)} unreadable",
         f"{len(stats.duplicates)} exact / {len(stats.near_duplicates)} near duplicate groups"),
        ("mean/std error vs full res", f"{err_mean:.5f} / {err_std:.5f}", "max over RGB, 0..1 scale"),
        ("dHash vs full res", f"{dh_dist:.2f} bits", f"content hashes equal: {same_hash:.0%}"),
        ("peak memory (main)", f"{rss_mb:.0f} MB", ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:>{w1}}  {c}")
    print(f"data_scan_images_per_s: {rate:.0f}")
    print(f"data_scan_speedup_vs_naive: {rate / naive_rate:.2f}")
    print(f"data_scan_rescan_speedup: {t_first / t_re:.1f}")


if __name__ == "__main__":
    main()
