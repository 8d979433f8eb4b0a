"""Compress page blocks: make compressed variants of a finished run (pruned, distilled, int8,
ONNX), compare them with it in one table, and see what each one forgot (docs/compression.md).

Pure helpers (candidates, default_run, table_frame, best_cells, row_flags) come first and are
tested without Streamlit; the blocks after them draw the page."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd
import streamlit as st

from dashboard import charts, state, views
from dashboard.ui import pct, status_badge
from engine.compress.measure import VARIANT_KINDS  # the children shown in the table
from engine.store import Run, RunStatus, Store

NOT_PARENTS = (*VARIANT_KINDS, "posthoc")  # no torch checkpoint of their own, or a variant already
COLLAPSE_POINTS = 10.0  # balanced accuracy lost (points) that flags a variant as collapsed
GUARD_KEY, FOCUS_KEY = "compress.guard", "compress.forgot"
KIND_LABELS = {"original": "original", "prune": "pruned", "distil": "distilled", "quantize": "quantized",
               "export": "ONNX export"}
FORMAT_LABELS = {"torch": "torch", "onnx-fp32": "ONNX fp32", "onnx-int8": "ONNX int8",
                 "onnx-int8-dynamic": "ONNX int8 dynamic"}

# display column -> (row key, scale, "min" | "max" | None for the best value, number format)
COLUMNS: dict[str, tuple[str, float, str | None, str]] = {
    "size MB": ("size_bytes", 1e-6, "min", "{:.2f}"),
    "params": ("params", 1, "min", "{:,.0f}"),
    "MACs M": ("macs", 1e-6, "min", "{:.2f}"),
    "sparsity %": ("sparsity", 100, None, "{:.1f}"),
    "p50 ms": ("latency_ms_p50", 1, "min", "{:.3f}"),
    "p95 ms": ("latency_ms_p95", 1, "min", "{:.3f}"),
    "img/s": ("throughput", 1, "max", "{:,.0f}"),
    "threads": ("threads", 1, None, "{:.0f}"),
    "top-1 %": ("acc", 100, "max", "{:.1f}"),
    "balanced %": ("bal_acc", 100, "max", "{:.1f}"),
    "head %": ("many_acc", 100, "max", "{:.1f}"),
    "medium %": ("medium_acc", 100, "max", "{:.1f}"),
    "tail %": ("few_acc", 100, "max", "{:.1f}"),
    "ECE": ("ece", 1, "min", "{:.3f}"),
    "agreement %": ("agreement", 100, "max", "{:.1f}"),
    "worst drop": ("worst_drop", 1, "min", "{:.1f}"),
}
HELP = {
    "size MB": "Model file(s) on disk: best.pt for torch, model.onnx (+ its .data file) for ONNX.",
    "params": "Weights and biases (quantized ones counted once).",
    "MACs M": "Multiply-accumulates per image at the evaluation size, millions.",
    "sparsity %": "Share of exact zeros among the convolution and linear weights.",
    "p50 ms": "Latency at batch 1, ms: median of 200 timed calls after a warm-up.",
    "p95 ms": "Latency at batch 1, ms: 95th percentile of 200 timed calls.",
    "img/s": "Throughput: images per second at batch 32.",
    "threads": "CPU threads used for the timing.",
    "top-1 %": "Test accuracy over all images.",
    "balanced %": "Test accuracy averaged over classes: every class counts the same.",
    "head %": "Classes with many training images.", "medium %": "Classes in between.",
    "tail %": "Classes with few training images.",
    "ECE": "Expected calibration error (15 bins): lower means confidences match accuracy better.",
    "agreement %": "Test images given the same class as the original.",
    "worst drop": "Worst class drop, points: the largest loss of test recall of one class against the original.",
    "flag": "Why the row is red: a class lost more than the guard, or accuracy collapsed.",
    "run": "The original and its variants (each a run of its own, listed under it on Runs).",
    "method": "How the variant was made, with its settings.",
    "format": "torch: timed in torch eager; ONNX: timed in ONNX Runtime (CPU).",
    "status": "A pruned or distilled variant trains first; its figures appear when it finishes.",
}
WIDTHS = {"run": 160, "method": 150, "format": 80, "params": 68, "threads": 56, "flag": 160, "status": 88,
          "worst drop": 74, "agreement %": 80, "balanced %": 76, "sparsity %": 68}  # pixels; the rest 60
BEST_CSS = "background-color: #d9f2d0; font-weight: bold"
FLAG_CSS = "background-color: #fde0dd; color: #a50f15"


# --- pure helpers --------------------------------------------------------------------------------

def _num(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def candidates(runs: Sequence[Run]) -> list[Run]:
    """Finished runs with a torch model of their own that are not variants already."""
    return [r for r in runs if r.status == RunStatus.FINISHED and r.kind not in NOT_PARENTS
            and not str(r.tags.get("format", "torch")).startswith("onnx")]


def default_run(runs: Sequence[Run]) -> str | None:
    """The best finished training run by test balanced accuracy (else the newest candidate)."""
    cands = candidates(runs)
    trained = [r for r in cands if r.kind == "train" and _num(r.latest.get("test/bal_acc")) is not None]
    if trained:
        return max(trained, key=lambda r: _num(r.latest.get("test/bal_acc"))).id
    return cands[0].id if cands else None


def row_flags(rows: Sequence[dict], worst: dict[str, tuple[float | None, str | None]],
              guard_points: float, collapse_points: float = COLLAPSE_POINTS) -> list[list[str]]:
    """Why each row is flagged red ([] when it is not): the engine's own flag, balanced accuracy
    down more than ``collapse_points`` from the original, a class losing more than
    ``guard_points`` (``worst``: run id -> (worst class drop in points, that class))."""
    parent_bal = _num(rows[0].get("bal_acc")) if rows else None
    out = []
    for j, r in enumerate(rows):
        why = []
        if j and r.get("flag"):
            why.append(str(r["flag"]))
        bal = _num(r.get("bal_acc"))
        if j and not r.get("flag") and bal is not None and parent_bal is not None \
                and (parent_bal - bal) * 100 > collapse_points:
            why.append(f"accuracy collapsed: balanced {pct(bal)} against {pct(parent_bal)} for the original")
        drop, cls = worst.get(r["run_id"], (None, None))
        if j and drop is not None and drop > guard_points:
            why.append(f"class {cls} lost {drop:.1f} points (guard: {guard_points:g})")
        out.append(why)
    return out


def table_frame(rows: Sequence[dict], worst: dict[str, tuple[float | None, str | None]],
                flags: Sequence[Sequence[str]]) -> pd.DataFrame:
    """The comparison table as numbers (scaled for reading; NaN where a figure does not apply)."""
    recs = []
    for j, r in enumerate(rows):
        rec = {"run": r.get("name") or r["run_id"][:8],
               "method": r.get("method") or "", "format": FORMAT_LABELS.get(r.get("format"), r.get("format"))}
        vals = {**r, "worst_drop": None if j == 0 else worst.get(r["run_id"], (None, None))[0]}
        for col, (key, scale, _, _) in COLUMNS.items():
            v = _num(vals.get(key))
            rec[col] = math.nan if v is None else v * scale
        rec["flag"] = "; ".join(flags[j]) if j < len(flags) else ""
        rec["status"] = status_badge(r.get("status", ""))
        rec["id"] = r["run_id"]
        recs.append(rec)
    return pd.DataFrame(recs)


def best_cells(df: pd.DataFrame, *, finished: Sequence[bool] | None = None) -> dict[str, list[int]]:
    """Column -> row positions holding its best value (lowest latency, size, ECE...; highest
    accuracy, throughput), among finished rows; none when every row has the same value.
    Agreement is judged among the variants only (the original agrees with itself)."""
    finished = list(finished) if finished is not None else [True] * len(df)
    out = {}
    for col, (_, _, best, _) in COLUMNS.items():
        if best is None or col not in df:
            continue
        rows = [i for i in range(len(df)) if finished[i] and not pd.isna(df[col].iloc[i])
                and not (col in ("agreement %", "worst drop") and i == 0)]
        vals = [float(df[col].iloc[i]) for i in rows]
        if len(set(round(v, 9) for v in vals)) < 2:
            continue
        target = min(vals) if best == "min" else max(vals)
        out[col] = [i for i, v in zip(rows, vals) if abs(v - target) <= 1e-9 * max(1.0, abs(target))]
    return out


SPEED_COLUMNS = ["run", "method", "format", "size MB", "params", "MACs M", "sparsity %", "p50 ms",
                 "p95 ms", "img/s", "threads"]
ACCURACY_COLUMNS = ["run", "top-1 %", "balanced %", "head %", "medium %", "tail %", "ECE",
                    "agreement %", "worst drop", "flag", "status"]


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The numbers as text ("—" where a figure does not apply): the grid shows a missing number as
    "None" whatever the Styler says."""
    out = df.copy()
    for col, spec in COLUMNS.items():
        if col in out:
            out[col] = [("—" if pd.isna(v) else spec[3].format(v)) for v in df[col]]
    return out


