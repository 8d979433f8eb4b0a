"""Per-image facts of a data source, computed once and cached.

For every image file: size and mtime, a content hash (blake2b of the bytes), format, stored colour
mode, upright width and height, readability (with the reason when it fails), a 64-bit difference
hash (dHash) for near-duplicate search, and per-channel mean and mean of squares for the dataset's
normalisation constants. Nothing else is kept: memory grows with the number of files, never with
their pixels.

Speed: files are processed in chunks by a pool of worker processes. JPEGs are decoded at reduced
size (``Image.draft``: the decoder skips fine DCT detail) and every image is box-reduced so that its
short side is about ``STATS_SIDE`` pixels before the statistics and the dHash are computed. The
means are therefore those of the downscaled copy, which is what a model sees once images are
resized to its input; the per-channel mean is unchanged by box averaging and the std drops only by
the fine texture that reduction removes (measured in ``benchmarks/data_scan.py``, typically well
under 0.01 on the 0..1 scale). Widths, heights, formats and modes are those of the file itself.

Facts are cached in SQLite (``<workspace>/cache/scan-facts.sqlite``) keyed on
(absolute path, size, mtime_ns): an unchanged file is never opened again.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import multiprocessing
import os
import sqlite3
import struct
import sys
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin, UnidentifiedImageError

from engine import workspace
from engine.data.io import MAX_PIXELS, convert_mode
from engine.data.sources import Entry, Listing, list_source

FACTS_VERSION = 2  # bump when the meaning of a cached fact changes: old rows are then ignored
DHASH_MARGIN = 3  # grey levels: a dHash bit needs a step larger than this (v2; v1 had none)
STATS_SIDE = 64  # px: short side of the copy the means / dHash are computed on
CHUNK = 64  # files per task sent to a worker
MIN_PARALLEL = 256  # fewer files to decode than this: do it in this process

Progress = Callable[[int, int], None]


class ImageFacts(NamedTuple):
    """What a scan knows about one image file (a named tuple: cheap to build by the 100,000)."""

    rel: str  # path relative to the source root, '/'-separated
    label: str
    split: str  # "train" | "val" | "test", "" if the source has no splits
    size: int  # bytes
    mtime_ns: int
    sha: str  # blake2b-128 of the file bytes, hex ("" if the file could not be read)
    ok: bool  # decodes completely
    error: str  # why not, in words; "" when ok
    format: str  # "PNG", "JPEG", ... as PIL names it; "" if not an image
    mode: str  # colour mode stored in the file: RGB, L, RGBA, CMYK, P, I;16, ...
    width: int  # upright (EXIF orientation applied); 0 if unknown
    height: int
    dhash: int  # 64-bit difference hash of the upright greyscale image (0 when not ok)
    mean: tuple[float, float, float, float]  # R, G, B, grey means on 0..1 (downscaled copy)
    sqmean: tuple[float, float, float, float]  # means of squares, same channels

    @property
    def aspect(self) -> float:
        """Long side over short side (>= 1); 0 if unknown."""
        if not self.width or not self.height:
            return 0.0
        return max(self.width, self.height) / min(self.width, self.height)


# Content facts (everything after rel/label/split), in ImageFacts field order.
_CONTENT = ImageFacts._fields[3:]
_ZERO4 = (0.0, 0.0, 0.0, 0.0)


# --- one file ------------------------------------------------------------------------------------

# The two formats of nearly every dataset, opened by their plugin directly (Image.open would first
# try format detectors one by one).
_OPENERS = {b"\xff\xd8\xff\xe0": JpegImagePlugin.JpegImageFile, b"\xff\xd8\xff\xe1": JpegImagePlugin.JpegImageFile,
            b"\xff\xd8\xff\xdb": JpegImagePlugin.JpegImageFile, b"\x89PNG": PngImagePlugin.PngImageFile}


def _png_complete(data: bytes) -> bool:
    # Pillow decodes a PNG that lost its last bytes without complaint; a complete one ends in IEND.
    return data.rfind(b"IEND", max(0, len(data) - 4096)) >= 0


def _decode_facts(data: bytes) -> tuple:
    """(ok, error, format, mode, width, height, dhash, mean, sqmean) of an image's bytes.

    The pixel-count limit is checked here, from the header, before anything is decoded; callers
    silence Pillow's DecompressionBombWarning (see _facts_chunk).
    """
    bad = (False,)
    if not data:
        return (*bad, "the file is empty (0 bytes)", "", "", 0, 0, 0, _ZERO4, _ZERO4)
    try:
        opener = _OPENERS.get(data[:4])
        img = opener(io.BytesIO(data)) if opener else Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return (*bad, "not an image file PIL can read (wrong extension or corrupt)",
                "", "", 0, 0, 0, _ZERO4, _ZERO4)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return (*bad, f"image is too large (possible decompression bomb): {e}",
                "", "", 0, 0, 0, _ZERO4, _ZERO4)
    except (OSError, SyntaxError, ValueError) as e:
        return (*bad, f"the image header is corrupt ({e})", "", "", 0, 0, 0, _ZERO4, _ZERO4)
    fmt, mode = img.format or "", img.mode
    w, h = img.size
    if w * h > MAX_PIXELS:
        return (*bad, f"{w}x{h} pixels is over the {MAX_PIXELS:,}-pixel limit (possible "
                "decompression bomb)", fmt, mode, w, h, 0, _ZERO4, _ZERO4)
    orientation = 1
    if "exif" in img.info or fmt in ("TIFF", "MPO"):
        try:
            orientation = int(img.getexif().get(0x0112, 1))
        except Exception:  # a broken EXIF block must not make a good image unreadable
            orientation = 1
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    try:
        if fmt == "JPEG":
            img.draft(img.mode, (STATS_SIDE, STATS_SIDE))  # keeps both sides >= STATS_SIDE
        img.load()
        if fmt == "PNG" and not _png_complete(data):
            raise OSError("no IEND chunk: the file ends early")
    except Image.DecompressionBombError as e:
        return (*bad, f"image is too large (possible decompression bomb): {e}",
                fmt, mode, w, h, 0, _ZERO4, _ZERO4)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        return (*bad, f"the image data is truncated or corrupt ({e})",
                fmt, mode, w, h, 0, _ZERO4, _ZERO4)
    try:
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        rgb = convert_mode(img, "RGB")
        factor = min(rgb.size) // STATS_SIDE
        if factor >= 2:
            rgb = rgb.reduce(factor)
        grey = rgb.convert("L")
    except Exception as e:  # an exotic mode PIL cannot convert
        return (*bad, f"cannot convert the image to RGB ({e})", fmt, mode, w, h, 0, _ZERO4, _ZERO4)
    mean, sqmean = _channel_moments(rgb, grey)
    return (True, "", fmt, mode, w, h, dhash(grey), mean, sqmean)


_LEVELS = np.arange(256, dtype=np.float64)
_MOMENTS = np.stack([_LEVELS, _LEVELS**2], axis=1)  # (256, 2): sum and sum of squares


def _channel_moments(rgb: Image.Image, grey: Image.Image) -> tuple[tuple, tuple]:
    # Histograms are computed in C and are exact; the moments are a (4, 256) @ (256, 2) product.
    hist = np.fromiter(rgb.histogram() + grey.histogram(), dtype=np.float64, count=1024)
    m = hist.reshape(4, 256) @ _MOMENTS / float(rgb.size[0] * rgb.size[1])
    mean, sq = m[:, 0] / 255.0, m[:, 1] / (255.0 * 255.0)
    return tuple(mean.tolist()), tuple(sq.tolist())


def dhash(grey: Image.Image) -> int:
    """64-bit difference hash: 9x8 greyscale thumbnail, bit = pixel brighter than its left neighbour
    by more than DHASH_MARGIN levels.

    The margin keeps flat areas stable: without it, compression noise on a plain background flips
    bits at random (a JPEG re-save of an MNIST digit moved 94% of hashes more than 4 bits; with a
    margin of 3, none of 500)."""
    small = np.frombuffer(grey.resize((9, 8), Image.Resampling.BOX).tobytes(), dtype=np.uint8)
    small = small.reshape(8, 9).astype(np.int16)
    bits = np.packbits(small[:, 1:] > small[:, :-1] + DHASH_MARGIN)
    return int.from_bytes(bits.tobytes(), "big")


def file_facts(path: str) -> tuple:
    """Content facts of one file, in ``_CONTENT`` order. Never raises for a bad file."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except OSError as e:
        return (0, 0, "", False, f"cannot read the file ({e.strerror})", "", "", 0, 0, 0, _ZERO4, _ZERO4)
    sha = hashlib.blake2b(data, digest_size=16).hexdigest()
    ok, error, fmt, mode, w, h, dh, mean, sq = _decode_facts(data)
    return (st.st_size, st.st_mtime_ns, sha, ok, error, fmt, mode, w, h, dh, mean, sq)


