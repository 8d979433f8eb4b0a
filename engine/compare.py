"""Compare 2 to 20 runs: settings diff, final metrics with the best per column, per-class recall
matched by class name with deltas against a baseline run, and seed groups (mean ± std).

Pure functions of what the store returns; the Compare page and ``taillab runs compare`` both call
``compare(store, run_ids, baseline=...)`` and only format the result.

Seed groups: runs whose settings are equal once ``seed`` (the training seed: weights, sampling
order, augmentation) and the bookkeeping keys are left out, and that are of the same kind and
dataset version. ``data.seed`` is *not* ignored: it draws another long-tail subset and split, so
the test set differs and the runs are different experiments, not repeats.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from engine.store.api import RunNotFound, flatten

MIN_RUNS, MAX_RUNS = 2, 20

# label -> metric key of the final (test) evaluation, in table order.
FINAL_METRICS = {"overall": "test/acc", "balanced": "test/bal_acc", "head": "test/many_acc",
                 "medium": "test/medium_acc", "tail": "test/few_acc", "macro-F1": "test/macro_f1",
                 "ECE": "test/ece"}
LOWER_IS_BETTER = frozenset({"ECE"})
GROUP_METRICS = ("head", "medium", "tail")  # the grouped bars

# Settings that differ between runs without changing what is learned (names, machine knobs,
# logging cadence): never shown in the diff, never split a seed group.
BOOKKEEPING = frozenset({"name", "threads", "num_workers", "log_every", "device"})
SEED_KEY = "seed"


class CompareError(ValueError):
    """A selection that cannot be compared; the message says why and what to do."""


@dataclass(frozen=True)
class RunRef:
    id: str
    name: str
    label: str  # "name · id6": unique and short, for legends and table rows
    dataset: str  # data source
    dataset_version_id: str | None
    seed: str | None
    status: str
    group: int  # index into Comparison.groups


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None  # sample std (n - 1); None for fewer than two values
    n: int


@dataclass(frozen=True)
class SeedGroup:
    label: str  # first member's name, "× n seeds"
    run_ids: tuple[str, ...]
    seeds: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.run_ids)


@dataclass(frozen=True)
class ClassRow:
    name: str
    train_count: int
    group: str  # many | medium | few (from the baseline, else the first run that has the class)
    recall: dict  # run id -> recall in [0, 1] or None (class missing from that run, or no support)
    delta: dict  # run id -> recall change vs the baseline in points, or None


@dataclass(frozen=True)
class Comparison:
    runs: list[RunRef]
    baseline: str
    missing: list[str] = field(default_factory=list)  # requested ids that are no longer there
    warnings: list[str] = field(default_factory=list)
    settings: list[tuple[str, list[str | None]]] = field(default_factory=list)  # key, per run
    metrics: dict = field(default_factory=dict)  # run id -> {label: value or None}
    best: dict = field(default_factory=dict)  # label -> run ids holding the best value
    groups: list[SeedGroup] = field(default_factory=list)
    group_metrics: dict = field(default_factory=dict)  # group index -> {label: Stat} (size >= 2)
    classes: list[ClassRow] = field(default_factory=list)
    class_notes: list[str] = field(default_factory=list)
    metric_keys: list[str] = field(default_factory=list)  # every logged key of the selection
    mixed_datasets: bool = False  # the runs were trained on different datasets

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.runs]

    def run(self, run_id: str) -> RunRef:
        return next(r for r in self.runs if r.id == run_id)

    def to_dict(self) -> dict:
        def stat(s: Stat) -> dict:
            return {"mean": s.mean, "std": s.std, "n": s.n}
        return {
            "runs": [{"id": r.id, "name": r.name, "dataset": r.dataset, "seed": r.seed,
                      "status": r.status, "group": r.group} for r in self.runs],
            "baseline": self.baseline, "missing": self.missing, "warnings": self.warnings,
            "mixed_datasets": self.mixed_datasets,
            "metrics": self.metrics, "best": self.best,
            "settings_diff": {k: dict(zip(self.ids, vals)) for k, vals in self.settings},
            "seed_groups": [{"label": g.label, "runs": list(g.run_ids), "seeds": list(g.seeds),
                             "metrics": {m: stat(s) for m, s in self.group_metrics.get(i, {}).items()}}
                            for i, g in enumerate(self.groups) if g.size > 1],
            "classes": [{"name": c.name, "train_count": c.train_count, "group": c.group,
                         "recall": c.recall, "delta_points": c.delta} for c in self.classes],
            "class_notes": self.class_notes,
        }


# --- small pure pieces -------------------------------------------------------------------------

def finite(v) -> float | None:
    """A metric value as float, None for missing / NaN / Inf (older stores return NaN)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def mean_std(values: Iterable[float | None]) -> Stat:
    """Mean and sample standard deviation (n - 1) of the finite values; std None below two."""
    vals = [v for v in (finite(x) for x in values) if v is not None]
    if not vals:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))