def styled(df: pd.DataFrame, best: dict[str, list[int]], flags: Sequence[Sequence[str]]):
    """pandas Styler: flagged rows red, then the best value of each column green and bold."""
    fmt = {col: spec[3] for col, spec in COLUMNS.items() if col in df and df[col].dtype.kind in "fi"}
    sty = df.style.format(fmt, na_rep="—")
    flagged = [bool(f) for f in flags]
    sty = sty.apply(lambda row: [FLAG_CSS if flagged[row.name] else ""] * len(row), axis=1)
    for col, idx in best.items():
        sty = sty.apply(lambda s, idx=idx: [BEST_CSS if i in idx else "" for i in range(len(s))],
                        subset=[col], axis=0)
    return sty


def short_label(r: dict) -> str:
    """A point's label on the Pareto scatter: a few words from the method label."""
    import re

    kind, m = r.get("kind"), str(r.get("method") or r.get("kind") or "")
    if kind == "train" or m == "original":
        return "original"
    if kind == "prune":
        parts = [p.strip() for p in m.split(",")]
        amount = parts[1].split(" of")[0] if len(parts) > 1 else ""
        return f"{parts[0].replace(' magnitude', '').replace(' pruning', '')} {amount}".strip()
    if kind == "distil":
        into = re.search(r"into ([^,\s]+)", m)
        return f"distilled into {into.group(1)}" if into else "distilled"
    if kind == "export":
        return "ONNX fp32"
    return m.split(" (")[0].split(",")[0][:28]


