"""Summary statistics and problems of a scanned data source.

Every figure is computed from a ``ScanResult`` (per-image facts), so this runs in about a second for
tens of thousands of images. The one exception is the near-duplicate check, which decodes the
images of hash candidates to compare their pixels (bounded: ``MAX_VERIFY_PAIRS``, ``MAX_DECODE``).

Class figures (imbalance ratio, Gini, entropy, head / medium / tail groups, cumulative share) count
the training split when the source has one, all usable images otherwise (``counts_from``).

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
import os
import time
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
    distance: int = 0  # near: largest dHash distance to the representative (0 for exact)
    representative: str = ""  # near: the file every other member was checked against
    pixel_diff: float = 0.0  # near: largest mean absolute pixel difference to it (0..255, 32x32 grey)

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
    summary: CountSummary  # of the training split when the source has one, else of all usable images
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
    counts_from: str = "all"  # which images ``summary`` and the groups count: "train" or "all"
    near_search: NearSearch = field(default_factory=lambda: NearSearch())

    @property
    def near_separable(self) -> bool:
        """The dHash tells this dataset's pictures apart; False: no near-duplicate fix is offered."""
        return self.near_search.separable

    @property
    def near_fixable(self) -> list[DuplicateGroup]:
        """The near-duplicate groups a fix may act on: none when the hash cannot separate the images."""
        return list(self.near_duplicates) if self.near_search.separable else []

    @property
    def counts_note(self) -> str:
        """Which counts the imbalance figures and head / medium / tail groups use, in words."""
        if self.counts_from == "train":
            return f"from the training split: {self.summary.num_images:,} images"
        return f"from all {self.summary.num_images:,} images (the source has no training split)"

    def basis_counts(self) -> dict[str, int]:
        """Class -> the images the figures count (training split, or all splits together)."""
        if self.counts_from == "train":
            return dict(self.counts["train"])
        return {c.name: c.count for c in self.classes}

    def to_dict(self) -> dict:
        """A JSON-ready dict (paths relative to the source root; inf/nan as None)."""
        def group(g: DuplicateGroup) -> dict:
            return {"paths": list(g.paths), "labels": list(g.labels), "splits": [s or UNSPLIT for s in g.splits],
                    "label_conflict": g.label_conflict, "leakage": g.leakage, "distance": g.distance,
                    **({"representative": g.representative, "pixel_diff": g.pixel_diff} if g.representative else {})}

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
            "counts_from": self.counts_from, "counts_images": self.summary.num_images,
            "counts_note": self.counts_note,
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
            "near_duplicates_separable": self.near_search.separable,
            "near_duplicates_note": self.near_search.note,
            "near_search": self.near_search._asdict(),
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


GROUP_NAMES = {"many": "head", "medium": "medium", "few": "tail"}  # how a group is shown to people


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


# Pixel check of a near-duplicate candidate (see ``find_duplicates``). Both images are decoded,
# made upright and greyscale, and box-resized to PIXEL_SIDE x PIXEL_SIDE. They are near duplicates
# when the mean absolute difference is at most PIXEL_MEAN_DIFF levels (of 255) and every pixel but
# the PIXEL_OUTLIERS most different ones differs by at most PIXEL_LEVEL_DIFF levels. The first test
# allows re-compression noise everywhere, the outliers allow a small local edit, the level test
# refuses two different pictures whose difference is concentrated on their strokes or edges. On
# 28x28 MNIST digits: a JPEG re-save at quality 75 (the worst case: sharp edges, no downscaling)
# differs by at most 3.8 on average and 27 outside its 10 worst pixels; a one-pixel edit by 1.0 and
# 0; among the 6 million hash candidates of 31,000 digits, 3 pairs pass (the closest different
# "1"s are at 16 to 58 outside their 10 worst pixels).
PIXEL_SIDE = 32
PIXEL_MEAN_DIFF = 4.0
PIXEL_LEVEL_DIFF = 32
PIXEL_OUTLIERS = 10
# Budget of the pixel check: at most this many candidate pairs verified and images decoded, closest
# hashes first. Past it the search says it is incomplete.
MAX_VERIFY_PAIRS = 200_000
MAX_DECODE = 20_000
# When more than this share of the images have a hash candidate that their pixels reject, the hash
# cannot tell this dataset's pictures apart (small, simple images on a plain background).
AMBIGUOUS_SHARE = 0.2


