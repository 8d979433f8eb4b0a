"""Acting on a dataset: every function takes a Manifest and returns a new one.

The user's files are never touched: excluding a file, merging classes or splitting only changes
which rows the next manifest holds. Each result records its parent's hash and what was done.

    m = manifest_from_scan(scan)
    m = exclude_files(m, [p for p, _ in stats.corrupt])          # (readable-only already)
    m = dedupe(m, stats.duplicates)                              # keep one file per group
    m = drop_small_classes(m, 10)
    m, warnings = stratified_split(m, val=0.1, test=0.2, seed=0, min_val=2, min_test=2)
    m, warnings = longtail_subset(m, ratio=100, profile="exp", seed=0)
"""
from __future__ import annotations

import math
import zlib
from collections import defaultdict
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from engine.data.longtail import longtail_counts
from engine.data.manifest import Manifest, Row
from engine.data.sources import SPLITS, DataError
from engine.data.stats import DuplicateGroup

__all__ = [
    "SplitResult", "exclude_files", "dedupe", "drop_classes", "rename_classes", "merge_classes",
    "drop_small_classes", "stratified_split", "keep_source_splits", "longtail_counts",
    "longtail_subset",
]


class SplitResult(NamedTuple):
    manifest: Manifest
    warnings: list[str]