# --- cached engine calls -------------------------------------------------------------------------

def _outputs_stamp(run_id: str) -> float:
    from engine import workspace
    p = Path(workspace.home()) / "runs" / run_id / "test_outputs.npz"  # no run_dir(): it creates folders
    return p.stat().st_mtime if p.is_file() else 0.0


@st.cache_data(show_spinner=False, max_entries=128)
def _damage(parent_id: str, child_id: str, stamps: tuple) -> dict | str:
    from engine.compress import measure
    try:
        return measure.damage(state.store(), parent_id, child_id)
    except (ValueError, FileNotFoundError, KeyError) as e:
        return str(e)


def damage(parent_id: str, child_id: str) -> dict | str:
    """measure.damage, cached until either run's test outputs change; a message when it fails."""
    return _damage(parent_id, child_id, (_outputs_stamp(parent_id), _outputs_stamp(child_id)))


def worst_drops(parent_id: str, rows: Sequence[dict]) -> dict[str, tuple[float | None, str | None]]:
    out = {}
    for r in rows[1:]:
        if r.get("status") != RunStatus.FINISHED:
            continue
        d = damage(parent_id, r["run_id"])
        if isinstance(d, dict):
            out[r["run_id"]] = (d["worst_class_drop_points"], d.get("worst_class"))
    return out


def compare_rows(store: Store, run_id: str) -> list[dict] | None:
    """measure.compare_rows (the original is timed on first use: seconds); None with a message
    when it cannot be measured."""
    from engine.compress import measure
    try:
        with st.spinner("Measuring the original and its variants (size, MACs, latency, test set) …"):
            return measure.compare_rows(store, run_id)
    except (ValueError, FileNotFoundError) as e:
        st.error(f"**This run cannot be measured:** {e}")
        return None