def pixel_thumbnail(path: str) -> np.ndarray | None:
    """The upright greyscale PIXEL_SIDE x PIXEL_SIDE copy the pixel check compares (flattened
    uint8), or None when the file cannot be decoded any more."""
    import warnings

    from PIL import Image, ImageOps

    from engine.data.io import convert_mode

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format == "JPEG":
                    img.draft("L", (2 * PIXEL_SIDE, 2 * PIXEL_SIDE))
                img.load()
                img = ImageOps.exif_transpose(img)
                grey = convert_mode(img, "L").resize((PIXEL_SIDE, PIXEL_SIDE), Image.Resampling.BOX)
    except Exception:  # changed or removed since the scan: the pair cannot be confirmed
        return None
    return np.frombuffer(grey.tobytes(), dtype=np.uint8)


def pixel_difference(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean absolute difference, largest difference outside the PIXEL_OUTLIERS worst pixels) of
    rows of thumbnails (k, PIXEL_SIDE**2), on the 0..255 scale."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    kth = d.shape[-1] - 1 - PIXEL_OUTLIERS
    return d.mean(axis=-1), np.partition(d, kth, axis=-1)[..., kth]


def pixels_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether rows of thumbnails are near-identical pictures (see PIXEL_MEAN_DIFF)."""
    mean, level = pixel_difference(a, b)
    return (mean <= PIXEL_MEAN_DIFF) & (level <= PIXEL_LEVEL_DIFF)


class NearSearch(NamedTuple):
    """How the near-duplicate search went (figures for the report)."""

    candidates: int = 0  # pairs of different contents whose dHashes are within the threshold
    verified: int = 0  # of those, checked on decoded pixels (closest hashes first)
    confirmed: int = 0  # ... that are near-identical pictures
    decoded: int = 0  # images decoded for the check
    images_with_candidates: int = 0  # contents with at least one candidate
    images_rejected: int = 0  # contents with a candidate their pixels reject
    complete: bool = True  # every candidate found and verified
    separable: bool = True  # the hash tells this dataset's pictures apart (see AMBIGUOUS_SHARE)
    note: str = ""  # a sentence for the user when the search is incomplete or not separable
    seconds: float = 0.0


def _candidate_pairs(uniq: np.ndarray, counts: np.ndarray, members: list[np.ndarray], hash_pairs: np.ndarray,
                     limit: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(a, b, total): up to ``limit`` content pairs, closest dHashes first (contents sharing a dHash,
    then hash pairs by distance), and how many there are in all."""
    dist = (np.bitwise_count(uniq[hash_pairs[:, 0]] ^ uniq[hash_pairs[:, 1]]).astype(np.int64)
            if len(hash_pairs) else np.zeros(0, np.int64))
    buckets = np.flatnonzero(counts > 1)
    # items: every shared-dHash bucket (distance 0), then every hash pair
    weight = np.r_[counts[buckets] * (counts[buckets] - 1) // 2,
                   counts[hash_pairs[:, 0]] * counts[hash_pairs[:, 1]]].astype(np.int64)
    order = np.argsort(np.r_[np.zeros(len(buckets), np.int64), dist], kind="stable")
    total = int(weight.sum())
    cum = np.cumsum(weight[order])
    cut = int(np.searchsorted(cum, limit)) + 1  # items needed to reach the limit
    a_parts, b_parts = [], []
    nb = len(buckets)
    for item in order[:cut].tolist():
        if item < nb:
            m = members[int(buckets[item])]
            i, j = np.triu_indices(len(m), 1)
            a_parts.append(m[i])
            b_parts.append(m[j])
        else:
            p, q = hash_pairs[item - nb]
            mp, mq = members[int(p)], members[int(q)]
            a_parts.append(np.repeat(mp, len(mq)))
            b_parts.append(np.tile(mq, len(mp)))
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), total
    return np.concatenate(a_parts)[:limit], np.concatenate(b_parts)[:limit], total


def _leader_groups(a: np.ndarray, b: np.ndarray, tiebreak: Sequence[str]) -> list[tuple[int, list[int]]]:
    """Non-chaining groups from confirmed pairs: the node with the most confirmed partners (ties: by
    ``tiebreak``) leads a group of its partners not yet grouped; repeat. Every member was checked
    against its leader, so a group never joins two pictures through a chain of small steps."""
    partners: dict[int, list[int]] = defaultdict(list)
    for x, y in zip(a.tolist(), b.tolist()):
        partners[x].append(y)
        partners[y].append(x)
    order = sorted(partners, key=lambda i: (-len(partners[i]), tiebreak[i]))
    taken: set[int] = set()
    groups = []
    for lead in order:
        if lead in taken:
            continue
        members = sorted({m for m in partners[lead] if m not in taken}, key=lambda i: tiebreak[i])
        if members:
            taken.add(lead)
            taken.update(members)
            groups.append((lead, members))
    return groups


