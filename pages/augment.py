"""Augment & balance: build the training augmentation recipe with a live preview; see the class
weights and sampling rates of the long-tail methods before training."""
import streamlit as st

from dashboard import augment_ui as ui, charts, state
from engine.augment import AugmentConfig, describe, label_warnings, validate_for_training
from engine.config import ConfigError, TrainConfig
from engine.defaults import auto_batch_size

st.title("🎨 Augment & balance")
st.caption("Augmentation changes every training image a little, at random, each time the model sees "
           "it, so tail classes with a handful of images are not simply memorised. Validation, test "
           "and Predict always use the evaluation view.")

store = state.store()
data_cfg = state.current_data_config()
try:
    data = state.prepared(data_cfg)
except Exception as e:  # noqa: BLE001 — shown, never a stack trace in the user's face
    st.error(f"**The dataset cannot be loaded:** {e} Choose another one on **Data**.")
    st.stop()
counts, groups, spec = data.counts("train"), data.groups(), data.eval_spec
batch_size = TrainConfig.__dataclass_fields__["batch_size"].default or auto_batch_size(sum(counts))

saved = store.recipes()
options = ui.start_options(saved)
ui.ensure_state(options)

st.subheader("Augmentation recipe")
left, right = st.columns([5, 7], gap="large")
with left:
    with st.container(border=True):
        ui.editor(options, data_cfg.few_threshold)

    cfg, problem, warnings = None, None, []
    try:
        cfg = ui.recipe_from_state()
        warnings = validate_for_training(cfg, batch_size=batch_size, input_size=spec.size,
                                         image_size=spec.size, channels=spec.channels)
    except ConfigError as e:
        cfg, problem = None, str(e)

    if problem:
        with st.container(border=True):
            st.markdown(f"❌ **Not usable** (see the message beside it). Training keeps using: "
                        f"**{st.session_state.get(ui.NAME_KEY, 'none')}**")
    else:
        start = st.session_state[ui.START_KEY]
        st.session_state[ui.LAST_START_KEY] = start
        base_name, base = options[start]
        name = base_name if AugmentConfig.from_dict(base) == cfg else f"{base_name} (modified)"
        ui.apply_if_changed(cfg, name, start)  # the workspace's recipe in use: every tab trains with it
        st.session_state[ui.ACTIVE_KEY], st.session_state[ui.NAME_KEY] = cfg.to_dict(), name
        for w in warnings:
            st.warning(w)
        for w in label_warnings(cfg, data.class_names):
            st.warning(f"⚠️ **Can change labels here.** {w}")
        if cfg.batch_mix:
            st.info(f"MixUp/CutMix make soft labels: train with {ui.soft_target_losses()} "
                    "(the other losses need hard labels), batch size 2 or more.")
        with st.container(border=True):
            st.markdown(f"✅ **Training will use: {name}** (saved in the workspace: every tab and session "
                        "trains with it)")
            st.markdown("  \n".join(f"· {line}" for line in describe(cfg)))

    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.text_input("Save as", key="augment.save_name", placeholder="recipe name, e.g. digits-light")
    c2.button("💾 Save", key="augment.save", on_click=ui.save, args=(store,), disabled=problem is not None,
              width="stretch")
    if msg := st.session_state.pop("augment.save_error", None):
        st.error(msg)
    if msg := st.session_state.pop("augment.saved", None):
        st.toast(msg)

with right:
    names = data.class_names
    rarest = sorted(range(len(counts)), key=lambda c: counts[c])
    tail = [c for c in rarest if groups[c] == "few"]
    default = tail[:4] if len(tail) >= 2 else rarest[:3]
    p1, p2, p3 = st.columns([3, 1, 1])
    chosen = p1.multiselect("Classes to preview", list(range(len(names))), default=default,
                            format_func=lambda c: f"{names[c]} ({counts[c]:,} · {charts.GROUP_LABELS[groups[c]]})",
                            key=f"augment.classes.{data.version_id[:12]}",
                            help="Tail classes by default: they are the ones augmentation is for.")
    n = p2.number_input("Views", 1, 8, 4, key="augment.n")
    seed = p3.number_input("Seed", 0, 2**31 - 1, 0, key="augment.seed",
                           help="The same seed shows the same views; change it for new ones.")
    if problem:
        st.error("**This recipe cannot be used; fix it to see the preview.**\n\n"
                 + "\n\n".join(problem.splitlines()))
    elif not chosen:
        st.info("Choose at least one class to preview.")
    else:
        images, labels = ui.pick_images(data, chosen, per_class=2 if len(chosen) < 3 else 1)
        with st.container(border=True):
            st.caption(f"Each row: one training image as it is, as evaluation sees it ({spec.size} px), "
                       f"and {n} random training views of it.")
            ui.preview_grid(cfg, data, images, labels, n=int(n), seed=int(seed))
        if cfg.batch_mix:
            with st.container(border=True):
                st.markdown("**Batch mixing** · each image mixed with the next one in the batch; "
                            "its label becomes the soft label below the image.")
                if len(images) < 2:  # a partner from the largest class
                    extra_images, extra_labels = ui.pick_images(data, [rarest[-1]], per_class=1)
                    images, labels = images + extra_images, labels + extra_labels
                ui.mix_preview(cfg, data, images, labels, seed=int(seed))

st.divider()
st.subheader("Class weights and sampling")
st.caption("Two ways to give tail classes more say before training: weight their loss, or draw "
           "their images more often. Choose the loss and sampler of a run on **Train**.")
w_col, s_col = st.columns(2, gap="large")
with w_col:
    st.markdown("**Loss weights**")
    ui.weights_block(data)
with s_col:
    st.markdown("**Sampling**")
    ui.sampling_block(data, TrainConfig.__dataclass_fields__["epochs"].default)