def _class_rng(seed: int, label: str) -> np.random.Generator:
    # One stream per class, independent of which other classes exist: adding a class or a file
    # to another class never reshuffles this one.
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def _by_class(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = defaultdict(list)
    for r in sorted(rows):
        out[r.label].append(r)
    return dict(sorted(out.items()))


# --- excluding and relabelling -------------------------------------------------------------------

def exclude_files(m: Manifest, paths: Iterable[str], *, reason: str = "picked by hand") -> Manifest:
    """Leave these files (paths relative to the root) out."""
    drop = set(paths)
    unknown = drop - {r.path for r in m.rows}
    if unknown:
        raise DataError(f"{len(unknown)} path(s) are not in this dataset version: "
                        f"{', '.join(sorted(unknown)[:5])}.")
    return m.derive((r for r in m.rows if r.path not in drop), f"excluded {len(drop)} file(s) ({reason})")


def dedupe(m: Manifest, groups: Iterable[DuplicateGroup | Sequence[str]], *,
           drop_conflicts: bool = False) -> Manifest:
    """Keep one file of each duplicate group (the first by split order train, val, test, then by
    path); with ``drop_conflicts``, drop every file of a group whose files carry different labels."""
    by_path = {r.path: r for r in m.rows}
    split_rank = {s: i for i, s in enumerate(("train", "val", "test", ""))}
    drop: set[str] = set()
    conflicts = 0
    for g in groups:
        paths = [p for p in (g.paths if isinstance(g, DuplicateGroup) else g) if p in by_path]
        if len(paths) < 2:
            continue
        if drop_conflicts and len({by_path[p].label for p in paths}) > 1:
            drop.update(paths)
            conflicts += 1
            continue
        keep = min(paths, key=lambda p: (split_rank[by_path[p].split], p))
        drop.update(p for p in paths if p != keep)
    what = f"removed {len(drop)} duplicate file(s)"
    if conflicts:
        what += f", including all files of {conflicts} group(s) with conflicting labels"
    return m.derive((r for r in m.rows if r.path not in drop), what)


def drop_classes(m: Manifest, names: Iterable[str]) -> Manifest:
    names = set(names)
    unknown = names - set(m.classes)
    if unknown:
        raise DataError(f"Unknown class(es): {', '.join(sorted(unknown))}. Classes: {', '.join(m.classes[:20])}.")
    return m.derive((r for r in m.rows if r.label not in names), f"dropped class(es) {', '.join(sorted(names))}")


def rename_classes(m: Manifest, mapping: Mapping[str, str]) -> Manifest:
    """Rename classes; mapping several to the same new name merges them."""
    unknown = set(mapping) - set(m.classes)
    if unknown:
        raise DataError(f"Unknown class(es): {', '.join(sorted(unknown))}.")
    empty = [k for k, v in mapping.items() if not str(v).strip()]
    if empty:
        raise DataError(f"A class needs a non-empty name (given for {', '.join(empty)}).")
    rows = (r._replace(label=mapping.get(r.label, r.label).strip()) for r in m.rows)
    what = ", ".join(f"{k} -> {v}" for k, v in sorted(mapping.items()))
    return m.derive(rows, f"renamed {what}")


def merge_classes(m: Manifest, names: Iterable[str], into: str) -> Manifest:
    return rename_classes(m, {n: into for n in names})


def drop_small_classes(m: Manifest, k: int, *, split: str | None = None) -> Manifest:
    """Drop classes with fewer than k images (counted in ``split``, or over all rows)."""
    counts: dict[str, int] = dict.fromkeys(m.classes, 0)
    for r in m.rows:
        if split is None or r.split == split:
            counts[r.label] += 1
    small = sorted(c for c, n in counts.items() if n < k)
    return m.derive((r for r in m.rows if r.label not in small),
                    f"dropped {len(small)} class(es) under {k} images" + (f": {', '.join(small[:10])}" if small else ""))


# --- splits --------------------------------------------------------------------------------------

def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def _split_sizes(n: int, val: float, test: float, min_val: int, min_test: int) -> tuple[int, int, bool]:
    """(val, test) images for a class of n; False when the minimums cannot be met (train keeps >= 1)."""
    nv = max(_round(n * val), min_val if val > 0 else 0)
    nt = max(_round(n * test), min_test if test > 0 else 0)
    if nv + nt <= n - 1:
        return nv, nt, True
    # Not enough images: keep one for training, then fill test, then val.
    room = max(n - 1, 0)
    nt = min(nt, room)
    nv = min(nv, room - nt)
    return nv, nt, False


def stratified_split(m: Manifest, *, val: float = 0.1, test: float = 0.2, seed: int = 0,
                     min_val: int = 1, min_test: int = 1) -> SplitResult:
    """Split every class into train / val / test in these ratios (each within one image of the
    ratio, unless a minimum raised it), at least ``min_val`` / ``min_test`` images each where
    the class has enough (it always keeps one for training); warnings name the classes that
    cannot meet the minimums. Deterministic for a seed; any previous split is replaced."""
    for name, v in (("val", val), ("test", test)):
        if not 0 <= v < 1:
            raise DataError(f"The {name} share must be in [0, 1), got {v}.")
    if val + test >= 1:
        raise DataError("val + test must leave some images for training.")
    if min_val < 0 or min_test < 0:
        raise DataError("Minimum val / test images per class must be >= 0.")
    rows, warnings = [], []
    for label, members in _by_class(m.rows).items():
        n = len(members)
        nv, nt, ok = _split_sizes(n, val, test, min_val, min_test)
        if not ok:
            warnings.append(f"Class {label!r} has {n} image(s): cannot give {min_val} val + {min_test} "
                            f"test and keep one for training; split {n - nv - nt}/{nv}/{nt}.")
        order = _class_rng(seed, label).permutation(n)
        for rank, i in enumerate(order):
            split = "test" if rank < nt else "val" if rank < nt + nv else "train"
            rows.append(members[i]._replace(split=split))
    res = m.derive(rows, f"stratified split train/val/test {1 - val - test:g}/{val:g}/{test:g}, "
                         f"min val {min_val}, min test {min_test}, seed {seed}")
    return SplitResult(res, warnings)


def keep_source_splits(m: Manifest, *, val_from_train: float = 0.0, test_from_train: float = 0.0,
                       seed: int = 0, min_val: int = 1, min_test: int = 1) -> SplitResult:
    """Use the source's own splits (a CSV split column, train/val/test folders). Where the source
    has no val (test) split, ``val_from_train`` (``test_from_train``) moves that share of each
    class's training images to it, at least ``min_val`` (``min_test``) where the class has enough."""
    if any(not r.split for r in m.rows):
        n = sum(not r.split for r in m.rows)
        raise DataError(f"{n} image(s) have no split in the source; use a stratified split instead.")
    if not any(r.split == "train" for r in m.rows):
        raise DataError("The source has no training split.")
    present = {r.split for r in m.rows}
    carve = {s: (share, minimum) for s, share, minimum in
             (("test", test_from_train, min_test), ("val", val_from_train, min_val)) if share}
    warnings = [f"The source already has a {s} split; {s}_from_train was ignored."
                for s in carve if s in present]
    carve = {s: v for s, v in carve.items() if s not in present}
    if not carve:
        return SplitResult(m.derive(m.rows, "kept the source's splits"), warnings)
    rows = [r for r in m.rows if r.split != "train"]
    for label, members in _by_class(r for r in m.rows if r.split == "train").items():
        t_share, t_min = carve.get("test", (0.0, 0))
        v_share, v_min = carve.get("val", (0.0, 0))
        nv, nt, ok = _split_sizes(len(members), v_share, t_share, v_min, t_min)
        if not ok:
            warnings.append(f"Class {label!r} has {len(members)} training image(s): gave {nv} to val "
                            f"and {nt} to test.")
        order = _class_rng(seed, label).permutation(len(members))
        rows += [members[i]._replace(split="test" if rank < nt else "val" if rank < nt + nv else "train")
                 for rank, i in enumerate(order)]
    moved = ", ".join(f"{share:g} of train to {s}" for s, (share, _) in sorted(carve.items()))
    return SplitResult(m.derive(rows, f"kept the source's splits, moved {moved} (seed {seed})"), warnings)


# --- long tail -----------------------------------------------------------------------------------

def _largest_n_max(available: Sequence[int], ratio: float, profile: str) -> int:
    """The largest n_max whose long-tail counts every class (in this order) can supply."""
    lo, hi = 1, max(available)
    if any(c < n for c, n in zip(available, longtail_counts(1, len(available), ratio, profile))):
        return 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if all(c >= n for c, n in zip(available, longtail_counts(mid, len(available), ratio, profile))):
            lo = mid
        else:
            hi = mid - 1
    return lo


def longtail_subset(m: Manifest, *, ratio: float, profile: str = "exp", n_max: int | None = None,
                    seed: int = 0, split: str = "train",
                    class_order: Sequence[str] | None = None) -> SplitResult:
    """Make the ``split`` rows long-tailed (other splits are kept whole, so evaluation stays
    balanced): class i of ``class_order`` keeps ``longtail_counts(n_max, C, ratio, profile)[i]``
    images, a seeded random choice. The default order is by available images, then name;
    ``n_max`` defaults to the largest value every class can supply. Use split="" for an unsplit
    manifest."""
    if split not in (*SPLITS, ""):
        raise DataError(f"Invalid split {split!r}. Valid choices: train, val, test, or '' for unsplit.")
    groups = _by_class(r for r in m.rows if r.split == split)
    if not groups:
        raise DataError(f"This dataset version has no {split or 'unsplit'} images to subsample.")
    if class_order is None:
        order = sorted(groups, key=lambda c: (-len(groups[c]), c))
    else:
        missing = set(groups) - set(class_order)
        unknown = set(class_order) - set(groups)
        if missing or unknown:
            raise DataError("class_order must list exactly the classes of the split "
                            f"(missing {sorted(missing)[:5]}, unknown {sorted(unknown)[:5]}).")
        order = list(class_order)
    available = [len(groups[c]) for c in order]
    if n_max is None:
        n_max = _largest_n_max(available, ratio, profile)
    try:
        counts = longtail_counts(n_max, len(order), ratio, profile)
    except ValueError as e:
        raise DataError(str(e)) from e
    warnings, rows = [], [r for r in m.rows if r.split != split]
    for c, want, have in zip(order, counts, available):
        take = min(want, have)
        if take < want:
            warnings.append(f"Class {c!r} has {have} image(s), fewer than the {want} the profile asks for.")
        if take == 0:
            warnings.append(f"Class {c!r} gets no {split or 'unsplit'} images at this ratio.")
        picked = _class_rng(seed, c).choice(have, size=take, replace=False)
        rows += [groups[c][i] for i in sorted(picked)]
    res = m.derive(rows, f"long-tailed {split or 'unsplit'} images: {profile} profile, ratio {ratio:g}, "
                         f"n_max {n_max}, seed {seed}")
    return SplitResult(res, warnings)