def best_runs(values: dict[str, float | None], *, lower_is_better: bool = False) -> list[str]:
    """Run ids holding the best finite value (all of them on a tie); [] when none has one."""
    vals = {k: v for k, v in values.items() if finite(v) is not None}
    if not vals:
        return []
    target = (min if lower_is_better else max)(vals.values())
    return [k for k, v in vals.items() if v == target]


def ema(values: Sequence[float | None], weight: float) -> list[float | None]:
    """Exponential moving average (weight 0 = off, 0.99 = very smooth). Gaps (None) stay gaps
    and do not reset the average; the start is debiased, as TensorBoard does, so the first points
    are not pulled towards 0."""
    if not 0 <= weight < 1:
        raise CompareError(f"Smoothing must be in [0, 1), got {weight}.")
    if weight == 0:
        return [finite(v) for v in values]
    out, acc, n = [], 0.0, 0
    for v in values:
        f = finite(v)
        if f is None:
            out.append(None)
            continue
        acc, n = acc * weight + (1 - weight) * f, n + 1
        out.append(acc / (1 - weight ** n))
    return out


def settings_diff(configs: Sequence[dict], *,
                  ignore: Iterable[str] = BOOKKEEPING) -> list[tuple[str, list[str | None]]]:
    """(key, value per run) for every flattened setting whose values differ across the runs,
    sorted by key; a setting a run does not have is None."""
    flat = [flatten(c or {}) for c in configs]
    skip = set(ignore)
    keys = sorted({k for f in flat for k in f} - skip)
    out = []
    for k in keys:
        vals = [f.get(k) for f in flat]
        if len(set(vals)) > 1:
            out.append((k, vals))
    return out


def seed_groups(runs: Sequence, *, ignore: Iterable[str] = BOOKKEEPING) -> list[SeedGroup]:
    """Runs equal in everything but the training seed, in order of first appearance."""
    skip = set(ignore) | {SEED_KEY}
    buckets: dict[tuple, list] = {}
    for r in runs:
        flat = flatten(r.config or {})
        key = (r.kind, r.dataset_version_id, r.parent_run_id,
               tuple(sorted((k, v) for k, v in flat.items() if k not in skip)))
        buckets.setdefault(key, []).append(r)
    groups = []
    for members in buckets.values():
        seeds = tuple(str((m.config or {}).get(SEED_KEY)) for m in members)
        label = members[0].name if len(members) == 1 else f"{members[0].name} × {len(members)} seeds"
        groups.append(SeedGroup(label, tuple(m.id for m in members), seeds))
    return groups


def class_matrix(per_run: dict[str, list], baseline: str) -> tuple[list[ClassRow], dict[str, list[str]]]:
    """Per-class recall rows matched by class name across runs (union), sorted by training count
    (largest first, then name), with the change vs ``baseline`` in points; and, per run with
    results, the classes it lacks. per_run: run id -> ClassResult list (test split)."""
    by_run = {rid: {c.class_name: c for c in rows} for rid, rows in per_run.items()}
    names: dict[str, object] = {}
    for rid in [baseline, *per_run]:  # the baseline's count and group win
        for name, c in by_run.get(rid, {}).items():
            names.setdefault(name, c)
    rows = []
    for name, ref in names.items():
        recall = {rid: (finite(by_run[rid][name].accuracy) if name in by_run[rid] else None)
                  for rid in per_run}
        base = recall.get(baseline)
        delta = {rid: (None if v is None or base is None else round((v - base) * 100, 10))
                 for rid, v in recall.items()}
        rows.append(ClassRow(name, int(ref.train_count), ref.group, recall, delta))
    rows.sort(key=lambda r: (-r.train_count, r.name))
    gaps = {rid: [r.name for r in rows if r.name not in by_run[rid]]
            for rid in per_run if by_run[rid]}
    return rows, {rid: g for rid, g in gaps.items() if g}