class Duplicates(NamedTuple):
    exact: list[DuplicateGroup]
    near: list[DuplicateGroup]
    near_complete: bool  # False: the search hit its budget (see near_pairs, MAX_VERIFY_PAIRS)
    search: NearSearch = NearSearch()


def find_duplicates(images: Sequence[ImageFacts], *, near_threshold: int = 4, root: str | os.PathLike | None = None,
                    max_verify: int = MAX_VERIFY_PAIRS, max_decode: int = MAX_DECODE) -> Duplicates:
    """Exact and near duplicate groups among readable images, each group sorted by path.

    Exact: identical bytes. Near: two different contents whose dHashes are within
    ``near_threshold`` bits are a *candidate*; a candidate counts only when its decoded pixels are
    near-identical (``pixels_match``; files are read from ``root``, without it nothing is
    confirmed). Groups do not chain: each is one leader plus members each confirmed against that
    leader (``_leader_groups``). Byte copies of a member come with it; groups that are only byte
    copies are listed as exact. At most ``max_verify`` pairs are checked and ``max_decode`` images
    decoded, closest hashes first; ``search`` says how it went and whether the hash separates this
    dataset's images at all.
    """
    t0 = time.perf_counter()
    by_sha: dict[str, list[ImageFacts]] = defaultdict(list)
    for f in images:
        if f.ok:
            by_sha[f.sha].append(f)

    contents = [sorted(g, key=lambda f: f.rel) for g in by_sha.values()]
    exact = sorted((DuplicateGroup(tuple(f.rel for f in g), tuple(f.label for f in g), tuple(f.split for f in g))
                    for g in contents if len(g) > 1), key=lambda g: g.paths)
    if near_threshold <= 0 or len(contents) < 2:
        return Duplicates(exact, [], True, NearSearch(seconds=time.perf_counter() - t0))

    # Candidates: one node per distinct dHash; contents sharing a dHash are at distance 0.
    ch = np.fromiter((g[0].dhash for g in contents), dtype=np.uint64, count=len(contents))
    uniq, inverse, counts = np.unique(ch, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    by_hash = np.argsort(inverse, kind="stable")
    starts = np.r_[0, np.cumsum(counts)]
    members = [by_hash[starts[k]:starts[k + 1]] for k in range(len(uniq))]
    hash_pairs, found_all = near_pairs(uniq, near_threshold)
    a, b, total = _candidate_pairs(uniq, counts, members, hash_pairs, max_verify)
    with_candidates = np.zeros(len(contents), bool)
    with_candidates[np.isin(inverse, np.flatnonzero(counts > 1))] = True
    if len(hash_pairs):
        with_candidates[np.isin(inverse, np.unique(hash_pairs))] = True

    # Decode what the first pairs need, up to max_decode images.
    if len(a):
        seq = np.stack([a, b], axis=1).ravel()
        uniq_c, first = np.unique(seq, return_index=True)
        if len(uniq_c) > max_decode:
            limit_pos = np.sort(first)[max_decode]  # first use of the image one past the budget
            keep = limit_pos // 2
            a, b = a[:keep], b[:keep]
    verified = len(a)
    need = np.unique(np.r_[a, b]) if verified else np.zeros(0, np.int64)
    prefix = (str(root).rstrip(os.sep) + os.sep) if root is not None else None
    thumbs = np.zeros((len(contents), PIXEL_SIDE * PIXEL_SIDE), np.uint8)
    readable = np.zeros(len(contents), bool)
    if prefix is not None:
        for c in need.tolist():
            t = pixel_thumbnail(prefix + contents[c][0].rel)
            if t is not None:
                thumbs[c], readable[c] = t, True
    ok = np.zeros(verified, bool)
    for k in range(0, verified, 20_000):
        sl = slice(k, k + 20_000)
        ok[sl] = readable[a[sl]] & readable[b[sl]] & pixels_match(thumbs[a[sl]], thumbs[b[sl]])
    rejected = np.zeros(len(contents), bool)
    rejected[a[~ok]] = True
    rejected[b[~ok]] = True

    names = [g[0].rel for g in contents]
    near = []
    for lead, group in _leader_groups(a[ok], b[ok], names):
        files = sorted((f for c in (lead, *group) for f in contents[c]), key=lambda f: f.rel)
        h0 = contents[lead][0].dhash
        diff = float(pixel_difference(thumbs[[lead] * len(group)], thumbs[group])[0].max())
        near.append(DuplicateGroup(tuple(f.rel for f in files), tuple(f.label for f in files),
                                   tuple(f.split for f in files),
                                   max((contents[c][0].dhash ^ h0).bit_count() for c in group),
                                   representative=names[lead], pixel_diff=round(diff, 2)))
    near.sort(key=lambda g: g.paths)

    complete = found_all and verified == total
    n_with, n_rejected = int(with_candidates.sum()), int(rejected.sum())
    separable = complete and n_rejected <= AMBIGUOUS_SHARE * len(contents)
    note = ""
    if not separable:
        why = []
        if n_rejected > AMBIGUOUS_SHARE * len(contents):
            why.append(f"{n_rejected:,} of {len(contents):,} images ({n_rejected / len(contents):.0%}) have a hash "
                       "match whose pixels differ")
        if not found_all:
            why.append("so many images share almost the same hash that the search stopped early")
        if verified < total:
            why.append(f"only {verified:,} of {total:,} hash matches could be checked on their pixels")
        note = ("The difference hash cannot tell this dataset's images apart (typical of small, simple "
                f"pictures on a plain background): {'; '.join(why)}. "
                f"{len(near):,} near-duplicate group(s) were confirmed on their pixels, but the list is not "
                "complete, so no near-duplicate fix is offered.")
    search = NearSearch(total, verified, int(ok.sum()), int(readable.sum()), n_with, n_rejected, complete,
                        separable, note, time.perf_counter() - t0)
    return Duplicates(exact, near, complete, search)


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
    # Imbalance figures and groups describe what a model trains on: the training split whenever
    # the source has one (val / test are often balanced and would hide the long tail).
    counts_from = "train" if "train" in counts else "all"
    summary = summarize_counts((counts["train"] if counts_from == "train" else total).values(), many=many, few=few)
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

    exact, near, near_complete, near_search = find_duplicates(scan.images, near_threshold=near_threshold,
                                                              root=scan.root)
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
    if near_search.note:
        warnings.append(near_search.note)
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
        counts_from=counts_from, near_search=near_search,
    )