def _facts_chunk(paths: list[str]) -> list[tuple]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return [file_facts(p) for p in paths]


# --- cache ---------------------------------------------------------------------------------------

_TABLE = f"facts_v{FACTS_VERSION}"
# Fixed-width facts in one blob: ok, width, height, dhash, 4 means, 4 means of squares.
# (One blob instead of twelve columns makes reading 50,000 rows about twice as fast.)
_PACK = struct.Struct("<?IIQ8d")


class FactsCache:
    """SQLite file of content facts keyed on (absolute path, size, mtime_ns)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        d = Path(cache_dir) if cache_dir is not None else workspace.cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / "scan-facts.sqlite"
        self.con = sqlite3.connect(self.path, timeout=30)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {_TABLE} (path TEXT NOT NULL, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, sha TEXT NOT NULL, error TEXT NOT NULL, format TEXT NOT NULL, "
            f"mode TEXT NOT NULL, packed BLOB NOT NULL, CONSTRAINT pk_{_TABLE} PRIMARY KEY (path)) "
            "WITHOUT ROWID")
        self.con.commit()

    def load_under(self, root: str) -> dict[str, tuple]:
        """Cached facts of every file under the folder ``root``: abs path -> content tuple."""
        lo = root.rstrip(os.sep) + os.sep
        hi = lo[:-1] + chr(ord(os.sep) + 1)
        out = {}
        unpack = _PACK.unpack
        for path, size, mtime, sha, error, fmt, mode, packed in self.con.execute(
                f"SELECT * FROM {_TABLE} WHERE path >= ? AND path < ?", (lo, hi)):
            ok, w, h, dh, m0, m1, m2, m3, s0, s1, s2, s3 = unpack(packed)
            out[path] = (size, mtime, sha, ok, error, fmt, mode, w, h, dh, (m0, m1, m2, m3), (s0, s1, s2, s3))
        return out

    def put(self, rows: Sequence[tuple[str, tuple]]) -> None:
        data = [(path, size, mtime, sha, error, fmt, mode, _PACK.pack(ok, w, h, dh, *mean, *sq))
                for path, (size, mtime, sha, ok, error, fmt, mode, w, h, dh, mean, sq) in rows
                if not error.startswith("cannot read")]  # permissions or I/O: may work next time
        self.con.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", data)
        self.con.commit()

    def close(self) -> None:
        self.con.close()


def clear_cache(cache_dir: str | os.PathLike | None = None) -> None:
    d = Path(cache_dir) if cache_dir is not None else workspace.cache_dir()
    for suffix in ("", "-wal", "-shm"):
        (d / f"scan-facts.sqlite{suffix}").unlink(missing_ok=True)


# --- scanning ------------------------------------------------------------------------------------

@dataclass
class ScanResult:
    """Every image file of a source with its facts. Feed it to ``engine.data.stats.compute_stats``."""

    root: Path  # absolute; ImageFacts.rel is relative to it
    kind: str  # "folder" | "csv"
    images: list[ImageFacts]  # every file with an image extension, readable or not
    classes: list[str]  # sorted class names (including classes without a readable image)
    warnings: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (rel, why) files not scanned
    cached: int = 0  # facts read from the cache
    computed: int = 0  # files opened and decoded by this scan
    seconds: float = 0.0

    @property
    def usable(self) -> list[ImageFacts]:
        return [f for f in self.images if f.ok]

    @property
    def splits(self) -> list[str]:
        present = {f.split for f in self.images}
        return [s for s in ("train", "val", "test", "") if s in present]


def scan_folder(root: str | os.PathLike, *, progress: Progress | None = None,
                cache_dir: str | os.PathLike | None = None, workers: int = 2,
                use_cache: bool = True, roots: Sequence[str | os.PathLike] | None = None,
                check_root: bool = True) -> ScanResult:
    """Scan a data source: a class-per-sub-folder tree or a ``.csv`` manifest.

    ``progress(done, total)`` is called as files are processed (cached files count at once).
    ``root`` must lie inside the allowed data roots (``roots``, default ``allowed_roots()``) unless
    ``check_root`` is False. Raises ``DataError`` for a missing, empty or disallowed source.
    """
    listing = list_source(root, roots=roots, check_root=check_root)
    return scan_listing(listing, progress=progress, cache_dir=cache_dir, workers=workers,
                        use_cache=use_cache)


def scan_listing(listing: Listing, *, progress: Progress | None = None,
                 cache_dir: str | os.PathLike | None = None, workers: int = 2,
                 use_cache: bool = True) -> ScanResult:
    """Facts for every entry of a listing, from the cache where the file is unchanged."""
    t0 = time.perf_counter()
    root = str(listing.root)
    entries: list[Entry] = listing.entries
    total = len(entries)
    cache = FactsCache(cache_dir) if use_cache else None
    try:
        cached_rows = cache.load_under(root) if cache else {}
        content: list[tuple | None] = [None] * total
        todo: list[int] = []
        prefix = root.rstrip(os.sep) + os.sep
        for i, e in enumerate(entries):
            path = prefix + e.rel
            hit = cached_rows.get(path)
            if hit is not None:
                try:
                    st = os.stat(path)
                except OSError:
                    st = None
                if st is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                    content[i] = hit
                    continue
            todo.append(i)
        del cached_rows
        done = total - len(todo)
        if progress:
            progress(done, total)
        for idxs, results in _compute(prefix, entries, todo, workers):
            for i, c in zip(idxs, results):
                content[i] = c
            if cache:
                cache.put([(prefix + entries[i].rel, c) for i, c in zip(idxs, results)])
            done += len(idxs)
            if progress:
                progress(done, total)
    finally:
        if cache:
            cache.close()
    make = tuple.__new__  # ImageFacts(*fields) without the keyword handling: 3x faster
    images = [make(ImageFacts, e + c) for e, c in zip(entries, content)]
    return ScanResult(listing.root, listing.kind, images, list(listing.classes), list(listing.warnings),
                      list(listing.ignored), total - len(todo), len(todo), time.perf_counter() - t0)


def _compute(prefix: str, entries: list[Entry], todo: list[int], workers: int):
    """Yield (indices, content tuples) chunk by chunk, in worker processes when it pays off."""
    chunks = [todo[k:k + CHUNK] for k in range(0, len(todo), CHUNK)]
    paths = [[prefix + entries[i].rel for i in c] for c in chunks]
    pending = list(range(len(chunks)))
    if workers > 1 and len(todo) >= MIN_PARALLEL and _can_spawn():
        try:
            yield from _compute_pool(chunks, paths, pending, workers)
        except BrokenProcessPool:
            pass  # workers could not start (e.g. no importable __main__): finish here
    for k in pending:
        yield chunks[k], _facts_chunk(paths[k])


def _can_spawn() -> bool:
    # A spawned worker re-imports the parent's __main__ file; code run from stdin or `python -c`
    # has none to import, and its workers would fail to start.
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


def _compute_pool(chunks: list[list[int]], paths: list[list[str]], pending: list[int], workers: int):
    # spawn, not fork: safe from a threaded server (Streamlit). A few chunks in flight per worker
    # keep memory flat and progress smooth; ``pending`` is what is still to do if the pool breaks.
    ctx = multiprocessing.get_context("spawn")
    todo = iter(list(pending))
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        running = {}
        for k in itertools.islice(todo, 3 * workers):
            running[pool.submit(_facts_chunk, paths[k])] = k
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                k = running.pop(fut)
                res = fut.result()
                pending.remove(k)
                yield chunks[k], res
                nxt = next(todo, None)
                if nxt is not None:
                    running[pool.submit(_facts_chunk, paths[nxt])] = nxt
