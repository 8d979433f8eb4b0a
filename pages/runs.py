"""Runs: every run, newest first; pick one to see its curves and per-class accuracy."""
import json

import streamlit as st

from dashboard import eval_ui, posthoc_ui, state, views
from dashboard.ui import duration, guard, status_badge, when
from engine import jobs
from engine.store import RunStatus

st.title("📈 Runs")
store = state.store()
runs = posthoc_ui.family_order(store.list_runs())  # derived runs right under their parent
guard(bool(runs), "No runs yet. Start one on **Train** (or `taillab train` in a shell).")

if "runs.flash" in st.session_state:  # a message from the run before the last rerun (delete, post-hoc)
    st.toast(st.session_state.pop("runs.flash"))

st.caption("Select one run for its details, or several to compare them.")
event = st.dataframe(views.runs_table(runs), hide_index=True, width="stretch", on_select="rerun",
                     selection_mode="multi-row", key=views.table_key())
rows = event.selection.rows if event and event.selection else []
guard(bool(rows), "Select a run in the table to see its curves and per-class accuracy, "
                  "or several runs to compare them by head / medium / tail accuracy.")
if len(rows) > 1:
    st.subheader(f"Comparing {len(rows)} runs")
    views.compare(store, [runs[i] for i in rows])
    st.stop()
run = runs[rows[0]]

st.subheader(f"{status_badge(run.status)} {run.name}")
st.caption(f"run `{run.id}` · created {when(run.created_at)} · duration {duration(run.duration_s)}"
           + (f" · dataset version `{run.dataset_version_id[:12]}`" if run.dataset_version_id else ""))
st.caption(views.augment_caption(store, run))
views.error_box(run)
hist = views.history(store, run.id)
if run.status in RunStatus.ACTIVE:
    views.progress_bar(run, hist)
views.headline(run, hist)
views.curves(run, hist)
views.per_class(store, run)
eval_ui.evaluation(store, run)
posthoc_ui.methods(store, run)
posthoc_ui.comparison(store, run)

with st.expander("Configuration (reproduces this run: `taillab train --config run.toml`)"):
    from engine.config import to_toml, train_config_from_dict
    try:
        st.code(to_toml(train_config_from_dict(run.config)), language="toml")
    except Exception:  # noqa: BLE001 — an old config still shows as JSON
        st.code(json.dumps(run.config, indent=2), language="json")

c1, c2 = st.columns(2)
if run.status in RunStatus.ACTIVE and c1.button("⏹ Cancel run", key="runs.cancel"):
    jobs.cancel(store, run.id)
    st.toast("Cancel requested.")
if run.status in RunStatus.ENDED:
    views.delete_control(store, run, c2)
