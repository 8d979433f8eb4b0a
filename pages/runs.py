"""Runs: search, filter, sort and page through every run; pick one for its details (rename, notes,
tags, star, clone into Train, delete), several to compare or export them."""
import json

import streamlit as st

from dashboard import eval_ui, multitask_ui, posthoc_ui, runs_ui, state, views
from dashboard.ui import duration, guard, status_badge, when
from engine import jobs
from engine.store import RunQuery, RunStatus

st.title("📈 Runs")
store = state.store()
if "runs.flash" in st.session_state:  # a message from the run before the last rerun (delete, post-hoc)
    st.toast(st.session_state.pop("runs.flash"))
guard(store.query_runs(RunQuery(limit=1)).total > 0,
      "No runs yet. Start one on **Train** (or `taillab train` in a shell).")

query, clear_slot = runs_ui.filters(store)
res, page, pages = runs_ui.page_query(store, query)
runs_ui.clear_button(clear_slot, res.total)
if not res.total:
    st.stop()
runs = runs_ui.ordered(res.runs, query)
key = views.table_key()
event = st.dataframe(runs_ui.table(runs), hide_index=True, width="stretch", on_select="rerun",
                     selection_mode="multi-row", key=key, column_config=runs_ui.COLUMNS,
                     height=38 + 35 * min(len(runs), 15))
chosen = runs_ui.selection(event, runs, key)
if chosen is None:  # the rows moved under the selection: start again with nothing selected
    st.rerun()
bar = st.columns([0.5, 2, 0.5, 2.5, 2], vertical_alignment="center")
runs_ui.pager(bar[0], bar[1], bar[2], page, pages, res.total)
runs_ui.compare_link(chosen, bar[3])
runs_ui.export_buttons(bar[4], store, chosen, query, res.total)
guard(bool(chosen), "Select a run for its details (rename, notes, tags, clone, delete), or several to "
                    "compare or export them. Export without a selection takes every filtered run.")
if len(chosen) > 1:
    st.subheader(f"{len(chosen)} runs selected")
    views.compare(chosen)
    st.stop()
run = chosen[0]

st.subheader(f"{status_badge(run.status)} {'⭐ ' if run.starred else ''}{run.name}")
st.caption(f"run `{run.id}` · created {when(run.created_at)} · duration {duration(run.duration_s)}"
           + (f" · dataset version `{run.dataset_version_id[:12]}`" if run.dataset_version_id else "")
           + (f" · tags: {', '.join(run.labels)}" if run.labels else ""))
if run.notes:
    st.markdown(f"📝 {run.notes}")
actions = st.columns([1, 1.6, 1.2, 2.2], vertical_alignment="center")
runs_ui.star_toggle(store, run, actions[0])
runs_ui.clone_button(run, actions[1])
if run.status in RunStatus.ACTIVE and actions[2].button("⏹ Cancel run", key="runs.cancel", width="stretch"):
    jobs.cancel(store, run.id)
    st.toast("Cancel requested.")
if run.status in RunStatus.ENDED:
    views.delete_control(store, run, actions[2])
if run.status in (RunStatus.FAILED, RunStatus.CANCELLED) and views.has_checkpoint(run.id) \
        and actions[3].button("▶ Resume", key="runs.resume", help="Continue from the last finished epoch's "
                              "checkpoint: model, optimizer, schedule and random state; the curves go on "
                              "from there (`taillab runs resume ID`)."):
    from engine.train import ResumeError
    try:
        r = jobs.resume(store, run.id)
        st.session_state["runs.flash"] = f"Resuming {run.name}" + (" (waiting in the queue)." if r.waiting else ".")
        st.rerun()
    except (ResumeError, ValueError) as e:
        st.error(f"**Cannot resume this run:** {e}")
runs_ui.edit(store, run)

st.caption(views.augment_caption(store, run))
views.error_box(run)
hist = views.history(store, run.id)
if run.status in RunStatus.ACTIVE:
    views.progress_bar(run, hist, store)
views.headline(run, hist)
views.curves(run, hist)
views.per_class(store, run)
eval_ui.evaluation(store, run)
multitask_ui.aux_results(store, run)
posthoc_ui.methods(store, run)
posthoc_ui.comparison(store, run)

with st.expander("Configuration (reproduces this run: `taillab train --config run.toml`)"):
    from engine.config import to_toml, train_config_from_dict
    try:
        st.code(to_toml(train_config_from_dict(run.config)), language="toml")
    except Exception:  # noqa: BLE001 — an old config still shows as JSON
        st.code(json.dumps(run.config, indent=2), language="json")
