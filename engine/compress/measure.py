"""Measuring a run and its compressed variants: size, parameters, MACs, sparsity, latency,
throughput, calibration (ECE), agreement with the parent, and what a variant forgot.

Figures of a variant are stored in its tags (see docs/compression.md); an ordinary torch run
(the parent, a pruned or distilled child) is measured on demand and cached in its tags, its test
logits in ``<run_dir>/test_outputs.npz``.

Timing: warm-up, then ``runs`` timed calls at batch 1 (p50 / p95 in ms) and ``batch_runs`` calls
at batch 32 (images per second), on ``threads`` CPU threads: torch eager for torch runs, ONNX
Runtime's CPU provider for ONNX runs. The timing functions take ``runs`` so that tests can
use a few; tests never assert on timings.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from engine.data.stats import shot_group
from engine.evaluate import GROUPS, per_class_counts, summarize
from engine.models import count_macs, count_params  # noqa: F401 — their home is engine.models

RUNS = 200  # timed batch-1 calls
WARMUP = 20
BATCH = 32
BATCH_RUNS = 20  # timed batch-32 calls
ECE_BINS = 15
VARIANT_KINDS = ("prune", "distil", "quantize", "export")
TIMING_TAGS = ("latency_ms_p50", "latency_ms_p95", "throughput", "threads")


def default_threads() -> int:
    """One thread per core but one (as ``fit`` does): a small machine also serves the dashboard."""
    return max(1, (os.cpu_count() or 2) - 1)


# --- figures of a model ----------------------------------------------------------------------

def ece(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error (Guo et al. 2017): confidence = the top probability, split into
    ``bins`` equal-width bins (0, 1/B], (1/B, 2/B], ...; ECE = sum over bins of
    |bin| / N * |accuracy in bin - mean confidence in bin|."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if len(targets) == 0:
        return math.nan
    conf = probs.max(1)
    correct = (probs.argmax(1) == targets).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds edges[b] < conf <= edges[b + 1] (a confidence of exactly 0 goes to the first)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of images whose top-1 class is the same (logits (N, C) or predictions (N,))."""
    pa = a.argmax(1) if np.ndim(a) == 2 else np.asarray(a)
    pb = b.argmax(1) if np.ndim(b) == 2 else np.asarray(b)
    return float((pa == pb).mean()) if len(pa) else math.nan


def file_size(paths) -> int:
    return int(sum(Path(p).stat().st_size for p in paths if Path(p).is_file()))


def onnx_files(model_path: Path) -> list[Path]:
    """model.onnx and its external data file(s) (``model.onnx.data``), as they lie on disk."""
    model_path = Path(model_path)
    return [model_path] + sorted(p for p in model_path.parent.glob(model_path.name + ".data*"))


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and m.weight is not None]


def sparsity(model: nn.Module) -> float:
    """Share of exact zeros among the Conv / Linear weights (0..1)."""
    ws = _weights(model)
    n = sum(w.numel() for w in ws)
    return float(sum(int((w == 0).sum()) for w in ws) / n) if n else 0.0