# --- selection ---------------------------------------------------------------------------------

def resolve_ids(store, ids: Sequence[str], *, min_prefix: int = 6) -> tuple[list[str], list[str]]:
    """(full ids found, requested ids not found), in order, duplicates dropped. An id may be a
    unique prefix of at least ``min_prefix`` characters; an ambiguous prefix is an error."""
    wanted = list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))
    found, missing, every = [], [], None
    for i in wanted:
        try:
            found.append(store.get_run(i).id)
            continue
        except RunNotFound:
            pass
        if len(i) < min_prefix:
            missing.append(i)
            continue
        if every is None:
            every = [r.id for r in store.list_runs()]
        hits = [r for r in every if r.startswith(i)]
        if len(hits) > 1:
            raise CompareError(f"The id prefix {i!r} matches {len(hits)} runs; give more characters.")
        (found if hits else missing).append(hits[0] if hits else i)
    return list(dict.fromkeys(found)), missing


def _label(run) -> str:
    return f"{run.name} · {run.id[:6]}"


def _datasets(runs) -> set[str]:
    """The distinct datasets of the runs: their dataset versions when every run has one (the
    manifest hash: same source, other seed or ratio = another dataset), else their data sources."""
    if all(r.dataset_version_id for r in runs):
        return {r.dataset_version_id for r in runs}
    return {(r.config.get("data") or {}).get("source", "") for r in runs}


def compare(store, run_ids: Sequence[str], *, baseline: str | None = None,
            allow_missing: bool = False, min_prefix: int = 6) -> Comparison:
    """The comparison of 2 to 20 runs (ids or unique prefixes). Unknown ids are an error naming
    them, unless ``allow_missing`` (the page: a run deleted since the link was made), where they
    are listed in ``missing`` and the rest is compared."""
    requested = list(dict.fromkeys(i.strip() for i in run_ids if i and i.strip()))
    if len(requested) > MAX_RUNS:
        raise CompareError(f"Compare takes at most {MAX_RUNS} runs; {len(requested)} were given. "
                           "Pick fewer (e.g. one seed group or one loss at a time).")
    found, missing = resolve_ids(store, requested, min_prefix=min_prefix)
    runs = []
    for i in found:  # a run may be deleted between the lookup and now
        try:
            runs.append(store.get_run(i))
        except RunNotFound:
            missing.append(i)
    found = [r.id for r in runs]
    if missing and not allow_missing:
        raise CompareError("No run with id " + ", ".join(repr(m) for m in missing)
                           + " (see: taillab runs list).")
    if len(found) < MIN_RUNS:
        raise CompareError(f"Compare needs at least {MIN_RUNS} runs; "
                           f"{len(found)} {'was' if len(found) == 1 else 'were'} found"
                           + (f" ({len(missing)} no longer exist{'s' if len(missing) == 1 else ''})"
                              if missing else "") + ".")
    base = runs[0].id
    if baseline:
        b, bad = resolve_ids(store, [baseline], min_prefix=min_prefix)
        if bad or b[0] not in found:
            raise CompareError(f"The baseline {baseline!r} is not one of the compared runs.")
        base = b[0]

    groups = seed_groups(runs)
    group_of = {rid: gi for gi, g in enumerate(groups) for rid in g.run_ids}
    refs = [RunRef(r.id, r.name, _label(r), (r.config.get("data") or {}).get("source", ""),
                   r.dataset_version_id, None if r.config.get(SEED_KEY) is None else str(r.config[SEED_KEY]),
                   r.status, group_of[r.id]) for r in runs]

    warnings = []
    mixed = len(_datasets(runs)) > 1
    if mixed:
        warnings.append("These runs were trained on different datasets: their accuracies are "
                        "measured on different test sets and do not compare directly.")
    unfinished = [_label(r) for r in runs if r.status != "finished"]
    if unfinished:
        warnings.append("Not finished (no final test metrics yet, or never): " + ", ".join(unfinished) + ".")

    metrics = {r.id: {label: finite(r.latest.get(key)) for label, key in FINAL_METRICS.items()}
               for r in runs}
    best = {label: best_runs({rid: m[label] for rid, m in metrics.items()},
                             lower_is_better=label in LOWER_IS_BETTER) for label in FINAL_METRICS}
    group_metrics = {gi: {label: mean_std(metrics[rid][label] for rid in g.run_ids)
                          for label in FINAL_METRICS}
                     for gi, g in enumerate(groups) if g.size > 1}

    per_run = {r.id: store.class_results(r.id, "test") for r in runs}
    classes, gaps = class_matrix(per_run, base)
    label_of = {r.id: _label(r) for r in runs}
    notes = []
    if gaps:
        notes.append("The runs' class sets differ; classes are matched by name and a class a run "
                     "does not have is a gap.")
        for rid, names in gaps.items():
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            notes.append(f"{label_of[rid]} has no class {shown}.")
    no_results = [label_of[rid] for rid, rows in per_run.items() if not rows]
    if no_results:
        notes.append("No per-class test results (run not finished): " + ", ".join(no_results) + ".")

    keys = sorted({k for r in runs for k in r.latest})
    return Comparison(runs=refs, baseline=base, missing=missing, warnings=warnings,
                      settings=settings_diff([r.config for r in runs]), metrics=metrics, best=best,
                      groups=groups, group_metrics=group_metrics, classes=classes,
                      class_notes=notes, metric_keys=keys, mixed_datasets=mixed)


