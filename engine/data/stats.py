"""Summary statistics and problems of a scanned data source.

Every figure is computed from a ``ScanResult`` (per-image facts), never from pixels, so this runs in
well under a second for tens of thousands of images.

Definitions (C classes with counts n_1..n_C, N = sum):
- imbalance ratio: max n / min n over classes with at least one usable image.
- Gini coefficient: sum_i sum_j |n_i - n_j| / (2 C^2 mean n); 0 = balanced, -> 1 = one class holds all.
- normalised entropy: H / log C with H = -sum p_i log p_i, p_i = n_i / N; 1 = balanced (1 for C = 1).
- many / medium / few-shot: n > many, few <= n <= many, n < few (defaults 100 and 20).
- cumulative share: fraction of N held by the k largest classes, k = 1..C; ``classes_for_80``
  is the smallest k holding at least 80%.
- mean / std: per channel on the 0..1 scale, over the training split (all images when the source
  has no splits), each image weighted equally (as after resizing to the model's input), computed
  on a copy of each image reduced to a short side of about ``scan.STATS_SIDE`` pixels.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from engine.data.scan import ImageFacts, ScanResult

# How a stored colour mode is shown.
MODE_NAMES = {"I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I;16N": "16-bit",
              "I": "32-bit int", "F": "32-bit float", "1": "1-bit"}
UNSPLIT = "unsplit"  # how the split "" of a source without splits is shown


@dataclass(frozen=True)
class CountSummary:
    """Figures describing how images are spread over classes."""

    num_images: int
    num_classes: int  # classes with at least one image
    imbalance_ratio: float  # max / min count over classes with images (nan when there are none)
    gini: float
    entropy: float  # normalised: H / log C
    many: int  # number of many-shot classes
    medium: int
    few: int
    classes_for_80: int  # the k largest classes hold >= 80% of the images
    cumulative_share: list[float]  # k = 1..C largest classes


@dataclass(frozen=True)
class ClassInfo:
    name: str
    count: int  # usable images over all splits
    per_split: dict[str, int]
    group: str  # "many" | "medium" | "few" (by the training count when the source has splits)


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with identical bytes (exact) or near-identical pictures (near)."""

    paths: tuple[str, ...]
    labels: tuple[str, ...]  # label of each path
    splits: tuple[str, ...]  # split of each path
    distance: int = 0  # largest dHash distance to the group's first member (0 for exact)

    @property
    def label_conflict(self) -> bool:
        """The same picture filed under different classes."""
        return len(set(self.labels)) > 1

    @property
    def leakage(self) -> bool:
        """The same picture in more than one split (e.g. train and test)."""
        return len({s for s in self.splits}) > 1

    @property
    def kind(self) -> str:
        return ("label conflict" if self.label_conflict else "within class") + (
            " + split leakage" if self.leakage else "")