def onnx_weight_stats(model_path: Path) -> dict:
    """params (weight and bias elements, quantized ones included; scales / zero points not) and
    sparsity (zeros among the weight tensors with 2+ dimensions) of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model_path))  # loads model.onnx.data from beside it
    params = zeros = n_w = 0
    for init in m.graph.initializer:
        name = init.name.lower()
        if "scale" in name or "zero_point" in name:
            continue
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind not in "fiu" or arr.size <= 1:
            continue
        params += arr.size
        if arr.ndim >= 2:
            n_w += arr.size
            zeros += int((arr == 0).sum())
    return {"params": int(params), "sparsity": float(zeros / n_w) if n_w else 0.0}


# --- timing --------------------------------------------------------------------------------------

@dataclass
class Timing:
    latency_ms_p50: float
    latency_ms_p95: float
    throughput: float  # images / s at batch BATCH
    threads: int

    def tags(self) -> dict[str, str]:
        return {"latency_ms_p50": f"{self.latency_ms_p50:.4f}", "latency_ms_p95": f"{self.latency_ms_p95:.4f}",
                "throughput": f"{self.throughput:.1f}", "threads": str(self.threads)}


def _time(call: Callable[[np.ndarray], object], x1: np.ndarray, xb: np.ndarray, *, runs: int,
          warmup: int, batch_runs: int, threads: int) -> Timing:
    for _ in range(max(1, warmup)):
        call(x1)
    lat = []
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        call(x1)
        lat.append(time.perf_counter() - t)
    call(xb)
    t = time.perf_counter()
    for _ in range(max(1, batch_runs)):
        call(xb)
    dt = time.perf_counter() - t
    lat_ms = np.asarray(lat) * 1000.0
    return Timing(float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 95)),
                  float(len(xb) * max(1, batch_runs) / dt), threads)


def _inputs(size: int, channels: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((1, channels, size, size)).astype(np.float32),
            rng.standard_normal((batch, channels, size, size)).astype(np.float32))


def time_torch(model: nn.Module, size: int, channels: int, *, runs: int = RUNS, warmup: int = WARMUP,
               batch: int = BATCH, batch_runs: int = BATCH_RUNS, threads: int | None = None) -> Timing:
    """torch eager, CPU, ``torch.inference_mode``; the thread count is restored afterwards."""
    threads = threads or default_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    model = model.eval().cpu()
    x1, xb = _inputs(size, channels, batch)

    def call(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    try:
        return _time(call, x1, xb, runs=runs, warmup=warmup, batch_runs=batch_runs, threads=threads)
    finally:
        torch.set_num_threads(before)


def time_onnx(model_path: Path, size: int, channels: int, *, runs: int = RUNS, warmup: int = WARMUP,
              batch: int = BATCH, batch_runs: int = BATCH_RUNS, threads: int | None = None,
              input_name: str = "input") -> Timing:
    """ONNX Runtime, CPU provider, ``threads`` intra-op threads, sequential execution."""
    from engine.infer import ort_session

    threads = threads or default_threads()
    sess = ort_session(model_path, threads)
    x1, xb = _inputs(size, channels, batch)
    return _time(lambda x: sess.run(None, {input_name: x}), x1, xb, runs=runs, warmup=warmup,
                 batch_runs=batch_runs, threads=threads)


# --- a run's model, data and test outputs ------------------------------------------------------

_DATA_CACHE: dict[str, object] = {}


def run_data(data_config: dict):
    """``prepare_data`` of a run's data config, the last one kept in memory (a family of runs
    shares it)."""
    from engine.config import data_config_from_dict
    from engine.data.datasets import prepare_data

    key = json.dumps(data_config, sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = prepare_data(data_config_from_dict(data_config))
    return _DATA_CACHE[key]


def load_checkpoint(run_id: str) -> dict:
    from engine import workspace

    path = workspace.best_checkpoint(run_id)
    if not path.is_file():
        raise FileNotFoundError(f"Run {run_id} has no checkpoint at {path}: it is not a finished "
                                "torch training run.")
    return torch.load(path, map_location="cpu", weights_only=True)  # no pickled code


def load_torch(run_id: str, data=None):
    """(model in eval mode, checkpoint, PreparedData) of a finished torch run."""
    from engine.infer import model_from_checkpoint

    ck = load_checkpoint(run_id)
    data = data if data is not None else run_data(ck["config"]["data"])
    if data.version_id != ck["dataset_version"]:
        raise ValueError(f"The data of run {run_id} changed since it trained (version "
                         f"{ck['dataset_version'][:12]}, now {data.version_id[:12]}): its test "
                         "split cannot be rebuilt.")
    return model_from_checkpoint(ck), ck, data


def batches(data, spec, split: str = "test", *, indices: np.ndarray | None = None,
            batch_size: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(float32 images (B, C, H, W), int64 labels) of ``split`` in order, preprocessed exactly as
    ``fit`` evaluates (the same arithmetic, so torch logits are bit-identical to the run's)."""
    from engine.data.datasets import ImageDataset, Split
    from engine.train import ArrayBatches, make_loader
    from engine.transforms import eval_transform

    s = data.splits[split]
    if indices is not None:
        indices = np.asarray(indices, dtype=np.int64)
        s = Split(labels=s.labels[indices], images=None if s.images is None else s.images[indices],
                  root=s.root, paths=[s.paths[i] for i in indices] if s.paths else [])
    if s.images is not None:
        loader = ArrayBatches.from_split(s, spec, batch_size=batch_size)
    else:
        loader = make_loader(ImageDataset(s, spec.channels, eval_transform(spec)), batch_size=batch_size,
                             shuffle=False)
    for x, y in loader:
        yield x.numpy().astype(np.float32, copy=False), y.numpy().astype(np.int64)


