"""The second head of a multi-task run (engine.multitask) on the Runs page: its test figures next to
the main classifier's, and per value of the second label when the worker stored them.

Reads only the store (and, for an older run without the ``aux_task`` tag, the dataset version's
manifest JSON for the task's name): no torch."""
from __future__ import annotations

import json
import math

import streamlit as st

from dashboard.ui import pct
from engine.store import Run, Store

AUX_SPLIT = "test_aux"  # engine.multitask.AUX_SPLIT (not imported: that module loads torch)
AUX_TAG = "aux_task"  # engine.multitask.AUX_TAG


def task_name(run: Run) -> str:
    """The second label's name: the run's ``aux_task`` tag, else its dataset version's manifest."""
    if run.tags.get(AUX_TAG):
        return run.tags[AUX_TAG]
    if run.dataset_version_id:
        from engine.data.manifest import manifests_dir
        try:
            path = manifests_dir() / f"{run.dataset_version_id[:16]}.json"
            return json.loads(path.read_text(encoding="utf-8")).get("aux_name") or ""
        except (OSError, ValueError):
            return ""
    return ""


def has_aux(run: Run) -> bool:
    return run.latest.get("test/aux_acc") is not None or run.latest.get("val/aux_acc") is not None


def value_rows(results) -> list[dict]:
    """One row per value of the second label (pandas-free): test images, right, recall (None
    without test images)."""
    return [{"value": r.class_name, "train images": r.train_count, "test images": r.support,
             "right": r.correct, "recall": None if not r.support else 100.0 * r.correct / r.support}
            for r in results]


def aux_results(store: Store, run: Run) -> bool:
    """The second head's figures of a multi-task run; nothing (False) for a single-task run."""
    if not has_aux(run):
        return False
    name = task_name(run) or "second label"
    finished = run.status == "finished" and run.latest.get("test/aux_acc") is not None
    with st.container(border=True):
        st.markdown(f"**🔀 Second head: {name}**")
        weight = run.config.get("aux_loss_weight")
        weight = weight if isinstance(weight, (int, float)) else 0.5  # engine.multitask.AUX_LOSS_WEIGHT
        st.caption(f"This run is multi-task: besides the class, a second head on the same features learned "
                   f"the CSV column **{name}** (loss = main + {weight:g} × its cross-entropy). "
                   + ("Its figures on the test split:" if finished else
                      "Test figures come when the run finishes; validation so far:"))
        cols = st.columns(3)
        if finished:
            cols[0].metric("Test accuracy", pct(run.latest.get("test/aux_acc")),
                           help="Share of test images whose second label the second head got right.")
            cols[1].metric("Test balanced accuracy", pct(run.latest.get("test/aux_bal_acc")),
                           help="Mean over the second label's values of the share got right "
                                "(each value counts the same, however rare).")
        cols[2 if finished else 0].metric(
            "Validation balanced accuracy", pct(run.latest.get("val/aux_bal_acc")),
            help="At the last epoch (model selection uses the main head's validation balanced accuracy).")
        rows = value_rows(store.class_results(run.id, AUX_SPLIT)) if finished else []
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch", column_config={
                "value": st.column_config.TextColumn(name),
                "recall": st.column_config.ProgressColumn("recall", format="%.1f%%", min_value=0,
                                                          max_value=100),
            })
        known = [r for r in rows if r["recall"] is not None and not math.isnan(r["recall"])]
        if len(known) > 1 and min(r["recall"] for r in known) < max(r["recall"] for r in known):
            w = min(known, key=lambda r: r["recall"])
            st.caption(f"Weakest value: **{w['value']}**, {w['recall']:.1f}% of its {w['test images']} "
                       f"test images ({w['train images']:,} training images).")
    return True
