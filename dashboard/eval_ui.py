"""Evaluation of one run on its test split (Runs page, issue 9): per-class precision / recall / F1
with 95% Wilson intervals grouped head / medium / tail, the confusion matrix with the test images
of a chosen cell, the most confident mistakes, and calibration (ECE, reliability diagram)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import state
from dashboard.charts import GROUP_LABELS, _layout
from engine.evaluate import GROUPS, ClassReport, class_report, reliability
from engine.store import Run, Store

BINS = 15
MAX_IMAGES = 24


# --- figures (pure functions of plain data) ------------------------------------------------------

def confusion_figure(matrix: np.ndarray, names: list[str], *, normalized: bool) -> go.Figure:
    names = [str(n) for n in names]
    text = [[f"{v:.2f}" if normalized else str(int(v)) for v in row] for row in matrix]
    fig = go.Figure(go.Heatmap(z=matrix, x=names, y=names, colorscale="Blues", text=text,
                               texttemplate="%{text}" if len(names) <= 20 else None,
                               hovertemplate="true %{y} → predicted %{x}: %{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="true class", type="category")
    fig.update_xaxes(title="predicted class", type="category")
    side = min(900, max(360, 28 * len(names) + 120))
    return _layout(fig, title="Confusion matrix" + (" (rows sum to 1)" if normalized else " (counts)"),
                   height=side)


def reliability_figure(rel: dict[str, list], *, title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_bar(x=rel["centre"], y=rel["accuracy"], width=1.0 / len(rel["centre"]), name="accuracy",
                marker_color="#4C78A8", customdata=rel["count"],
                hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata} images)<extra></extra>")
    fig.add_scatter(x=rel["centre"], y=rel["confidence"], mode="markers", name="mean confidence",
                    marker=dict(color="#E45756", size=7))
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                    line=dict(dash="dot", color="#888"))
    fig.update_xaxes(range=[0, 1], title="confidence (top probability)")
    fig.update_yaxes(range=[0, 1], title="accuracy")
    return _layout(fig, title=title, height=340)


# --- table ------------------------------------------------------------------------------------------

def _pct(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100.0 * x


def _ci(lo: float, hi: float) -> str:
    return "–" if math.isnan(lo) else f"{100 * lo:.0f}–{100 * hi:.0f}%"


def report_table(report: ClassReport, group: str | None = None) -> list[dict]:
    """Rows for the table, head classes first (then by training count), optionally one group."""
    order = {g: i for i, g in enumerate(GROUPS)}
    rows = [r for r in report.rows() if group is None or r["group"] == group]
    rows.sort(key=lambda r: (order.get(r["group"], 9), -r["train"], r["class"]))
    return [{"class": r["class"], "group": GROUP_LABELS.get(r["group"], r["group"]), "train": r["train"],
             "support": r["support"], "precision %": _pct(r["precision"]),
             "precision 95% CI": _ci(r["precision_lo"], r["precision_hi"]),
             "recall %": _pct(r["recall"]), "recall 95% CI": _ci(r["recall_lo"], r["recall_hi"]),
             "recall CI low %": _pct(r["recall_lo"]), "F1 %": _pct(r["f1"])} for r in rows]


# --- the view -------------------------------------------------------------------------------------

def _outputs(store: Store, run: Run):
    """(logits, targets) of the run's test split, or None with a message shown."""
    from engine.compress import measure

    if not measure.outputs_path(run.id).is_file():
        st.caption("The evaluation runs the model once over the test split; the outputs are then kept.")
        if not st.button("Evaluate on the test split", key="runs.eval.go"):
            return None
    try:
        with st.spinner("Running the model over the test split ..."):
            return measure.test_outputs(store, run.id)
    except Exception as e:  # noqa: BLE001 — a run without a usable model says why
        st.info(f"No evaluation for this run: {e}")
        return None


def evaluation(store: Store, run: Run) -> None:
    """The "Evaluation" expander of a finished run."""
    if run.status != "finished":
        return
    with st.expander("Evaluation: precision, recall, confusion matrix, calibration", expanded=False):
        out = _outputs(store, run)
        if out is None:
            return
        logits, targets = out
        _show(store, run, logits, targets)