@torch.no_grad()
def torch_logits(model: nn.Module, data, spec, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    out, ys = [], []
    for x, y in batches(data, spec, split):
        out.append(model(torch.from_numpy(x)).float().numpy())
        ys.append(y)
    return _stack(out, ys, data.num_classes)


def onnx_logits(model_path: Path, data, spec, split: str = "test", *, threads: int | None = None,
                input_name: str = "input") -> tuple[np.ndarray, np.ndarray]:
    from engine.infer import ort_session

    sess = ort_session(model_path, threads or default_threads())
    out, ys = [], []
    for x, y in batches(data, spec, split):
        out.append(sess.run(None, {input_name: x})[0].astype(np.float32))
        ys.append(y)
    return _stack(out, ys, data.num_classes)


def _stack(out, ys, C) -> tuple[np.ndarray, np.ndarray]:
    if not out:
        return np.zeros((0, C), np.float32), np.zeros(0, np.int64)
    return np.concatenate(out), np.concatenate(ys)


def outputs_path(run_id: str) -> Path:
    from engine import workspace
    return workspace.run_dir(run_id) / "test_outputs.npz"


def save_test_outputs(run_id: str, logits: np.ndarray, targets: np.ndarray) -> Path:
    path = outputs_path(run_id)
    tmp = path.with_name(f".test_outputs.{os.getpid()}.npz")
    np.savez(tmp, logits=logits.astype(np.float32), targets=targets.astype(np.int64))
    os.replace(tmp, path)
    return path


def test_outputs(store, run_id: str, *, data=None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) float32, targets (N,) int64) of a run on its test split, in split order.
    An ONNX variant wrote them when it was made; a torch run's are computed once and cached."""
    path = outputs_path(run_id)
    if path.is_file():
        with np.load(path) as z:
            return z["logits"], z["targets"]
    run = store.get_run(run_id)
    if run.tags.get("format", "torch").startswith("onnx"):
        raise FileNotFoundError(f"Run {run_id} ({run.tags['format']}) has no test outputs at {path}.")
    if run.status != "finished":
        raise ValueError(f"Run {run_id} is {run.status}: test outputs need a finished run.")
    model, ck, data = load_torch(run_id, data)
    from engine.transforms import EvalSpec
    logits, targets = torch_logits(model, data, EvalSpec.from_dict(ck["eval_spec"]))
    save_test_outputs(run_id, logits, targets)
    return logits, targets


def test_metrics(logits: np.ndarray, targets: np.ndarray, groups: list[str],
                 parent_logits: np.ndarray | None = None) -> dict[str, float]:
    """test/acc, bal_acc, many/medium/few_acc (engine.evaluate.summarize), ece and agreement."""
    C = logits.shape[1]
    m = summarize(logits.argmax(1), targets, C, groups)
    m["ece"] = ece(softmax(logits), targets)
    m["agreement"] = agreement(logits, parent_logits) if parent_logits is not None else 1.0
    return m


def log_test_results(store, run_id: str, metrics: dict, logits: np.ndarray, targets: np.ndarray,
                     data, train_counts: list[int], *, step: int = 0) -> None:
    """The metrics (prefixed test/) and per-class test results, as the worker logs them."""
    store.log_metrics(run_id, {f"test/{k}": v for k, v in metrics.items()}, step=step)
    support, correct = per_class_counts(logits.argmax(1), targets, data.num_classes)
    store.log_class_results(run_id, "test", class_names=list(data.class_names),
                            train_counts=list(train_counts), support=support.tolist(),
                            correct=correct.tolist(), many_threshold=data.config.many_threshold,
                            few_threshold=data.config.few_threshold)


# --- a torch run measured on demand ------------------------------------------------------------