# --- blocks ----------------------------------------------------------------------------------------

def pick_run(runs: Sequence[Run]) -> Run:
    cands = candidates(runs)
    ids = [r.id for r in cands]
    by_id = {r.id: r for r in cands}
    if st.session_state.get("compress.run") not in by_id:
        st.session_state["compress.run"] = default_run(runs)
    run_id = st.selectbox(
        "Run to compress (default: the best finished training run by test balanced accuracy)", ids,
        key="compress.run",
        format_func=lambda i: " · ".join(x for x in (
            by_id[i].name, by_id[i].config.get("model") if by_id[i].config.get("model") != "auto" else None,
            f"test balanced {pct(by_id[i].latest.get('test/bal_acc'))}", i[:8]) if x))
    return by_id[run_id]


def _engine_error(what: str, e: Exception) -> None:
    st.error(f"**Cannot {what}:** {e}")


def _made(child: Run, parent: Run) -> None:
    """Toast after an in-process variant; the variant becomes the one 'What compression forgot' shows."""
    st.session_state[FOCUS_KEY] = child.id
    bal = _num(child.latest.get("test/bal_acc"))
    msg = f"✅ {child.name}: balanced accuracy {pct(bal)}"
    before, after = _num(parent.tags.get("size_bytes")), _num(child.tags.get("size_bytes"))
    if before and after and before / after >= 1.05:
        msg += f", {before / after:.1f}× smaller on disk"
    st.toast(msg)
    if child.tags.get("flag"):
        st.warning(f"**{child.name} is flagged:** {child.tags['flag']}. It is kept in the table, in red.")


