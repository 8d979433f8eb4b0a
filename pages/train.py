"""Train: settings -> one TrainConfig -> jobs.launch; then watch the run live."""
import dataclasses

import streamlit as st

from dashboard import augment_ui, runs_ui, state, train_ui, views
from dashboard.ui import status_badge
from engine import jobs
from engine.config import (DEVICES, EARLY_STOP_METRICS, OPTIMIZER_LABELS, OPTIMIZERS, PRECISIONS, ConfigError,
                           TrainConfig)
from engine.imbalance import SAMPLERS, list_losses
from engine.models import list_models
from engine.schedules import SCHEDULES
from engine.store import RunStatus

st.title("🏋️ Train")
store = state.store()
AUTO = "auto"
models = {m.name: m for m in list_models()}
losses = {l.name: l for l in list_losses()}
OPTIONS = {"train.model": [AUTO, *models], "train.opt": [AUTO, *OPTIMIZERS], "train.loss": [AUTO, *losses],
           "train.sampler": list(SAMPLERS), "train.sched": list(SCHEDULES), "train.channels": [AUTO, 1, 3],
           "train.device": list(DEVICES), "train.precision": list(PRECISIONS), "train.es_metric": list(EARLY_STOP_METRICS),
           "train.chlast": [None, True, False]}
OPT_LABELS = {AUTO: "Auto", **OPTIMIZER_LABELS, "sgd": "SGD (momentum 0.9)"}
clone = runs_ui.apply_clone(OPTIONS)  # "Clone settings into Train" on Runs: fills the widgets below once
data_cfg = state.current_data_config()
D = TrainConfig.__dataclass_fields__  # defaults come from the dataclass, not from this page
default = lambda name: D[name].default  # noqa: E731

st.caption(f"Dataset: **{data_cfg.source}**"
           + (f" · imbalance ratio {data_cfg.imbalance_ratio:g} · seed {data_cfg.seed}"
              if data_cfg.source.startswith("builtin:") else "")
           + " — change it on the **Data** page.")

augment_cfg = st.session_state.get("augment.config", {}) if clone is None else clone.augment

if clone is not None:
    runs_ui.clone_banner(clone)