def format_report(st: DatasetStats, *, top: int = 10) -> str:
    """A readable plain-text summary (what ``taillab data stats`` prints)."""
    s = st.summary
    lines = [
        f"Source: {st.root} ({st.kind})",
        f"Images: {st.num_images:,} usable of {st.num_files:,} files, {st.num_classes} classes"
        + (f", splits: {', '.join(st.splits)}" if st.splits != [UNSPLIT] else ""),
        f"Class figures {st.counts_note}",
        f"Imbalance ratio {s.imbalance_ratio:.2f} | Gini {s.gini:.3f} | normalised entropy "
        f"{s.entropy:.3f} | {s.classes_for_80} of {s.num_classes} classes hold 80% of the "
        f"{'training ' if st.counts_from == 'train' else ''}images",
        f"Groups (head > {st.settings['many']}, tail < {st.settings['few']} images): "
        f"{s.many} head, {s.medium} medium, {s.few} tail",
        "",
        f"{'class':<30} {'images':>8}  " + "  ".join(f"{k:>7}" for k in st.splits) + "  group",
    ]
    shown = st.classes if len(st.classes) <= 2 * top else st.classes[:top] + st.classes[-top:]
    for i, c in enumerate(shown):
        if len(st.classes) > 2 * top and i == top:
            lines.append(f"{'...':<30}")
        lines.append(f"{c.name[:30]:<30} {c.count:>8}  " + "  ".join(f"{c.per_split[k]:>7}" for k in st.splits)
                     + f"  {GROUP_NAMES[c.group]}")
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
    ns = st.near_search
    if st.settings.get("near_threshold", 0) > 0:
        lines.append(f"  near-duplicate search: {ns.candidates:,} hash candidate pairs, {ns.verified:,} checked on "
                     f"pixels, {ns.confirmed:,} confirmed ({ns.seconds:.1f} s)"
                     + ("" if ns.separable else "; the hash cannot separate these images (see warnings)"))
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