def measure_torch_run(store, run_id: str, *, parent_id: str | None = None, runs: int = RUNS,
                      batch_runs: int = BATCH_RUNS, threads: int | None = None,
                      force: bool = False) -> dict[str, str]:
    """Size (best.pt), params, MACs, sparsity, latency and throughput (torch eager) of a finished
    torch run, plus test ECE and agreement with ``parent_id``; stored in its tags / metrics, and
    returned. Skipped when the run has them already (unless ``force``)."""
    from engine import workspace
    from engine.transforms import EvalSpec

    run = store.get_run(run_id)
    if not force and all(k in run.tags for k in TIMING_TAGS) and "test/ece" in run.latest:
        return dict(run.tags)
    model, ck, data = load_torch(run_id)
    spec = EvalSpec.from_dict(ck["eval_spec"])
    timing = time_torch(model, spec.size, spec.channels, runs=runs, batch_runs=batch_runs, threads=threads)
    tags = {"format": run.tags.get("format", "torch"),
            "size_bytes": str(file_size([workspace.best_checkpoint(run_id)])),
            "params": str(count_params(model)), "macs": str(count_macs(model, spec.size, spec.channels)),
            "sparsity": f"{sparsity(model):.6f}", **timing.tags()}
    logits, targets = test_outputs(store, run_id, data=data)
    parent_logits = None
    if parent_id:
        parent_logits, parent_targets = test_outputs(store, parent_id)
        if len(parent_targets) != len(targets) or (parent_targets != targets).any():
            parent_logits = None  # another test split: agreement does not apply
    m = test_metrics(logits, targets, data.groups(), parent_logits)
    extra = {"test/ece": m["ece"]}
    if parent_logits is not None or not parent_id:
        extra["test/agreement"] = m["agreement"]
    store.log_metrics(run_id, extra, step=int(ck.get("step") or 0))
    store.set_tags(run_id, tags)
    return {**run.tags, **tags}


# --- the comparison table -----------------------------------------------------------------------

def _num(v, cast=float):
    if v is None or v == "":
        return None
    try:
        x = cast(float(v)) if cast is int else cast(v)
    except (TypeError, ValueError):
        return None
    return None if isinstance(x, float) and math.isnan(x) else x


def family(store, run_id: str):
    """(parent, its compression variants oldest first); ``run_id`` may be either."""
    runs = store.list_runs()
    by_id = {r.id: r for r in runs}
    root = by_id.get(run_id) or store.get_run(run_id)
    if root.kind in VARIANT_KINDS and root.parent_run_id in by_id:
        root = by_id[root.parent_run_id]
    kids = sorted((r for r in runs if r.parent_run_id == root.id and r.kind in VARIANT_KINDS),
                  key=lambda r: r.created_at)
    return root, kids