@dataclass
class DatasetStats:
    root: str
    kind: str
    num_files: int  # image files, readable or not
    num_images: int  # usable (readable) images
    num_classes: int
    classes: list[ClassInfo]  # high to low count
    splits: list[str]  # "train", "val", "test" present, or ["unsplit"]
    counts: dict[str, dict[str, int]]  # split -> class -> usable images
    summary: CountSummary  # over all usable images
    split_summaries: dict[str, CountSummary]
    formats: dict[str, int]
    modes: dict[str, int]  # display names: RGB, L, RGBA, CMYK, P, 16-bit, ...
    width: dict[str, float]  # min, median, mean, max (readable images)
    height: dict[str, float]
    aspect: dict[str, float]  # long side / short side
    mean: tuple[float, float, float]  # RGB, 0..1
    std: tuple[float, float, float]
    grey_mean: float
    grey_std: float
    stats_split: str  # which images mean/std describe: "train" or "all"
    corrupt: list[tuple[str, str]]  # (path, reason)
    duplicates: list[DuplicateGroup]
    near_duplicates: list[DuplicateGroup]
    near_complete: bool  # False when the near-duplicate search was cut short
    tiny: list[tuple[str, int, int]]  # (path, width, height)
    extreme_aspect: list[tuple[str, int, int]]
    small_classes: list[tuple[str, int]]  # (class, usable images) below min_class_images
    empty_classes: list[str]  # class folders without a single usable image
    warnings: list[str]
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict (paths relative to the source root; inf/nan as None)."""
        def group(g: DuplicateGroup) -> dict:
            return {"paths": list(g.paths), "labels": list(g.labels), "splits": [s or UNSPLIT for s in g.splits],
                    "label_conflict": g.label_conflict, "leakage": g.leakage, "distance": g.distance}

        return _json_safe({
            "root": self.root, "kind": self.kind,
            "num_files": self.num_files, "num_images": self.num_images, "num_classes": self.num_classes,
            "classes": [{"name": c.name, "count": c.count, "per_split": c.per_split, "group": c.group}
                        for c in self.classes],
            "splits": self.splits, "counts": self.counts,
            "imbalance_ratio": self.summary.imbalance_ratio, "gini": self.summary.gini,
            "entropy": self.summary.entropy, "many_shot": self.summary.many,
            "medium_shot": self.summary.medium, "few_shot": self.summary.few,
            "classes_for_80": self.summary.classes_for_80,
            "cumulative_share": self.summary.cumulative_share,
            "split_summaries": {k: asdict(v) for k, v in self.split_summaries.items()},
            "formats": self.formats, "modes": self.modes,
            "width": self.width, "height": self.height, "aspect": self.aspect,
            "mean": list(self.mean), "std": list(self.std),
            "grey_mean": self.grey_mean, "grey_std": self.grey_std, "stats_split": self.stats_split,
            "corrupt": [p for p, _ in self.corrupt],
            "corrupt_reasons": {p: r for p, r in self.corrupt},
            "duplicates": [list(g.paths) for g in self.duplicates],
            "near_duplicates": [list(g.paths) for g in self.near_duplicates],
            "duplicate_groups": [group(g) for g in self.duplicates],
            "near_duplicate_groups": [group(g) for g in self.near_duplicates],
            "near_duplicates_complete": self.near_complete,
            "tiny": [{"path": p, "width": w, "height": h} for p, w, h in self.tiny],
            "extreme_aspect": [{"path": p, "width": w, "height": h} for p, w, h in self.extreme_aspect],
            "small_classes": [{"name": n, "count": c} for n, c in self.small_classes],
            "empty_classes": self.empty_classes,
            "warnings": self.warnings, "settings": self.settings,
        })


def _json_safe(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


# --- class-count figures -------------------------------------------------------------------------

def gini(counts: Sequence[int]) -> float:
    """Gini coefficient of class counts: mean absolute difference / (2 * mean)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    c = len(x)
    if c == 0 or x.sum() == 0:
        return 0.0
    # sum_i sum_j |x_i - x_j| = 2 * sum_i (2i - c + 1) x_(i) for sorted x, i = 0..c-1
    total = 2.0 * float(np.sum((2 * np.arange(c) - c + 1) * x))
    return total / (2.0 * c * c * float(x.mean()))


def normalised_entropy(counts: Sequence[int]) -> float:
    x = np.asarray([n for n in counts if n > 0], dtype=np.float64)
    if len(x) <= 1:
        return 1.0
    p = x / x.sum()
    return float(-(p * np.log(p)).sum() / math.log(len(x)))


