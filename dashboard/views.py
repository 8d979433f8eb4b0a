"""Blocks of UI shared by pages: a run's progress, curves and per-class results."""
from __future__ import annotations

import math
from collections import defaultdict

import streamlit as st

from dashboard import charts, state
from dashboard.ui import duration, pct, status_badge
from engine import workspace
from engine.config import TrainConfig
from engine.data.sources import DataError
from engine.store import Run, RunStatus, Store

GROUP_SERIES = {"balanced": "val/bal_acc", "overall": "val/acc", "head": "val/many_acc",
                "medium": "val/medium_acc", "tail": "val/few_acc"}
SERIES_COLORS = {"balanced": "#222222", "overall": "#9D755D", "head": charts.GROUP_COLORS["many"],
                 "medium": charts.GROUP_COLORS["medium"], "tail": charts.GROUP_COLORS["few"]}


def history(store: Store, run_id: str) -> dict[str, tuple[list, list, list]]:
    """key -> (steps, epochs, values)."""
    out: dict[str, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
    for p in store.metric_history(run_id):
        s, e, v = out[p.key]
        s.append(p.step)
        e.append(p.epoch)
        v.append(p.value)
    return dict(out)


def progress_state(status: str, done: int, total: int | None, elapsed: float, *,
                   images_per_s: float | None = None, memory_mb: float | None = None,
                   waiting: int | None = None) -> tuple[float | None, str]:
    """(bar fraction, text) of a run's progress. The fraction is None while there is nothing to
    measure yet (waiting in the queue, starting, or preparing data before the first step): no
    empty 'step 0 / 0' bar. ``waiting``: the run's place in the job queue (1 = next)."""
    total = total or 0
    frac = min(1.0, done / total) if total else 0.0
    if status == RunStatus.QUEUED and waiting:
        return None, (f"🕒 Waiting in the queue: number {waiting} — it starts when a running run ends "
                      "(how many run at once, and the order: Train → Queue).")
    if status == RunStatus.QUEUED:
        return None, "⏳ Starting the worker process …"
    if status == RunStatus.RUNNING and (not total or done <= 0):
        return None, (f"⏳ Preparing: loading the data and the model; the first training step follows. "
                      f"Elapsed {duration(elapsed)}.")
    if status == RunStatus.RUNNING and frac < 1:
        eta = elapsed * (1 - frac) / frac
        extra = (f" · {images_per_s:,.0f} images/s" if images_per_s else "") + \
                (f" · {memory_mb:,.0f} MB in use" if memory_mb else "")
        return frac, (f"step {done:,} / {total:,} · {frac * 100:.0f}% · elapsed {duration(elapsed)} · "
                      f"ETA {duration(eta)}{extra}")
    if status == RunStatus.RUNNING:
        return 1.0, f"step {done:,} / {total:,} · evaluating · elapsed {duration(elapsed)}"
    frac = 1.0 if status == RunStatus.FINISHED else frac
    return frac, f"{status_badge(status)} after {duration(elapsed)}"


def progress_bar(run: Run, hist: dict, store: Store | None = None) -> None:
    steps = hist.get("train/step_loss", ([], [], []))[0]
    place = None
    if run.waiting and store is not None:
        place = next((i + 1 for i, r in enumerate(store.waiting_runs()) if r.id == run.id), None)
    frac, text = progress_state(run.status, steps[-1] if steps else 0, run.total_steps, run.duration_s or 0.0,
                                images_per_s=run.latest.get("sys/images_per_s"),
                                memory_mb=run.latest.get("sys/memory_mb"), waiting=place)
    if frac is None:
        st.info(text)
    else:
        st.progress(frac, text=text)


def curves(run: Run, hist: dict) -> None:
    if run.kind == "posthoc":  # one evaluation of corrected logits: no steps, no epochs, no curves
        st.info("**No training curves:** this post-hoc run trained nothing. It corrects the parent "
                "run's outputs after training; see the before / after table below for what it changed.")
        return
    step = hist.get("train/step_loss")
    c1, c2 = st.columns(2)
    with c1:
        if step:
            st.plotly_chart(charts.step_loss(step[0], step[2]), width="stretch")
        else:
            st.caption("The training-loss curve appears after the first steps.")
        lr = hist.get("train/lr")
        if lr and len(lr[0]) > 1:
            st.plotly_chart(charts.lr_curve(lr[0], lr[2]), width="stretch")
    with c2:
        series = {label: (hist[k][1], hist[k][2]) for label, k in
                  (("train", "train/loss"), ("val", "val/loss")) if k in hist}
        if series:
            st.plotly_chart(charts.epoch_curves(series, title="Loss per epoch", y_title="loss",
                                                colors={"train": "#4C78A8", "val": "#72B7B2"}),
                            width="stretch")
        else:
            st.caption("Epoch curves appear after the first epoch.")
    series = {label: (hist[k][1], hist[k][2]) for label, k in GROUP_SERIES.items() if k in hist}
    if series:
        st.plotly_chart(charts.epoch_curves(series, title="Validation accuracy: overall, balanced, head / medium / tail",
                                            y_title="accuracy (%)", percent=True, colors=SERIES_COLORS),
                        width="stretch")


# short labels: five metrics side by side must not be cut off; the split is said above them
HEADLINE = (("Accuracy", "acc"), ("Balanced acc.", "bal_acc"), ("Head acc.", "many_acc"),
            ("Medium acc.", "medium_acc"), ("Tail acc.", "few_acc"))


def headline_items(latest: dict, status: str, epoch: float | None = None,
                   epochs: int | None = None) -> tuple[str, list[tuple[str, float | None]]]:
    """(which split the figures come from, [(short label, value)]). Test figures exist only after
    the last epoch; until then the figures are validation ones, and the heading says so."""
    if "test/acc" in latest:
        where = "**Test set** · measured once, after the last epoch"
        prefix = "test/"
    else:
        where = "**Validation set** · " + (f"epoch {epoch:g}" + (f" of {epochs}" if epochs else "")
                                           if epoch is not None and not math.isnan(epoch) else "latest epoch")
        if status in RunStatus.ACTIVE:
            where += "; test figures replace these when training ends"
        prefix = "val/"
    return where, [(label, latest.get(prefix + key)) for label, key in HEADLINE]


def headline(run: Run, hist: dict | None = None) -> None:
    val = (hist or {}).get("val/acc")
    where, items = headline_items(run.latest, run.status, val[1][-1] if val and val[1] else None,
                                  run.config.get("epochs"))
    st.markdown(where)
    for col, (label, value) in zip(st.columns(len(items)), items):
        col.metric(label, pct(value))


def run_notes(run: Run) -> None:
    """What auto resolved to for this run and what was decided about its data (splits, the
    decode cache, validation on a subset), as the worker recorded them."""
    import json

    lines = [f"🪄 Auto: {run.tags['auto']}"] if run.tags.get("auto") else []
    try:
        lines += [f"Data: {'; '.join(json.loads(run.tags['data_notes']))}."] if run.tags.get("data_notes") else []
    except ValueError:
        pass
    for line in lines:
        st.caption(line)


def auto_line(cfg: TrainConfig) -> None:
    """What the settings left at auto resolve to for this dataset, and what was decided about
    the data (splits, decoding), before anything is launched; a data problem in red."""
    from engine.defaults import resolve

    try:
        plan = state.data_plan(cfg.data)
    except DataError as e:
        st.error(f"**This dataset cannot be trained on:** {e}")
        return
    if cfg.auto_fields:
        st.markdown(f"🪄 **Auto:** {resolve(cfg, plan.profile, dashboard=True).summary}")
    if plan.notes:
        st.caption("Data: " + "; ".join(plan.notes) + ".")


def has_checkpoint(run_id: str) -> bool:
    folder = workspace.best_checkpoint(run_id).parent  # not run_dir(): that creates the folder
    return folder.is_dir() and any(folder.glob("*.pt"))


def error_box(run: Run) -> None:
    if run.status == RunStatus.FAILED:
        st.error(f"**This run failed.** {run.error or 'No message was recorded.'}")
    elif run.status == RunStatus.CANCELLED:
        if has_checkpoint(run.id):
            st.warning("This run was cancelled. Its checkpoints up to the last finished epoch are kept.")
        else:
            st.warning("This run was cancelled before its first epoch finished: no checkpoint was written.")


def per_class(store: Store, run: Run) -> None:
    """Per-class test accuracy; while training (no test figures yet), the latest epoch's per-class
    validation accuracy, redrawn each epoch, head to tail."""
    rows, split = store.class_results(run.id, "test"), "test"
    if not rows:
        rows, split = store.class_results(run.id, "val_epoch"), "validation"
    if not rows:
        return
    st.plotly_chart(charts.per_class_accuracy([r.class_name for r in rows], [r.accuracy for r in rows],
                                              [r.group for r in rows], [r.train_count for r in rows], split=split),
                    width="stretch")


COMPARE_METRICS = {"overall": "test/acc", "balanced": "test/bal_acc", "head": "test/many_acc",
                   "medium": "test/medium_acc", "tail": "test/few_acc"}


def dataset_label(run: Run) -> str:
    """What a run was trained on: its dataset version (short id) and the data source."""
    src = (run.config.get("data") or {}).get("source", "")
    return f"{src} · {run.dataset_version_id[:8]}" if run.dataset_version_id else src


def mixed_datasets(runs: list[Run]) -> bool:
    """True when the runs were not all trained on the same dataset (version id, else source)."""
    return len({r.dataset_version_id or (r.config.get("data") or {}).get("source", "") for r in runs}) > 1


def compare(runs: list[Run]) -> None:
    """A glance at a selection: test accuracy per class group, and what each run was. The
    Compare page has the rest (curves, settings diff, per-class deltas, seed groups)."""
    if mixed_datasets(runs):
        st.warning("**These runs were trained on different datasets** (see the dataset column): "
                   "their accuracies are measured on different test sets and do not compare directly.")
    names = [f"{r.name} · {r.id[:6]}" for r in runs]
    values = {label: [r.latest.get(key) for r in runs] for label, key in COMPARE_METRICS.items()}
    st.plotly_chart(charts.group_comparison(names, values), width="stretch")
    rows = [{"run": n, "dataset": dataset_label(r), **{k: pct(v[i]) for k, v in values.items()},
             "loss": r.config.get("loss"), "sampler": r.config.get("sampler"),
             "epochs": r.config.get("epochs"), "model": r.config.get("model")}
            for i, (n, r) in enumerate(zip(names, runs))]
    st.dataframe(rows, hide_index=True, width="stretch")


def augment_caption(store: Store, run: Run) -> str:
    """The run's augmentation recipe; a post-hoc child trained nothing, so its parent's is shown."""
    from dashboard import augment_ui
    recipe = run.config.get("augment")
    if recipe is None and run.parent_run_id:
        try:
            parent = store.get_run(run.parent_run_id)
        except Exception:  # noqa: BLE001 — the parent may have been deleted
            parent = None
        if parent is not None and parent.config.get("augment") is not None:
            return (augment_ui.recipe_caption(parent.config.get("augment"), hint=False)
                    + f" — parent run **{parent.name}**'s recipe; this run trained nothing itself.")
    return augment_ui.recipe_caption(recipe, hint=False)


def table_key() -> str:
    """The runs table's widget key; a new key after a delete starts with nothing selected."""
    return f"runs.table.{st.session_state.get('runs.table_gen', 0)}"


def delete_control(store: Store, run: Run, slot) -> None:
    """Two steps: 'Delete run' asks first, naming the run and what is removed; after the delete
    the table comes back with nothing selected (no other run's Delete button under the mouse)."""
    from engine import jobs
    pending = st.session_state.get("runs.delete_pending") == run.id
    if not pending:
        if slot.button("🗑 Delete run", key="runs.delete"):
            st.session_state["runs.delete_pending"] = run.id
            st.rerun()
        return
    st.warning(f"**Delete run “{run.name}”** (`{run.id}`)? Its metrics, checkpoints and files are "
               "removed from the workspace. This cannot be undone.")
    c1, c2, _ = st.columns([1, 1, 2])
    if c1.button("Keep it", key="runs.delete.keep", width="stretch"):
        st.session_state.pop("runs.delete_pending", None)
        st.rerun()
    if c2.button("Yes, delete it", key="runs.delete.confirm", type="primary", width="stretch"):
        jobs.delete(store, run.id)
        st.session_state.pop("runs.delete_pending", None)
        st.session_state["runs.table_gen"] = st.session_state.get("runs.table_gen", 0) + 1
        st.session_state["runs.flash"] = f"Deleted run {run.name}."
        st.rerun()