def _show(store: Store, run: Run, logits: np.ndarray, targets: np.ndarray) -> None:
    from engine.compress.measure import ece, softmax
    from engine.config import data_config_from_dict

    data_cfg = data_config_from_dict(run.config.get("data") or {})
    results = store.class_results(run.id, "test")
    C = logits.shape[1]
    if len(results) == C:
        names, counts = [r.class_name for r in results], [r.train_count for r in results]
    else:
        data = state.prepared(data_cfg)
        names, counts = list(data.class_names), data.counts("train")
    report = class_report(logits, targets, names, counts, data_cfg.many_threshold, data_cfg.few_threshold)
    probs = softmax(logits)
    preds, conf = probs.argmax(1), probs.max(1)

    st.markdown("**Per class** (test split). The 95% Wilson interval shows how sure a figure is: "
                "a tail class with 3 test images, all right, reads 44–100%, not a confident 100%.")
    pick = st.segmented_control("Group", ["all", "head", "medium", "tail"], default="all",
                                key="runs.eval.group")
    inv = {v: k for k, v in GROUP_LABELS.items()}
    group = None if pick in (None, "all") else inv[pick]
    pct = st.column_config.NumberColumn(format="%.1f")
    rows = report_table(report, group)
    if not rows:
        st.info(f"No {pick} classes in this run (groups from training counts: head > "
                f"{data_cfg.many_threshold}, tail < {data_cfg.few_threshold} images).")
    st.dataframe(pd.DataFrame(rows, columns=list(report_table(report)[0])), hide_index=True, width="stretch", key="runs.eval.table",
                 column_config={"precision %": pct, "recall %": pct, "F1 %": pct, "recall CI low %": pct,
                                "train": st.column_config.NumberColumn(help="Training images of the class."),
                                "support": st.column_config.NumberColumn(help="Test images of the class.")})
    st.caption("Click a column header to sort. Precision: of the images predicted as the class, the share "
               "that are; recall: of the class's images, the share found. “recall CI low” sorts classes by "
               "how low their recall may really be.")

    st.markdown("**Confusion matrix**")
    normalized = st.toggle("Normalise rows (each true class sums to 1)", value=True, key="runs.eval.norm")
    matrix = report.normalized_confusion() if normalized else report.confusion
    st.plotly_chart(confusion_figure(matrix, report.class_names, normalized=normalized), width="stretch",
                    key="runs.eval.confusion")
    cm = report.confusion
    cells = sorted(((int(cm[i, j]), i, j) for i in range(C) for j in range(C) if cm[i, j] and i != j),
                   reverse=True)
    cells += sorted(((int(cm[i, i]), i, i) for i in range(C) if cm[i, i]), reverse=True)
    if cells:
        labels = [f"{names[i]} -> {names[j]} ({n} image{'s' if n != 1 else ''})" for n, i, j in cells]
        k = st.selectbox("Show the test images of a cell (true -> predicted)", range(len(cells)),
                         format_func=lambda x: labels[x], key="runs.eval.cell")
        _, i, j = cells[k]
        idx = np.flatnonzero((targets == i) & (preds == j))
        idx = idx[np.argsort(-conf[idx])]
        _gallery(run, idx, [f"{100 * conf[t]:.0f}% {names[j]}" for t in idx])

    st.markdown("**Most confident mistakes**")
    wrong = np.flatnonzero(preds != targets)
    wrong = wrong[np.argsort(-conf[wrong])]
    if len(wrong):
        _gallery(run, wrong, [f"{names[targets[t]]} → {names[preds[t]]} · {100 * conf[t]:.0f}%" for t in wrong])
    else:
        st.caption("No mistakes on the test split.")

    st.markdown(f"**Calibration** (expected calibration error, {BINS} equal-width confidence bins)")
    group_of = np.array(report.groups)[targets] if len(targets) else np.array([], dtype=str)
    subsets = {"overall": np.ones(len(targets), bool)}
    subsets.update({GROUP_LABELS[g]: group_of == g for g in GROUPS})
    cols = st.columns(len(subsets))
    for col, (label, sel) in zip(cols, subsets.items()):
        e = ece(probs[sel], targets[sel], BINS) if sel.any() else math.nan
        col.metric(f"ECE {label}", "–" if math.isnan(e) else f"{100 * e:.1f}%",
                   help=f"{int(sel.sum())} test images (by true class)")
    which = st.segmented_control("Reliability diagram of", list(subsets), default="overall",
                                 key="runs.eval.rel") or "overall"
    sel = subsets[which]
    st.plotly_chart(reliability_figure(reliability(probs[sel], targets[sel], BINS),
                                       title=f"Reliability diagram ({which})"),
                    width="stretch", key="runs.eval.reliability")
    st.caption("Bars below the diagonal: the model is more confident than it is right (over-confident).")


def _gallery(run: Run, idx: np.ndarray, captions: list[str]) -> None:
    from dashboard.compress_ui import _test_image, _zoom

    shown = list(idx[:MAX_IMAGES])
    if not shown:
        return
    try:
        images = [_test_image(run, int(t)) for t in shown]
    except Exception as e:  # noqa: BLE001 — the data may be gone; the figures still stand
        st.caption(f"The test images cannot be shown: {e}")
        return
    if any(im is None for im in images):
        st.caption("The test images cannot be shown: the dataset changed since this run.")
        return
    per_row = 8
    for start in range(0, len(shown), per_row):
        for col, img, cap in zip(st.columns(per_row), images[start:start + per_row],
                                 captions[start:start + per_row]):
            col.image(_zoom(img), caption=cap)
    if len(idx) > MAX_IMAGES:
        st.caption(f"{MAX_IMAGES} of {len(idx)} shown, most confident first.")