# --- curves ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Band:
    x: list[float]
    mean: list[float | None]
    std: list[float | None]
    n: list[int]


def curves(store, run_ids: Sequence[str], key: str, *, x: str = "epoch",
           max_points: int = 2000) -> dict[str, tuple[list[float], list[float | None]]]:
    """run id -> (x, y) of one metric from Store.curves (downsampled to ``max_points`` keeping
    each bucket's min and max); y None for non-finite values (a gap); runs without it absent.
    x: "step", "epoch" or "time" (seconds since the run's first metric)."""
    if x not in ("step", "epoch", "time"):
        raise CompareError(f"Invalid x axis {x!r}. Only step, epoch and time are supported.")
    out = {}
    for rid, c in store.curves(list(run_ids), key, x=x, max_points=max_points).items():
        keep = [i for i, v in enumerate(c.x) if v is not None and math.isfinite(v)]  # no epoch
        out[rid] = ([float(c.x[i]) for i in keep], [finite(c.y[i]) for i in keep])
    return out


def band(members: dict[str, tuple[Sequence[float], Sequence[float | None]]]) -> Band:
    """Mean and sample std across runs on the union of their x values (epochs line up between
    runs of one seed group); at an x where fewer than two runs have a value, std is None."""
    at: dict[float, list[float]] = {}
    for xs, ys in members.values():
        for xv, yv in zip(xs, ys):
            at.setdefault(round(float(xv), 6), [])
            if finite(yv) is not None:
                at[round(float(xv), 6)].append(float(yv))
    xs = sorted(at)
    stats = [mean_std(at[v]) for v in xs]
    return Band(xs, [s.mean for s in stats], [s.std for s in stats], [s.n for s in stats])


def numeric_settings(comparison: Comparison) -> dict[str, list[float]]:
    """The differing settings that every run has as a number: key -> value per run. The seed
    is left out: it is a repeat, not a choice (seed groups show its spread)."""
    out = {}
    for key, vals in comparison.settings:
        if key == SEED_KEY:
            continue
        nums = []
        for v in vals:
            if v is None or v in ("null", ""):
                break
            try:
                f = float(v)
            except ValueError:
                break
            if v in ("true", "false") or not math.isfinite(f):
                break
            nums.append(f)
        else:
            out[key] = nums
    return out