def actions(store: Store, run: Run) -> None:
    """One tab per kind of variant; each makes a child run of ``run``."""
    from engine.compress import distil, prune, quantize
    from engine.compress.export import export_run
    from engine.models import list_models

    st.markdown("#### Make a variant")
    st.caption("Each variant is a new run listed under this one (Runs page), with its settings stored. "
               "Pruning and distillation train (live, below); int8 and ONNX take seconds.")
    tabs = st.tabs(["✂️ Structured pruning", "🕳️ Unstructured pruning", "🔢 int8 static", "⚡ int8 dynamic",
                    "🎓 Distillation", "📦 ONNX export"])
    epochs = int(run.config.get("epochs") or 3)
    with tabs[0], st.form("compress.structured", border=False):
        st.caption("Removes whole channels (with their BatchNorm and residual partners): the network "
                   "really gets smaller and faster. Then fine-tunes with this run's recipe.")
        c1, c2, c3 = st.columns(3)
        amount = c1.slider("Share to remove (%)", 5, 95, 50, 5, key="compress.st.amount")
        target = c2.radio("Measured as a share of", ["macs", "channels"], horizontal=True,
                          format_func={"macs": "MACs", "channels": "channels"}.get, key="compress.st.target")
        ft = c3.number_input("Fine-tuning epochs", 1, 1000, min(3, epochs), key="compress.st.epochs")
        if st.form_submit_button("✂️ Prune (structured) and fine-tune", key="compress.st.go"):
            try:
                child = prune.launch_prune(store, run.id, method="structured", amount=amount / 100,
                                           finetune_epochs=int(ft), target=target, dashboard=True)
                st.toast(f"Pruning started: {child.name}. It trains below.")
            except (ValueError, FileNotFoundError) as e:
                _engine_error("prune this run", e)
    with tabs[1], st.form("compress.unstructured", border=False):
        st.info("**Honest note:** " + prune.UNSTRUCTURED_NOTE[0].upper() + prune.UNSTRUCTURED_NOTE[1:] + ".",
                icon="ℹ️")
        c1, c2 = st.columns(2)
        amount = c1.slider("Share of weights set to zero (%)", 5, 95, 50, 5, key="compress.un.amount")
        ft = c2.number_input("Fine-tuning epochs", 1, 1000, min(3, epochs), key="compress.un.epochs")
        if st.form_submit_button("🕳️ Prune (unstructured) and fine-tune", key="compress.un.go"):
            try:
                child = prune.launch_prune(store, run.id, method="unstructured", amount=amount / 100,
                                           finetune_epochs=int(ft), dashboard=True)
                st.toast(f"Pruning started: {child.name}. It trains below.")
            except (ValueError, FileNotFoundError) as e:
                _engine_error("prune this run", e)
    with tabs[2], st.form("compress.int8", border=False):
        st.caption("ONNX Runtime static int8 (QDQ). Calibration images are drawn class-balanced from the "
                   f"training split. {quantize.cpu_vnni()[1]}. fp16 is not offered: ONNX Runtime's CPU "
                   "provider has no fp16 kernels.")
        c1, c2, c3 = st.columns(3)
        n = c1.number_input("Calibration images", 16, 5000, quantize.DEFAULT_CALIBRATION, 16,
                            key="compress.q.calibration")
        method = c2.selectbox("Calibration method", list(quantize.CALIBRATION_METHODS), key="compress.q.method",
                              format_func={"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}.get)
        per_channel = c3.checkbox("Per-channel weights", False, key="compress.q.per_channel",
                                  help="One scale per output channel: often more accurate, a little slower.")
        if st.form_submit_button("🔢 Quantize to int8 (static)", key="compress.q.go"):
            try:
                with st.spinner("Exporting, calibrating, quantizing and timing …"):
                    child = quantize.quantize_run(store, run.id, method="int8-static", calibration=int(n),
                                                  calibration_method=method, per_channel=per_channel)
                _made(child, store.get_run(run.id))
            except (ValueError, FileNotFoundError, RuntimeError) as e:
                _engine_error("quantize this run", e)
    with tabs[3], st.form("compress.dyn", border=False):
        st.caption("Weights of the linear layers to int8, activations quantized on the fly; convolutions "
                   "stay fp32. It pays on linear-heavy models; for CNNs static int8 is faster.")
        if st.form_submit_button("⚡ Quantize to int8 (dynamic)", key="compress.dq.go"):
            try:
                with st.spinner("Exporting, quantizing and timing …"):
                    child = quantize.quantize_run(store, run.id, method="int8-dynamic")
                _made(child, store.get_run(run.id))
            except (ValueError, FileNotFoundError, RuntimeError) as e:
                _engine_error("quantize this run", e)
    with tabs[4], st.form("compress.distil", border=False):
        st.caption("A student network learns from this run (the teacher): T²-scaled KL at temperature T, "
                   "mixed with this run's own long-tail loss on the labels by α.")
        models = {m.name: m.title for m in list_models()}
        c1, c2, c3, c4 = st.columns(4)
        student = c1.selectbox("Student model", list(models), format_func=models.get, key="compress.kd.student",
                               index=list(models).index("small_cnn") if "small_cnn" in models else 0)
        temperature = c2.number_input("Temperature T", 0.5, 20.0, 4.0, 0.5, key="compress.kd.t")
        alpha = c3.slider("α (weight of the teacher)", 0.0, 1.0, 0.5, 0.05, key="compress.kd.alpha")
        kd_epochs = c4.number_input("Epochs", 1, 1000, epochs, key="compress.kd.epochs")
        if st.form_submit_button("🎓 Distil into the student", key="compress.kd.go"):
            try:
                child = distil.launch_distil(store, run.id, student=student, temperature=float(temperature),
                                             alpha=float(alpha), epochs=int(kd_epochs), dashboard=True)
                st.toast(f"Distillation started: {child.name}. It trains below.")
            except (ValueError, FileNotFoundError) as e:
                _engine_error("distil this run", e)
    with tabs[5], st.form("compress.export", border=False):
        st.caption("ONNX fp32 with a dynamic batch axis, checked against the torch model on the whole test "
                   "split (top-1 agreement and largest logit difference); an export that disagrees is refused.")
        if st.form_submit_button("📦 Export to ONNX", key="compress.ex.go"):
            try:
                with st.spinner("Exporting and checking parity on the test split …"):
                    child = export_run(store, run.id)
                _made(child, store.get_run(run.id))
                st.toast(f"Parity: top-1 agreement {pct(_num(child.tags.get('parity_top1')))}, largest "
                         f"logit difference {child.tags.get('max_logit_diff', '?')}")
            except (ValueError, FileNotFoundError, RuntimeError) as e:
                _engine_error("export this run", e)


def _children(store: Store, run_id: str) -> list[Run]:
    return [r for r in store.list_runs() if r.parent_run_id == run_id and r.kind in VARIANT_KINDS]


def live(store: Store, run_id: str) -> None:
    """Pruned / distilled variants training now, updating themselves."""
    if any(k.status in RunStatus.ACTIVE for k in _children(store, run_id)):
        _live(run_id)


@st.fragment(run_every="2s")
def _live(run_id: str) -> None:
    from engine import jobs

    store = state.store()
    store.reap_stale()
    active = [k for k in _children(store, run_id) if k.status in RunStatus.ACTIVE]
    if not active:  # done: the whole page reruns, measures the new variants and shows the newest
        done = [k for k in _children(store, run_id) if k.status == RunStatus.FINISHED]
        if done:
            st.session_state[FOCUS_KEY] = max(done, key=lambda k: k.ended_at or k.created_at).id
        st.rerun(scope="app")
    st.markdown("#### Training now")
    for k in active:
        with st.container(border=True):
            c1, c2 = st.columns([5, 1])
            c1.markdown(f"**{k.name}** · {k.kind}")
            if c2.button("⏹ Cancel", key=f"compress.cancel.{k.id}"):
                jobs.cancel(store, k.id)
                st.toast("Cancel requested.")
            hist = views.history(store, k.id)
            views.progress_bar(k, hist)
            views.curves(k, hist)


def table(store: Store, run: Run, rows: list[dict]) -> tuple[float, dict]:
    """The comparison table, its CSV and the Pareto scatter; returns (guard in points, worst drops)."""
    st.markdown(f"#### Compare: **{run.name}** and its variants")
    c1, c2 = st.columns([1, 3])
    guard = c1.number_input("Guard: no class may lose more than (points)", 0.0, 100.0, 5.0, 0.5, key=GUARD_KEY,
                            help="Test recall of each class, variant against original. A variant "
                                 "breaking it is flagged red in the table, never hidden.")
    worst = worst_drops(run.id, rows)
    flags = row_flags(rows, worst, float(guard))
    df = table_frame(rows, worst, flags)
    best = best_cells(df, finished=[r.get("status") == RunStatus.FINISHED for r in rows])
    c2.caption("🟩 best value of each column (lowest size, latency, ECE, class drop; highest accuracy, "
               f"throughput, agreement). 🟥 flagged: a class lost more than the guard, or balanced accuracy "
               f"fell more than {COLLAPSE_POINTS:g} points. Latency: batch 1, throughput: batch 32, on CPU "
               "(torch eager for torch models, ONNX Runtime for ONNX ones). Head / medium / tail: test "
               "accuracy of the classes with many / some / few training images.")
    shown = display_frame(df)
    config = {c: st.column_config.Column(c, width=WIDTHS.get(c, 60), help=HELP.get(c), alignment="right")
              for c in COLUMNS}
    config.update({c: st.column_config.Column(c, width=WIDTHS[c], help=HELP.get(c))
                   for c in ("run", "method", "format", "flag", "status")})
    for title, cols, key in (("**Size and speed**", SPEED_COLUMNS, "compress.table.speed"),
                             ("**Accuracy on the test split**", ACCURACY_COLUMNS, "compress.table.accuracy")):
        st.markdown(title)
        st.dataframe(styled(shown[cols], {c: v for c, v in best.items() if c in cols}, flags), hide_index=True,
                     width="stretch", column_config={c: config[c] for c in cols if c in config}, key=key)
    kids = _children(store, run.id)
    notes = [f"🟥 **{r['name']}**: {'; '.join(f)}" for r, f in zip(rows, flags) if f]
    notes += [f"ℹ️ **{r['name']}**: {r['compress_note']}" for r in rows[1:] if r.get("compress_note")]
    cpu = next((k.tags["cpu_note"] for k in kids if k.tags.get("cpu_note")), None)
    if cpu:  # why int8 may be no faster than fp32 here
        notes.append(f"ℹ️ **int8 on this machine**: {cpu}.")
    notes += [f"❌ **{k.name}** {status_badge(k.status)}: {k.error or 'no message'}"
              for k in kids if k.status == RunStatus.FAILED]
    for n in notes:
        st.caption(n)
    csv = pd.DataFrame([{**r, "worst_class_drop_points": worst.get(r["run_id"], (None,))[0] if j else None,
                         "flags": "; ".join(flags[j])} for j, r in enumerate(rows)]).to_csv(index=False)
    st.download_button("⬇️ Download the table (CSV)", csv, file_name=f"compare-{run.id[:8]}.csv",
                       mime="text/csv", key="compress.csv")
    if len(rows) > 1:
        st.plotly_chart(charts.pareto_scatter(
            [short_label(r) for r in rows], [_num(r.get("latency_ms_p50")) for r in rows],
            [_num(r.get("bal_acc")) for r in rows], kinds=["original"] + [r.get("kind") for r in rows[1:]],
            flagged=[bool(f) for f in flags]), width="stretch", key="compress.pareto")
        st.caption("The dotted line joins the models nothing else beats on both speed and balanced accuracy "
                   "(the Pareto front); a red ring marks a flagged variant.")
    else:
        st.info("No variant yet: make one above, and it appears here next to the original.")
    return float(guard), worst


def _test_image(parent: Run, index: int):
    """The parent's test image ``index`` (test-split order) as uint8, or None."""
    from engine.config import data_config_from_dict
    from engine.data.io import open_image

    data = state.prepared(data_config_from_dict(parent.config["data"]))
    if parent.dataset_version_id and data.version_id != parent.dataset_version_id:
        return None
    s = data.splits["test"]
    if s.images is not None:
        return s.images[index]
    import numpy as np
    return np.asarray(open_image(Path(s.root) / s.paths[index]))


def _zoom(arr, side: int = 84):
    from PIL import Image
    img = Image.fromarray(arr)
    k = max(1, side // max(img.size))
    return img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST) if k > 1 else img


def forgot(store: Store, run: Run, rows: list[dict], guard: float, worst: dict) -> None:
    """Per-class recall change, change per group and the flipped test images of one variant."""
    done = [r for r in rows[1:] if r.get("status") == RunStatus.FINISHED]
    if not done:
        return
    st.markdown("#### What compression forgot")
    ids = [r["run_id"] for r in done]
    names = {r["run_id"]: f"{r['name']} · {r['method']}" for r in done}
    if st.session_state.get(FOCUS_KEY) not in ids:
        st.session_state[FOCUS_KEY] = ids[-1]
    vid = st.selectbox("Variant, against the original", ids, format_func=names.get, key=FOCUS_KEY)
    d = damage(run.id, vid)
    if isinstance(d, str):
        st.error(f"**Cannot compare this variant with the original:** {d}")
        return
    cols = st.columns(5)
    cols[0].metric("Agreement", pct(d["agreement"]),
                   help="Share of test images given the same class as the original.")
    cols[1].metric("Worst class drop", f"{d['worst_class_drop_points']:.1f} pts",
                   f"class {d['worst_class']}" if d.get("worst_class") else None, delta_color="inverse",
                   delta_arrow="down", help="The largest loss of test recall of one class, in points.")
    for col, g in zip(cols[2:], ("many", "medium", "few")):
        gd = d["groups"][g]
        if gd["change"] is None:
            col.metric(f"{charts.GROUP_LABELS[g].capitalize()} classes", "none",
                       help="No class of this group in the test split.")
        else:
            zero = round(gd["change"] * 100, 1) == 0
            col.metric(f"{charts.GROUP_LABELS[g].capitalize()} classes ({gd['classes']})", pct(gd["child"]),
                       "no change" if zero else f"{gd['change'] * 100:+.1f} pts", delta_color="off" if zero else "normal",
                       delta_arrow="off" if zero else "auto",
                       help=f"Mean test recall of the {charts.GROUP_LABELS[g]} classes; the original had "
                            f"{pct(gd['parent'])}.")
    if d["worst_class_drop_points"] > guard:
        st.error(f"**Guard broken:** class {d['worst_class']} lost {d['worst_class_drop_points']:.1f} points "
                 f"of test recall (the guard allows {guard:g}).")
    cl = d["classes"]
    st.plotly_chart(charts.recall_change([c["name"] for c in cl], [c["change"] for c in cl],
                                         [c["group"] for c in cl], [c["train_count"] for c in cl],
                                         guard_points=guard), width="stretch", key="compress.recall")
    gallery(run, d)


def gallery(run: Run, d: dict, limit: int = 24) -> None:
    flips = d["flipped"]
    lost = [f for f in flips if f["parent_pred"] == f["target"]]
    fixed = [f for f in flips if f["child_pred"] == f["target"]]
    other = [f for f in flips if f["target"] not in (f["parent_pred"], f["child_pred"])]
    st.markdown(f"**Test images whose prediction changed: {len(flips)}** of "
                f"{sum(c['support'] for c in d['classes']):,}")
    if not flips:
        st.caption("None: the variant gives every test image the class the original gave it.")
        return
    groups = {f"Lost: was right, now wrong ({len(lost)})": lost, f"Fixed: was wrong, now right ({len(fixed)})": fixed,
              f"Wrong both times, differently ({len(other)})": other}
    first = next((i for i, v in enumerate(groups.values()) if v), 0)  # the first kind with images
    pick = st.radio("Show", list(groups), index=first, horizontal=True, key="compress.flips",
                    label_visibility="collapsed")
    counts = {c["index"]: c["train_count"] for c in d["classes"]}
    shown = sorted(groups[pick], key=lambda f: (counts.get(f["target"], 0), f["index"]))[:limit]  # tail first
    if not shown:
        st.caption("None of this kind.")
        return
    try:
        images = [_test_image(run, f["index"]) for f in shown]
    except Exception as e:  # noqa: BLE001 — the gallery is a view; the numbers above stand
        st.caption(f"The test images cannot be shown: {e}")
        return
    per_row = 8
    for start in range(0, len(shown), per_row):
        cols = st.columns(per_row)
        for col, f, img in zip(cols, shown[start:start + per_row], images[start:start + per_row]):
            with col:
                if img is not None:
                    st.image(_zoom(img), width=84)
                ok = lambda p: "✓" if p == f["target"] else "✗"  # noqa: E731
                st.markdown(f"<small>true <b>{f['target_name']}</b><br>original {f['parent_pred_name']} "
                            f"{ok(f['parent_pred'])}<br>variant {f['child_pred_name']} {ok(f['child_pred'])}</small>",
                            unsafe_allow_html=True)
    if len(groups[pick]) > limit:
        st.caption(f"The first {limit} of {len(groups[pick])}, rarest classes first.")


def ship(store: Store, rows: list[dict]) -> None:
    """A deploy package (one zip: ONNX model, labels, preprocessing, model card, example) of an ONNX variant."""
    from engine.compress.package import build_package

    onnx = [r for r in rows[1:] if r.get("status") == RunStatus.FINISHED and str(r.get("format")).startswith("onnx")]
    if not onnx:
        return
    st.markdown("#### Ship a variant")
    c1, c2 = st.columns([3, 1])
    names = {r["run_id"]: f"{r['name']} · {FORMAT_LABELS.get(r['format'], r['format'])}" for r in onnx}
    vid = c1.selectbox("ONNX variant", list(names), format_func=names.get, key="compress.ship")
    c1.caption("One zip: model.onnx, labels.json, preprocessing.json, a model card and a 20-line example "
               "that needs only onnxruntime, numpy and Pillow (`taillab predict --package` reads it too).")
    if c2.button("📦 Build the package", key="compress.ship.go", width="stretch"):
        try:
            st.session_state["compress.package"] = (vid, build_package(store, vid)["package"])
        except (ValueError, FileNotFoundError) as e:
            _engine_error("build the package", e)
    made = st.session_state.get("compress.package")
    if made and made[0] == vid and Path(made[1]).is_file():
        c2.download_button("⬇️ Download the zip", Path(made[1]).read_bytes(), file_name=Path(made[1]).name,
                           mime="application/zip", key="compress.ship.dl", width="stretch")