def _row(run, *, is_parent: bool) -> dict:
    t, lat = run.tags, run.latest
    metric = lambda k: _num(lat.get(f"test/{k}"))  # noqa: E731
    method = "original" if is_parent else (t.get("method_label") or run.kind)
    return {
        "run_id": run.id, "name": run.name, "kind": run.kind, "method": method,
        "parent_run_id": run.parent_run_id,
        "size_bytes": _num(t.get("size_bytes"), int), "params": _num(t.get("params") or t.get("num_params"), int),
        "macs": _num(t.get("macs"), int), "sparsity": _num(t.get("sparsity")),
        "latency_ms_p50": _num(t.get("latency_ms_p50")), "latency_ms_p95": _num(t.get("latency_ms_p95")),
        "throughput": _num(t.get("throughput")), "threads": _num(t.get("threads"), int),
        **{k: metric(k) for k in ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc", "ece")},
        "agreement": 1.0 if is_parent and run.status == "finished" else metric("agreement"),
        "format": t.get("format", "torch"), "status": run.status,
        "flag": t.get("flag"), "compress_note": t.get("compress_note"),
    }


def compare_rows(store, run_id: str, *, runs: int = RUNS, batch_runs: int = BATCH_RUNS,
                 threads: int | None = None) -> list[dict]:
    """One row for the parent (torch eager, measured on demand and cached in its tags) and one per
    variant child (its stored figures; a finished torch child is measured on demand too), with
    run_id, name, method, size_bytes, params, macs, sparsity, latency_ms_p50, latency_ms_p95,
    throughput, threads, acc, bal_acc, many_acc, medium_acc, few_acc, ece, agreement, format,
    status (None where a figure does not apply), plus kind, parent_run_id, flag, compress_note."""
    root, kids = family(store, run_id)
    if root.status == "finished":
        measure_torch_run(store, root.id, runs=runs, batch_runs=batch_runs, threads=threads)
    for k in kids:
        if k.status == "finished" and not k.tags.get("format", "torch").startswith("onnx"):
            try:
                measure_torch_run(store, k.id, parent_id=root.id, runs=runs, batch_runs=batch_runs,
                                  threads=threads)
            except (FileNotFoundError, ValueError) as e:  # a child without a loadable checkpoint
                store.set_tags(k.id, {"compress_note": f"not measured: {e}"})
    root, kids = family(store, root.id)  # re-read with the new tags
    return [_row(root, is_parent=True)] + [_row(k, is_parent=False) for k in kids]


# --- what a variant forgot -----------------------------------------------------------------------

def _recall(preds: np.ndarray, targets: np.ndarray, C: int) -> np.ndarray:
    support, correct = per_class_counts(preds, targets, C)
    return np.where(support > 0, correct / np.maximum(support, 1), np.nan)


def damage(store, parent_id: str, child_id: str) -> dict:
    """Per-class test recall of the parent and the variant (classes ordered by training count,
    largest first, then name), the change per class and per group (many / medium / few, the mean
    of its classes' recalls), the test images whose prediction flipped (index in test-split
    order, target, both predictions) and the worst class drop in points (0 when none dropped)."""
    parent = store.get_run(parent_id)
    p_logits, targets = test_outputs(store, parent_id)
    c_logits, c_targets = test_outputs(store, child_id)
    if len(targets) != len(c_targets) or (targets != c_targets).any():
        raise ValueError(f"Runs {parent_id} and {child_id} were tested on different test splits.")
    C = p_logits.shape[1]
    names = json.loads(parent.tags.get("class_names", "[]")) or [str(i) for i in range(C)]
    counts = json.loads(parent.tags.get("train_counts", "[]")) or [0] * C
    rows = {r.class_index: r for r in store.class_results(parent_id, "test")}
    if len(rows) == C:
        groups = [rows[i].group for i in range(C)]
    else:
        cfg = parent.config.get("data", {})
        many, few = cfg.get("many_threshold", 100), cfg.get("few_threshold", 20)
        groups = [shot_group(n, many, few) for n in counts]
    pp, cp = p_logits.argmax(1), c_logits.argmax(1)
    pr, cr = _recall(pp, targets, C), _recall(cp, targets, C)
    support = np.bincount(targets, minlength=C)
    order = sorted(range(C), key=lambda i: (-counts[i], names[i]))
    classes = [{"index": i, "name": names[i], "group": groups[i], "train_count": int(counts[i]),
                "support": int(support[i]),
                "parent_recall": None if math.isnan(pr[i]) else float(pr[i]),
                "child_recall": None if math.isnan(cr[i]) else float(cr[i]),
                "change": None if math.isnan(pr[i]) or math.isnan(cr[i]) else float(cr[i] - pr[i])}
               for i in order]
    by_group = {}
    for g in GROUPS:
        sel = [i for i in range(C) if groups[i] == g and support[i] > 0]
        if sel:
            a, b = float(np.mean(pr[sel])), float(np.mean(cr[sel]))
            by_group[g] = {"parent": a, "child": b, "change": b - a, "classes": len(sel)}
        else:
            by_group[g] = {"parent": None, "child": None, "change": None, "classes": 0}
    flipped_idx = np.flatnonzero(pp != cp)
    flipped = [{"index": int(i), "target": int(targets[i]), "target_name": names[targets[i]],
                "parent_pred": int(pp[i]), "parent_pred_name": names[pp[i]],
                "child_pred": int(cp[i]), "child_pred_name": names[cp[i]]} for i in flipped_idx]
    changes = [c["change"] for c in classes if c["change"] is not None]
    worst = min(changes) if changes else 0.0
    worst_cls = next((c["name"] for c in classes if c["change"] == worst), None) if worst < 0 else None
    return {"parent_run_id": parent_id, "child_run_id": child_id, "classes": classes, "groups": by_group,
            "flipped": flipped, "agreement": agreement(pp, cp),
            "worst_class_drop_points": float(max(0.0, -worst) * 100.0), "worst_class": worst_cls}