with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    model = c1.selectbox("Model", OPTIONS["train.model"], key="train.model",
                         format_func=lambda n: "Auto (from the data)" if n == AUTO else models[n].title,
                         help="\n\n".join(f"**{m.label}**: {m.description}" for m in models.values()))
    epochs = c2.number_input("Epochs", 1, 1000, default("epochs"), key="train.epochs")
    batch_size = c3.number_input("Batch size", 1, 4096, None, key="train.batch", placeholder="auto",
                                 help="Empty: 128, or 64 / 32 on small training splits (at least 60 steps an epoch).")
    lr = c4.number_input("Learning rate", 1e-6, 10.0, None, format="%.4f", key="train.lr",
                         placeholder="auto", help="Empty: automatic (AdamW 0.002 from scratch, 0.0005 "
                                                  "when fine-tuning pretrained weights).")
    c1, c2, c3, c4 = st.columns(4)
    optimizer = c1.selectbox("Optimizer", OPTIONS["train.opt"], key="train.opt",
                             format_func=lambda o: OPT_LABELS.get(o, o))
    seed = c2.number_input("Seed", 0, 2**31 - 1, default("seed"), key="train.seed")
    loss = c3.selectbox("Loss", OPTIONS["train.loss"], key="train.loss",
                        format_func=lambda n: "Auto (from the imbalance)" if n == AUTO else losses[n].label,
                        help="\n\n".join(f"**{l.label}**: {l.description}" for l in losses.values()))
    sampler = c4.selectbox("Sampler", OPTIONS["train.sampler"], key="train.sampler",
                           help="\n\n".join(f"**{k}**: {v}" for k, v in SAMPLERS.items()))
    with st.expander("More settings: schedule, fine-tuning, early stopping, device, input"):
        more, extra, more_problem = train_ui.more_settings(model=model, optimizer=optimizer, models=models,
                                                           options=OPTIONS)
        params = {}
        spec = losses[loss].params if loss in losses else {}
        if spec:
            st.markdown(f"**{losses[loss].label} parameters**")
            cols = st.columns(max(1, len(spec)))
            for col, (p, v) in zip(cols, spec.items()):
                if isinstance(v, bool) or v is None:
                    continue
                if isinstance(v, (int, float)):
                    params[p] = col.number_input(p, value=float(v), format="%.4f", key=f"train.lp.{loss}.{p}")
                else:
                    params[p] = col.text_input(p, value=str(v), key=f"train.lp.{loss}.{p}")
    if clone is not None and clone.loss == loss:  # parameters without a widget (flags) come along
        params = {**clone.loss_params, **params}
    try:
        if more_problem:
            raise ConfigError(more_problem)
        # a clone carries the settings without a widget here (init_from, prune, distillation, ...)
        base = TrainConfig() if clone is None else dataclasses.replace(clone, num_workers=None, threads=None)
        cfg = dataclasses.replace(
            base, data=dataclasses.replace(data_cfg, image_size=extra["image_size"], channels=extra["channels"]),
            name=extra["name"], model=model, epochs=int(epochs), batch_size=None if batch_size is None else int(batch_size),
            lr=None if lr is None else float(lr), optimizer=optimizer, seed=int(seed), loss=loss,
            loss_params=params, sampler=sampler, augment=augment_cfg, **more)
        problem = None
    except (ConfigError, ValueError) as e:
        cfg, problem = None, str(e)
    if cfg is not None:
        views.auto_line(cfg)
    if clone is None:
        augment_ui.recipe_in_use_note(augment_cfg, st.session_state.get("augment.name"), state.class_names(data_cfg))
    else:
        st.caption(augment_ui.recipe_caption(augment_cfg, "the cloned run's recipe", hint=False)
                   + " — not the workspace's recipe in use (✖ Clear above goes back to it).")
    submitted = st.button("🚀 Train", type="primary", key="train.start")

if submitted:
    try:
        if problem:
            raise ConfigError(problem)
        run = jobs.launch(cfg, store, dashboard=True)
        st.session_state["train.run_id"] = run.id
        st.toast(f"Started run {run.name}")
    except (ConfigError, ValueError) as e:
        st.error(f"**Cannot start this run:** {e}")


@st.fragment(run_every="1.5s")
def live() -> None:
    store.reap_stale()
    run_id = st.session_state.get("train.run_id")
    if run_id is None:  # another tab or a restart: show what is training now, else the newest run
        recent = store.list_runs(limit=20, kind="train")
        active = [r for r in recent if r.status in RunStatus.ACTIVE]
        pick = active or recent
        run_id = pick[0].id if pick else None
    if run_id is None:
        st.info("No run yet. Choose settings above and press **Train**. Training runs in its own "
                "process: you can close this tab and come back.")
        return
    run = store.get_run(run_id)
    hist = views.history(store, run.id)
    top = st.columns([5, 1])
    top[0].subheader(f"{status_badge(run.status)} {run.name}")
    top[0].caption(f"run `{run.id}`")
    views.run_notes(run)
    if run.status in RunStatus.ACTIVE:
        if top[1].button("⏹ Cancel", key="train.cancel", width="stretch"):
            jobs.cancel(store, run.id)
            st.toast("Cancelling after the current step ...")
    views.progress_bar(run, hist, store)
    views.error_box(run)
    if "val/acc" in run.latest or "test/acc" in run.latest:
        views.headline(run, hist)
    views.curves(run, hist)
    views.per_class(store, run)  # validation bars each epoch while training, test bars at the end
    if run.status == RunStatus.FINISHED:
        st.success("Finished. Compare it with other runs on **Runs**, or try it on **Predict**.")


train_ui.queue(store)
live()
