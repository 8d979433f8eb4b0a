"""One plan for turning a scanned source (or a saved version) into a new dataset version.

The Data page collects every choice (clean-up, classes, split, long tail) into a ``VersionPlan``
and ``apply_plan`` runs the ``engine.data.split`` functions in a fixed order:

    exclude files -> drop duplicates -> drop / rename / merge classes -> drop small classes
    -> split (stratified, or keep the source's) -> long-tailed training split

Nothing on disk changes; the result is a new Manifest whose ``actions`` record each step.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from engine.data import split as ops
from engine.data.manifest import Manifest
from engine.data.sources import DataError
from engine.data.stats import DatasetStats

SPLIT_MODES = ("stratified", "keep")


@dataclass(frozen=True)
class VersionPlan:
    """What to do to a base version. Defaults: nothing removed, a 70/10/20 stratified split."""

    exclude: tuple[str, ...] = ()  # files picked by hand (paths relative to the root)
    exclude_tiny: bool = False  # stats.tiny
    exclude_extreme_aspect: bool = False  # stats.extreme_aspect
    dedupe: bool = False  # keep one file of each exact-duplicate group
    dedupe_near: bool = False  # ... and of each near-duplicate group
    drop_conflicts: bool = False  # drop every file of a duplicate group filed under several classes
    drop_classes: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()  # (old, new); several olds with one new name merge
    drop_under: int = 0  # drop classes with fewer images than this (0 = keep all)
    split: str = "stratified"  # "stratified" | "keep" (the source's own splits)
    val: float = 0.1  # share of each class (stratified)
    test: float = 0.2
    min_val: int = 1  # images per class, where the class has enough
    min_test: int = 1
    val_from_train: float = 0.0  # keep: share of train moved to val when the source has no val
    seed: int = 0  # split and long-tail subset
    longtail_ratio: float | None = None  # None: keep the training counts as they are
    longtail_profile: str = "exp"  # "exp" | "step"
    n_max: int | None = None  # largest training class; None = the most every class can give

    def __post_init__(self) -> None:
        if self.split not in SPLIT_MODES:
            raise DataError(f"Invalid split mode {self.split!r}. Valid choices: {', '.join(SPLIT_MODES)}.")
        if self.longtail_ratio is not None and self.longtail_ratio < 1:
            raise DataError(f"The long-tail ratio must be >= 1, got {self.longtail_ratio:g}.")
        if self.longtail_profile not in ("exp", "step"):
            raise DataError(f"Invalid profile {self.longtail_profile!r}. Valid choices: exp, step.")
        if self.drop_under < 0:
            raise DataError("The smallest class size to keep must be >= 0.")


def clean(base: Manifest, plan: VersionPlan, stats: DatasetStats | None = None) -> Manifest:
    """The clean-up steps of a plan (exclude files, duplicates, class edits, small classes), before
    any split. See ``apply_plan``."""
    m = base
    present = {r.path for r in m.rows}
    picked = [p for p in plan.exclude if p in present]
    if picked:
        m = ops.exclude_files(m, picked)
    if stats is not None:
        flagged = set()
        if plan.exclude_tiny:
            flagged |= {p for p, _, _ in stats.tiny}
        if plan.exclude_extreme_aspect:
            flagged |= {p for p, _, _ in stats.extreme_aspect}
        flagged &= {r.path for r in m.rows}
        if flagged:
            m = ops.exclude_files(m, flagged, reason="tiny or extreme aspect ratio")
        if plan.drop_conflicts:  # the same picture under several classes: no label to trust
            conflicting = [g for g in (*stats.duplicates, *stats.near_fixable) if g.label_conflict]
            if conflicting:
                m = ops.dedupe(m, conflicting, drop_conflicts=True)
        groups = (list(stats.duplicates) if plan.dedupe else []) + (
            stats.near_fixable if plan.dedupe_near else [])  # none when the hash cannot separate the images
        if groups:
            m = ops.dedupe(m, groups)
    dropped = [c for c in plan.drop_classes if c in set(m.classes)]
    if dropped:
        m = ops.drop_classes(m, dropped)
    mapping = {old: new.strip() for old, new in plan.rename if old in set(m.classes) and new.strip() != old}
    if mapping:
        m = ops.rename_classes(m, mapping)
    if plan.drop_under > 0:
        m = ops.drop_small_classes(m, plan.drop_under)
    return m


def apply_plan(base: Manifest, plan: VersionPlan, stats: DatasetStats | None = None) -> ops.SplitResult:
    """The new version and the warnings of its split / long-tail steps.

    ``stats`` (of the base's files) supplies the duplicate groups and the tiny / extreme-aspect
    images; without it those steps are skipped. Near-duplicate groups are used only when the hash
    separates the dataset's images (``DatasetStats.near_fixable``). Raises DataError for a plan
    that cannot be applied (an unknown class, nothing left, ...).
    """
    m = clean(base, plan, stats)
    if not m.rows:
        raise DataError("Nothing is left: every image was excluded or every class dropped.")
    if plan.split == "keep":
        m, warnings = ops.keep_source_splits(m, val_from_train=plan.val_from_train, seed=plan.seed)
    else:
        m, warnings = ops.stratified_split(m, val=plan.val, test=plan.test, seed=plan.seed,
                                           min_val=plan.min_val, min_test=plan.min_test)
    if plan.longtail_ratio is not None:
        m, more = ops.longtail_subset(m, ratio=plan.longtail_ratio, profile=plan.longtail_profile,
                                      n_max=plan.n_max, seed=plan.seed)
        warnings = [*warnings, *more]
    if len(m.classes) < 2:
        warnings = [*warnings, f"Only {len(m.classes)} class left: training a classifier needs at least 2."]
    return ops.SplitResult(m, warnings)


# --- what a clean-up drops -----------------------------------------------------------------------

CONFIRM_SHARE = 0.05  # a fix that drops more than this share of a split is confirmed first


@dataclass(frozen=True)
class DropReport:
    """Files a clean-up leaves out, per split of the version it starts from ("unsplit" when none)."""

    dropped: dict[str, int]  # split -> files left out
    totals: dict[str, int]  # split -> files before
    examples: dict[str, tuple[str, ...]]  # split -> a few of the files left out

    @property
    def total(self) -> int:
        return sum(self.dropped.values())

    def share(self, split: str) -> float:
        return self.dropped.get(split, 0) / self.totals[split] if self.totals.get(split) else 0.0

    def large(self, limit: float = CONFIRM_SHARE) -> list[str]:
        """Splits losing more than ``limit`` of their files (these need a confirmation)."""
        return [s for s in self.totals if self.share(s) > limit]

    def lines(self) -> list[str]:
        """One line per split that loses files: "train: 2,560 of 11,165 files (22.9%), e.g. a.png, b.png"."""
        return [f"{s}: {self.dropped[s]:,} of {self.totals[s]:,} files ({self.share(s):.1%})"
                + (f", e.g. {', '.join(self.examples[s])}" if self.examples.get(s) else "")
                for s in self.totals if self.dropped.get(s)]

    def to_dict(self) -> dict:
        return {"dropped": self.dropped, "totals": self.totals,
                "examples": {k: list(v) for k, v in self.examples.items()},
                "large": self.large()}


def drop_report(before: Manifest, after: Manifest, *, examples: int = 5) -> DropReport:
    """Which files of ``before`` are not in ``after``, per split of ``before``."""
    kept = {r.path for r in after.rows}
    totals: dict[str, int] = {}
    dropped: dict[str, int] = {}
    shown: dict[str, list[str]] = {}
    for r in before.rows:  # sorted by path
        s = r.split or "unsplit"
        totals[s] = totals.get(s, 0) + 1
        if r.path not in kept:
            dropped[s] = dropped.get(s, 0) + 1
            if len(shown.setdefault(s, [])) < examples:
                shown[s].append(r.path)
    order = [s for s in ("train", "val", "test", "unsplit") if s in totals]
    return DropReport({s: dropped.get(s, 0) for s in order}, {s: totals[s] for s in order},
                      {s: tuple(shown.get(s, ())) for s in order})


def fix_drops(base: Manifest, plan: VersionPlan, stats: DatasetStats | None = None) -> DropReport:
    """What the fixes of a plan leave out of ``base`` (files, duplicates, small classes), per split;
    classes dropped by name are a choice, not a fix, and are not counted."""
    return drop_report(base, clean(base, replace(plan, drop_classes=()), stats))
