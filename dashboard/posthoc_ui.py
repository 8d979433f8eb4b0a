"""Runs page blocks: correct a finished run's head bias (post-hoc logit adjustment,
tau-normalisation, cRT) and compare the resulting child runs with it, before / after."""
from __future__ import annotations

import streamlit as st

from dashboard.ui import pct, status_badge
from engine import posthoc
from engine.config import ConfigError
from engine.store import Run, RunStatus, Store

KINDS_WITH_CHILDREN = ("train", "crt")  # runs with a checkpoint to start from


def family_order(runs: list[Run]) -> list[Run]:
    """``runs`` (newest first) with each run's children right after it, oldest child first."""
    ids = {r.id for r in runs}
    kids: dict[str, list[Run]] = {}
    for r in runs:
        if r.parent_run_id in ids:
            kids.setdefault(r.parent_run_id, []).append(r)
    out: list[Run] = []

    def add(r: Run) -> None:
        out.append(r)
        for k in reversed(kids.get(r.id, [])):
            add(k)

    for r in runs:
        if r.parent_run_id not in ids:
            add(r)
    return out


def methods(store: Store, run: Run) -> None:
    """Three buttons for a finished run; post-hoc results appear at once, cRT trains live."""
    if run.status != RunStatus.FINISHED or run.kind not in KINDS_WITH_CHILDREN:
        return
    st.markdown("#### ⚖️ Correct the head bias of this run")
    st.caption("Post-hoc methods re-train nothing and take seconds: τ is chosen "
               "on the validation split for balanced accuracy, then applied to test. cRT re-trains "
               "only the last layer on the frozen backbone with class-balanced sampling. Each "
               "result is a new run listed under this one.")
    c1, c2, c3 = st.columns(3)
    try:
        if c1.button("Post-hoc logit adjustment", key="runs.posthoc.la", width="stretch",
                     help=posthoc.METHODS["logit_adjust"]):
            with st.spinner("Tuning τ on validation ..."):
                _toast(posthoc.apply_posthoc(store, run.id, "logit_adjust"))
        if c2.button("τ-normalisation", key="runs.posthoc.tau_norm", width="stretch",
                     help=posthoc.METHODS["tau_norm"]):
            with st.spinner("Tuning τ on validation ..."):
                _toast(posthoc.apply_posthoc(store, run.id, "tau_norm"))
        crt = c3.button("cRT (re-train classifier, balanced)", key="runs.crt", width="stretch",
                        help="Classifier re-training (Kang et al. 2020): frozen backbone, fresh last "
                             "layer, class-balanced sampler, plain cross-entropy.")
        epochs = c3.number_input("cRT epochs", 1, 1000, posthoc.CRT_EPOCHS, key="runs.crt.epochs")
        if crt:
            child = posthoc.launch_crt(store, run.id, epochs=int(epochs), dashboard=True)
            st.session_state["runs.flash"] = f"cRT started: {child.name}"
            st.rerun()  # the runs table lists the new child run
    except (ConfigError, ValueError, FileNotFoundError) as e:
        st.error(f"**Cannot apply this method:** {e}")


def _toast(res: posthoc.PosthocResult) -> None:
    """Say the result after a rerun, so the runs table above lists the new child run at once."""
    b, a = res.before["test"]["bal_acc"], res.after["test"]["bal_acc"]
    st.session_state["runs.flash"] = f"τ = {res.tau:g}: test balanced accuracy {pct(b)} → {pct(a)}"
    st.rerun()


def comparison(store: Store, run: Run) -> None:
    """Before / after table of the run's family (its parent or itself, and the children);
    refreshes itself while a cRT child trains."""
    root, kids = posthoc.family(store, run.id)
    if not kids:
        return
    if any(k.status in RunStatus.ACTIVE for k in kids):
        _live_comparison(store, run.id)
    else:
        _comparison_table(root, kids)


@st.fragment(run_every="2s")
def _live_comparison(store: Store, run_id: str) -> None:
    store.reap_stale()
    root, kids = posthoc.family(store, run_id)
    if not any(k.status in RunStatus.ACTIVE for k in kids):
        st.rerun(scope="app")  # a child ended: the runs table and this run's page catch up
    _comparison_table(root, kids)


def _comparison_table(root: Run, kids: list[Run]) -> None:
    st.markdown(f"#### Before / after: **{root.name}** and the runs derived from it")
    rows = posthoc.comparison_rows(root, kids)
    st.dataframe([{
        "run": r["run"], "method": r["method"], "status": status_badge(r["status"]),
        "τ": r["tau"] or "", "overall": pct(r["acc"]), "balanced": pct(r["bal_acc"]),
        "head": pct(r["many_acc"]), "medium": pct(r["medium_acc"]), "tail": pct(r["few_acc"]),
        "Δ balanced": "" if r["delta_bal_acc"] is None else f"{r['delta_bal_acc'] * 100:+.1f} pts",
    } for r in rows], hide_index=True, width="stretch", key=f"runs.family.{root.id}")
    st.caption("Test accuracy. Head / medium / tail: classes with more than / between / fewer than "
               "the dataset's head and tail thresholds of training images.")
