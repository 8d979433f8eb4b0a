"""Predict page blocks: any finished run, post-hoc child or compressed variant (torch checkpoint,
ONNX fp32, ONNX int8), up to four side by side on the same images, each with its latency."""
from __future__ import annotations

import hashlib
import math
import statistics
import time
from pathlib import Path
from typing import Sequence

import streamlit as st

from dashboard import charts
from dashboard.compress_ui import FORMAT_LABELS, VARIANT_KINDS
from dashboard.ui import pct
from engine import workspace
from engine.store import Run, RunStatus

MAX_MODELS = 4
TIMED_CALLS = 5  # after one warm-up call
LATENCY_NOTE = (f"⏱ Latency: decoding, preprocessing and the model on one image, the median of {TIMED_CALLS} "
                "calls after a warm-up, on this server's CPU (torch for checkpoints, ONNX Runtime for ONNX "
                "variants); the Compress page times the models alone, at batch 1 and 32.")


POSTHOC_LABELS = {"logit_adjust": "logit adjustment", "tau_norm": "τ-normalisation"}


def model_file(run: Run) -> Path:
    """The file a run predicts with: best.pt for torch runs, model.onnx for ONNX variants, the
    parent's best.pt for post-hoc children (they record a correction, not a model)."""
    folder = Path(workspace.home()) / "runs" / run.id  # not run_dir(): that creates the folder
    if run.kind == "posthoc":
        parent = run.parent_run_id or (run.config or {}).get("posthoc", {}).get("parent_run_id")
        return workspace.best_checkpoint(parent) if parent else folder / "best.pt"
    if run.tags.get("format", "torch").startswith("onnx"):
        return folder / "model.onnx"
    return workspace.best_checkpoint(run.id)


def fmt(run: Run) -> str:
    if run.kind == "posthoc":
        method = run.tags.get("posthoc_method", "")
        return f"torch + {POSTHOC_LABELS.get(method, method or 'post-hoc')} τ={run.tags.get('tau', '?')}"
    f = run.tags.get("format", "torch")
    return FORMAT_LABELS.get(f, f)


def models(runs: Sequence[Run]) -> list[Run]:
    """Finished runs, post-hoc children (their parent's model, corrected) and compressed variants,
    newest first."""
    return [r for r in runs if r.status == RunStatus.FINISHED]


def _bal_acc(run: Run) -> float:
    v = run.latest.get("test/bal_acc")
    try:
        v = float(v)
    except (TypeError, ValueError):
        return -math.inf
    return -math.inf if math.isnan(v) else v


def default_model(runs: Sequence[Run]) -> str:
    """The trained (or post-hoc corrected) run with the best test balanced accuracy among those
    whose model is on disk, then the newest; compressed variants only when nothing else can
    predict (they are there to be compared side by side with their original); else the first."""
    usable = [r for r in runs if model_file(r).is_file()] or list(runs)
    # max keeps the first of equals and runs come newest first
    return max(usable, key=lambda r: (r.kind not in VARIANT_KINDS, _bal_acc(r))).id


def unique_files(files: Sequence) -> tuple[list, list[str]]:
    """(the uploaded files without repeats, names of the repeats): a file whose content (SHA-256)
    was already dropped is shown once, whatever its name."""
    seen: set[str] = set()
    kept, repeats = [], []
    for f in files or []:
        digest = hashlib.sha256(f.getvalue()).hexdigest()
        if digest in seen:
            repeats.append(f.name)
        else:
            seen.add(digest)
            kept.append(f)
    return kept, repeats


def read_error(name: str, e: Exception) -> str:
    """The message of a file that cannot be classified: its name and why."""
    why = str(e).replace("uploaded file: ", "")
    return (f"**{name}** was not classified: {why} Drop a PNG, JPEG, WebP or BMP image; "
            "the other files are classified as usual.")


def label(run: Run) -> str:
    return f"{run.name} · {fmt(run)} · test bal. acc {pct(run.latest.get('test/bal_acc'))} · {run.id[:8]}"


@st.cache_resource(show_spinner="Loading the model ...", max_entries=8)
def _predictor(run_id: str, mtime: float):
    # mtime in the key: a re-written model file is reloaded
    from engine.infer import predictor_for_run
    return predictor_for_run(run_id)


def predictor(run: Run):
    """The run's cached predictor (torch or ONNX Runtime); FileNotFoundError when its file is gone."""
    path = model_file(run)
    if not path.is_file():
        raise FileNotFoundError(f"Run {run.id} has no model on disk at {path} (was its folder deleted?).")
    return _predictor(run.id, path.stat().st_mtime)


def timed_predict(p, data: bytes, name: str, k: int = 5):
    """(prediction, latency in ms): one warm-up call, then the median of TIMED_CALLS calls, each
    decoding, preprocessing and running the model on this image."""
    pred = p.predict(data, name=name, k=k)
    times = []
    for _ in range(TIMED_CALLS):
        t = time.perf_counter()
        p.predict(data, name=name, k=k)
        times.append((time.perf_counter() - t) * 1000)
    return pred, statistics.median(times)


def preprocessing_caption(p) -> str:
    spec = p.spec
    return (f"Preprocessing, exactly as in this run's evaluation: resize to {spec.size}×{spec.size}, "
            f"{'greyscale' if spec.channels == 1 else 'RGB'}, normalise with mean "
            f"{', '.join(f'{m:.3f}' for m in spec.mean)} and std {', '.join(f'{s:.3f}' for s in spec.std)}. "
            "EXIF rotation is applied; transparency is composited on black.")


def side_by_side(f, data: bytes, img, chosen: Sequence[Run], preds: dict) -> None:
    """One image, each model in a column: top-1, its probability, latency, top-5 bars."""
    c0, *cols = st.columns([1] + [2] * len(chosen))
    c0.image(img, caption=f.name, width="stretch")
    tops = {}
    for col, r in zip(cols, chosen):
        with col:
            st.markdown(f"**{r.name}**  \n{fmt(r)} · `{r.id[:8]}`")
            try:
                pred, ms = timed_predict(preds[r.id], data, f.name)
            except Exception as e:  # noqa: BLE001 — one model failing must not hide the others
                st.error(f"This model cannot predict this image: {e}")
                continue
            tops[r.id] = pred.labels[0]
            st.markdown(f"**{pred.labels[0]}** · {pred.probs[0] * 100:.1f}%")
            st.caption(f"⏱ {ms:.2f} ms per image")
            fig = charts.topk_bars(pred.labels, pred.probs)
            st.plotly_chart(fig, width="stretch", key=f"predict.chart.{f.file_id}.{r.id}")
    if len(tops) > 1:
        if len(set(tops.values())) == 1:
            st.caption(f"✅ All {len(tops)} models agree: **{next(iter(tops.values()))}**.")
        else:
            st.caption("⚠️ The models disagree: " + ", ".join(f"{next(r.name for r in chosen if r.id == i)} → "
                                                            f"**{t}**" for i, t in tops.items()) + ".")