def summarize_counts(counts: Iterable[int], *, many: int = 100, few: int = 20,
                     share: float = 0.8) -> CountSummary:
    """Figures for a list of class counts (classes with 0 images are left out)."""
    x = sorted((int(n) for n in counts if n > 0), reverse=True)
    if not x:
        return CountSummary(0, 0, float("nan"), 0.0, 1.0, 0, 0, 0, 0, [])
    cum = np.cumsum(x) / sum(x)
    k80 = int(np.searchsorted(cum, share - 1e-12) + 1)
    return CountSummary(
        num_images=sum(x), num_classes=len(x), imbalance_ratio=x[0] / x[-1], gini=gini(x),
        entropy=normalised_entropy(x), many=sum(n > many for n in x),
        medium=sum(few <= n <= many for n in x), few=sum(n < few for n in x),
        classes_for_80=k80, cumulative_share=[float(v) for v in cum])


def shot_group(n: int, many: int = 100, few: int = 20) -> str:
    return "many" if n > many else "few" if n < few else "medium"


# --- duplicates ----------------------------------------------------------------------------------

def near_pairs(hashes: np.ndarray, threshold: int, *, max_comparisons: int = 30_000_000
               ) -> tuple[np.ndarray, bool]:
    """(pairs, complete): index pairs (i < j, sorted, unique) of distinct 64-bit hashes within
    Hamming distance ``threshold``, and whether the search finished within ``max_comparisons``.

    Multi-index hashing: split the varying bits into threshold + 1 blocks; two hashes within the
    threshold agree exactly on at least one block (pigeonhole), so only hashes sharing a block
    value are compared. Simple images (digits on a plain background) can give thousands of hashes
    sharing blocks; the budget keeps the search bounded and ``complete`` says it was cut short.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    n = len(h)
    if n < 2 or threshold <= 0:
        return np.zeros((0, 2), dtype=np.int64), True
    varying = int(np.bitwise_or.reduce(h ^ h[0]))  # bits every hash shares tell nothing apart
    bits = [b for b in range(64) if varying >> b & 1]
    if len(bits) <= threshold:
        return _pairs_from(np.triu_indices(n, 1), n), True
    found: list[np.ndarray] = []
    budget = [max_comparisons]

    def keep(a: np.ndarray, b: np.ndarray) -> None:
        budget[0] -= len(a)
        close = np.bitwise_count(h[a] ^ h[b]) <= threshold
        if close.any():
            a, b = a[close], b[close]
            found.append(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))

    short = 32  # runs up to this long: compare neighbours at offsets 1..short, all runs at once
    complete = True
    for block in np.array_split(np.array(bits), threshold + 1):
        mask = np.uint64(sum(1 << int(b) for b in block))
        key = h & mask
        order = np.argsort(key, kind="stable")
        ks = key[order]
        for d in range(1, short + 1):
            same = ks[d:] == ks[:-d]
            if not same.any():
                break
            keep(order[:-d][same], order[d:][same])
        # Longer runs (many hashes share this block value): the remaining pairs of each run,
        # a block of rows at a time.
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        sizes = np.diff(np.r_[starts, n])
        for s0, m in zip(starts[sizes > short + 1], sizes[sizes > short + 1]):
            members = order[s0:s0 + m]
            hm = h[members]
            rows = max(1, 2_000_000 // int(m))
            for r0 in range(0, int(m) - short - 1, rows):
                if budget[0] <= 0:
                    complete = False
                    break
                r1 = min(r0 + rows, int(m))
                dist = np.bitwise_count(hm[r0:r1, None] ^ hm[None, r0:])
                budget[0] -= dist.size
                i, j = np.nonzero(np.triu(dist <= threshold, short + 1))
                if len(i):
                    a, b = members[r0 + i], members[r0 + j]
                    found.append(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))
    if not found:
        return np.zeros((0, 2), dtype=np.int64), complete
    return _pairs_from(None, n, np.unique(np.concatenate(found))), complete


def _pairs_from(ij, n: int, codes: np.ndarray | None = None) -> np.ndarray:
    if codes is None:
        return np.stack([ij[0], ij[1]], axis=1).astype(np.int64)
    return np.stack([codes // n, codes % n], axis=1)


def _components(pairs: np.ndarray) -> list[list[int]]:
    """Connected components (of two or more nodes) of the graph given by an (k, 2) edge array."""
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        root = i
        while parent.get(root, root) != root:
            root = parent[root]
        while i != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in parent:
        groups[find(i)].append(i)
    for r in groups:
        if r not in parent:
            groups[r].append(r)
    return [sorted(set(g)) for g in groups.values()]


class Duplicates(NamedTuple):
    exact: list[DuplicateGroup]
    near: list[DuplicateGroup]
    near_complete: bool  # False: the near-duplicate search hit its budget (see near_pairs)


def find_duplicates(images: Sequence[ImageFacts], *, near_threshold: int = 4) -> Duplicates:
    """Exact and near duplicate groups among readable images, each group sorted by path.

    Exact: identical bytes. Near: dHash within ``near_threshold`` bits, joined transitively, with
    at least two different contents in the group (pure byte copies are only listed as exact).
    """
    by_sha: dict[str, list[ImageFacts]] = defaultdict(list)
    for f in images:
        if f.ok:
            by_sha[f.sha].append(f)

    def make(members: list[ImageFacts]) -> DuplicateGroup:
        members = sorted(members, key=lambda f: f.rel)
        h0 = members[0].dhash
        dist = max((f.dhash ^ h0).bit_count() for f in members)
        return DuplicateGroup(tuple(f.rel for f in members), tuple(f.label for f in members),
                              tuple(f.split for f in members), dist)

    contents = list(by_sha.values())
    exact = sorted((make(g) for g in contents if len(g) > 1), key=lambda g: g.paths)

    # Near: one node per distinct dHash; contents sharing a dHash are at distance 0.
    ch = np.fromiter((g[0].dhash for g in contents), dtype=np.uint64, count=len(contents))
    uniq, inverse, counts = np.unique(ch, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    pairs, complete = near_pairs(uniq, near_threshold)
    comps = _components(pairs)
    in_comp = {i for c in comps for i in c}
    comps += [[int(i)] for i in np.flatnonzero(counts > 1) if int(i) not in in_comp]
    comp_of = {h: k for k, c in enumerate(comps) for h in c}
    members: dict[int, list[ImageFacts]] = defaultdict(list)
    n_contents: Counter = Counter()
    for ci in np.flatnonzero(np.isin(inverse, np.fromiter(comp_of, dtype=np.int64, count=len(comp_of)))):
        k = comp_of[int(inverse[ci])]
        members[k].extend(contents[ci])
        n_contents[k] += 1
    near = sorted((make(members[k]) for k in members if n_contents[k] > 1), key=lambda g: g.paths)
    return Duplicates(exact, near, complete)


# --- everything ----------------------------------------------------------------------------------

def _summary(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"min": 0.0, "median": 0.0, "mean": 0.0, "max": 0.0}
    a = np.asarray(values, dtype=np.float64)
    return {"min": float(a.min()), "median": float(np.median(a)), "mean": float(a.mean()),
            "max": float(a.max())}


def compute_stats(scan: ScanResult, *, many: int = 100, few: int = 20, min_side: int = 16,
                  max_aspect: float = 4.0, near_threshold: int = 4,
                  min_class_images: int = 10) -> DatasetStats:
    """All figures and problems of a scan.

    ``many`` / ``few``: shot-group thresholds (classes with > many / < few images).
    ``min_side``: images with a side below this many pixels are "tiny".
    ``max_aspect``: images whose long / short side exceeds this are "extreme aspect".
    ``near_threshold``: largest dHash Hamming distance (of 64 bits) counted as a near duplicate.
    ``min_class_images``: classes with fewer usable images are listed as too small.
    """
    if few > many:
        raise ValueError(f"few ({few}) must not exceed many ({many}).")
    usable = [f for f in scan.images if f.ok]
    present = {f.split for f in scan.images}
    split_keys = [s or UNSPLIT for s in ("train", "val", "test", "") if s in present] or [UNSPLIT]
    counts: dict[str, dict[str, int]] = {k: {c: 0 for c in scan.classes} for k in split_keys}
    for (split, label), n in Counter((f.split, f.label) for f in usable).items():
        counts[split or UNSPLIT][label] = n
    total = Counter()
    for per_class in counts.values():
        total.update(per_class)
    all_classes = sorted(set(scan.classes) | set(total))
    group_counts = counts["train"] if "train" in counts else total
    classes = sorted(
        (ClassInfo(c, total.get(c, 0), {k: counts[k].get(c, 0) for k in split_keys},
                   shot_group(group_counts.get(c, 0), many, few)) for c in all_classes),
        key=lambda ci: (-ci.count, ci.name))
    summary = summarize_counts(total.values(), many=many, few=few)
    split_summaries = {k: summarize_counts(v.values(), many=many, few=few) for k, v in counts.items()}

    # Image properties of readable images.
    formats = Counter(f.format for f in scan.images if f.format)
    modes = Counter(MODE_NAMES.get(f.mode, f.mode) for f in scan.images if f.mode)
    wh = np.array([(f.width, f.height) for f in usable], dtype=np.float64).reshape(-1, 2)
    short, long_ = wh.min(axis=1), wh.max(axis=1)
    aspects = long_ / np.maximum(short, 1)

    stats_split = "train" if any(f.split == "train" for f in usable) else "all"
    moments = np.array([f.mean + f.sqmean for f in usable if stats_split == "all" or f.split == "train"],
                       dtype=np.float64).reshape(-1, 8)
    if len(moments):
        m, sq = moments[:, :4].mean(axis=0), moments[:, 4:].mean(axis=0)
        sd = np.sqrt(np.maximum(sq - m * m, 0.0))
    else:
        m = sd = np.zeros(4)

    exact, near, near_complete = find_duplicates(scan.images, near_threshold=near_threshold)
    corrupt = [(f.rel, f.error) for f in scan.images if not f.ok]
    tiny = [(usable[i].rel, usable[i].width, usable[i].height) for i in np.flatnonzero(short < min_side)]
    extreme = [(usable[i].rel, usable[i].width, usable[i].height) for i in np.flatnonzero(aspects > max_aspect)]
    small = sorted(((c.name, c.count) for c in classes if 0 < c.count < min_class_images),
                   key=lambda t: (t[1], t[0]))
    empty = [c.name for c in classes if c.count == 0]

    warnings = list(scan.warnings)
    if summary.num_classes < 2:
        warnings.append(f"{summary.num_classes} class(es) with usable images: training needs at least 2.")
    if corrupt:
        warnings.append(f"{len(corrupt)} file(s) cannot be read; they are left out of every figure.")
    if not near_complete:
        warnings.append("The near-duplicate search was cut short: very many images have almost the "
                        "same dHash (typical of small, simple pictures on a plain background), so the "
                        "near-duplicate groups are incomplete and not very meaningful here.")
    if any(g.leakage for g in exact + near):
        warnings.append("Some images appear in more than one split (train/val/test leakage).")
    if any(g.label_conflict for g in exact + near):
        warnings.append("Some images appear under more than one class (label conflicts).")
    if empty:
        warnings.append(f"{len(empty)} class(es) without a single usable image.")

    return DatasetStats(
        root=str(scan.root), kind=scan.kind, num_files=len(scan.images), num_images=len(usable),
        num_classes=summary.num_classes, classes=classes, splits=split_keys, counts=counts,
        summary=summary, split_summaries=split_summaries,
        formats=dict(formats.most_common()), modes=dict(modes.most_common()),
        width=_summary(wh[:, 0]), height=_summary(wh[:, 1]), aspect=_summary(aspects),
        mean=tuple(float(v) for v in m[:3]), std=tuple(float(v) for v in sd[:3]),
        grey_mean=float(m[3]), grey_std=float(sd[3]), stats_split=stats_split,
        corrupt=corrupt, duplicates=exact, near_duplicates=near, near_complete=near_complete,
        tiny=tiny, extreme_aspect=extreme,
        small_classes=small, empty_classes=empty, warnings=warnings,
        settings=dict(many=many, few=few, min_side=min_side, max_aspect=max_aspect,
                      near_threshold=near_threshold, min_class_images=min_class_images),
    )


def format_report(st: DatasetStats, *, top: int = 10) -> str:
    """A readable plain-text summary (what ``taillab data stats`` prints)."""
    s = st.summary
    lines = [
        f"Source: {st.root} ({st.kind})",
        f"Images: {st.num_images:,} usable of {st.num_files:,} files, {st.num_classes} classes"
        + (f", splits: {', '.join(st.splits)}" if st.splits != [UNSPLIT] else ""),
        f"Imbalance ratio {s.imbalance_ratio:.2f} | Gini {s.gini:.3f} | normalised entropy "
        f"{s.entropy:.3f} | {s.classes_for_80} of {s.num_classes} classes hold 80% of the images",
        f"Shot groups (many > {st.settings['many']}, few < {st.settings['few']}): "
        f"{s.many} many, {s.medium} medium, {s.few} few",
        "",
        f"{'class':<30} {'images':>8}  " + "  ".join(f"{k:>7}" for k in st.splits) + "  group",
    ]
    shown = st.classes if len(st.classes) <= 2 * top else st.classes[:top] + st.classes[-top:]
    for i, c in enumerate(shown):
        if len(st.classes) > 2 * top and i == top:
            lines.append(f"{'...':<30}")
        lines.append(f"{c.name[:30]:<30} {c.count:>8}  " + "  ".join(f"{c.per_split[k]:>7}" for k in st.splits)
                     + f"  {c.group}")
    fmt = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
    lines += [
        "",
        f"Formats: {fmt(st.formats)}",
        f"Colour modes: {fmt(st.modes)}",
        f"Width {st.width['min']:.0f}-{st.width['max']:.0f} (median {st.width['median']:.0f}), "
        f"height {st.height['min']:.0f}-{st.height['max']:.0f} (median {st.height['median']:.0f}), "
        f"aspect up to {st.aspect['max']:.2f}",
        f"Mean RGB ({', '.join(f'{v:.4f}' for v in st.mean)}), std ({', '.join(f'{v:.4f}' for v in st.std)}); "
        f"grey {st.grey_mean:.4f} / {st.grey_std:.4f} [{st.stats_split} images]",
        "",
        "Problems:",
        f"  unreadable files: {len(st.corrupt)}",
    ]
    for p, r in st.corrupt[:5]:
        lines.append(f"    {p}: {r}")
    for title, groups in (("exact duplicate groups", st.duplicates), ("near-duplicate groups", st.near_duplicates)):
        lines.append(f"  {title}: {len(groups)} ({sum(g.label_conflict for g in groups)} across classes, "
                     f"{sum(g.leakage for g in groups)} across splits)")
        for g in groups[:3]:
            lines.append(f"    {' = '.join(g.paths[:4])}{' ...' if len(g.paths) > 4 else ''}  [{g.kind}]")
    lines += [
        f"  tiny images (side < {st.settings['min_side']} px): {len(st.tiny)}",
        f"  extreme aspect ratio (> {st.settings['max_aspect']:g}): {len(st.extreme_aspect)}",
        f"  classes under {st.settings['min_class_images']} images: "
        + (", ".join(f"{n} ({c})" for n, c in st.small_classes[:8]) or "none"),
    ]
    if st.warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in st.warnings]
    return "\n".join(lines)


def class_counts(images: Iterable[ImageFacts]) -> dict[str, int]:
    """Usable images per class."""
    return dict(Counter(f.label for f in images if f.ok))
