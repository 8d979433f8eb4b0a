"""Blocks of the Augment & balance page: the recipe editor, the preview grid, the balance charts.

The recipe editor keeps one widget per ``AugmentConfig`` field under ``augment.main.<field>`` (and
``augment.tail.<field>`` for the tail recipe). Widgets are seeded through session state, never
with ``value=``, so a preset or a saved recipe can be loaded into them by a callback, and they come
back from the active recipe (``augment.config``) after a page switch.
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import streamlit as st

from dashboard import charts
from dashboard.state import RECIPE_KEY, RECIPE_NAME_KEY, RECIPE_PROBLEM_KEY, RECIPE_START_KEY
from engine.augment import (BATCH_KEYS, PRESETS, TAIL_KEYS, AugmentConfig, describe, label_warnings, preview,
                            preview_batch_mix, tail_classes)
from engine.recipes import save_recipe_in_use
from engine.config import ConfigError
from engine.data.datasets import ImageDataset, PreparedData
from engine.imbalance import SAMPLERS, WEIGHTING_METHODS, class_sampling_probs, class_weights, list_losses

ACTIVE_KEY, NAME_KEY = RECIPE_KEY, RECIPE_NAME_KEY  # the workspace's recipe in use, read by Train
START_KEY, LAST_START_KEY = "augment.start", "augment.start_last"
LOADED_KEY = "augment.loaded"  # the recipe the widgets were last loaded with or written as (a dict)
MAIN, TAIL = "augment.main.", "augment.tail."
DEFAULTS = AugmentConfig().to_dict()
GROUP_BADGES = {"many": ":blue-badge[head]", "medium": ":orange-badge[medium]", "few": ":red-badge[tail]"}
PRESET_NOTES = {"none": "no augmentation", "light": "small rotations and crops; digits, text",
                "standard": "flip, crop, colour; photos", "strong": "standard + RandAugment + erasing"}

# field -> (label, kind, min, max, step, help). Defaults come from AugmentConfig, not from here.
# kinds: slider, range (a [min, max] pair), int, float, bool, choice (options in "min"), sizes.
KNOBS: dict[str, tuple] = {
    "hflip_prob": ("Horizontal flip prob.", "slider", 0.0, 1.0, 0.05,
                   "Mirror left-right. Harmless for animals; wrong for digits and text."),
    "vflip_prob": ("Vertical flip prob.", "slider", 0.0, 1.0, 0.05,
                   "Upside down. Only for top-down data (microscopy, satellite); 6 and 9 swap."),
    "rotation_degrees": ("Rotation (± degrees)", "slider", 0.0, 180.0, 1.0,
                         "Angle drawn from [-d, +d]. Above ~15° digits start to change meaning."),
    "random_resized_crop": ("Random resized crop", "bool", None, None, None,
                            "Cut a random region and resize it to the model input (replaces the plain resize)."),
    "rrc_scale": ("Crop area kept (share)", "range", 0.01, 1.0, 0.01,
                  "Share of the source area the crop keeps. Small crops can cut the object out."),
    "rrc_ratio": ("Crop aspect ratio (w / h)", "range", 0.1, 4.0, 0.05, "Wide ranges squash shapes."),
    "crop_padding": ("Pad + random crop (px)", "int", 0, 256, 1,
                     "Pad every side, then crop back: shifts the image by up to this many pixels. 0 = off."),
    "padding_mode": ("Padding fill", "choice", ("constant", "edge", "reflect"), None, None,
                     "constant = black; edge repeats the border; reflect mirrors it."),
    "brightness": ("Brightness ±", "float", 0.0, 10.0, 0.05, "Factor drawn from [1 - b, 1 + b]. 0 = off."),
    "contrast": ("Contrast ±", "float", 0.0, 10.0, 0.05, "Factor drawn from [1 - c, 1 + c]. 0 = off."),
    "saturation": ("Saturation ±", "float", 0.0, 10.0, 0.05, "No effect on greyscale images."),
    "hue": ("Hue shift ±", "slider", 0.0, 0.5, 0.01, "Colour shift; no effect on greyscale images."),
    "grayscale_prob": ("Grayscale prob.", "slider", 0.0, 1.0, 0.05, "Drop colour."),
    "blur_prob": ("Gaussian blur prob.", "slider", 0.0, 1.0, 0.05, None),
    "blur_kernel": ("Blur kernel (px, odd)", "int", 1, 99, 2, "Odd kernel side: 3, 5, 7, ..."),
    "blur_sigma": ("Blur sigma (px)", "range", 0.1, 10.0, 0.1, "Blur strength drawn from this range."),
    "erasing_prob": ("Random erasing prob.", "slider", 0.0, 1.0, 0.05,
                     "Replace a random rectangle with the dataset mean (Cutout)."),
    "erasing_scale": ("Erased area (share)", "range", 0.01, 0.99, 0.01, None),
    "auto_policy": ("Policy", "choice", ("none", "autoaugment", "randaugment", "trivialaugment", "augmix"),
                    None, None, "A learned or random policy of many small ops (shear, solarize, ...)."),
    "autoaugment_policy": ("AutoAugment policy", "choice", ("imagenet", "cifar10", "svhn"), None, None,
                           "svhn has no colour-only ops and suits digits best."),
    "randaugment_num_ops": ("RandAugment ops", "int", 1, 10, 1, "Ops applied in sequence."),
    "randaugment_magnitude": ("RandAugment magnitude", "int", 0, 99, 1, "0 to bins - 1."),
    "magnitude_bins": ("Magnitude bins", "int", 2, 100, 1, "RandAugment / TrivialAugment resolution."),
    "augmix_severity": ("AugMix severity", "int", 1, 10, 1, None),
    "augmix_width": ("AugMix chains", "int", 1, 10, 1, "Augmented copies blended with the original."),
    "augmix_depth": ("AugMix ops per chain", "int", -1, 10, 1, "1 to 10; -1 = random 1 to 3."),
    "mixup_alpha": ("MixUp alpha (0 = off)", "float", 0.0, 100.0, 0.1,
                    "Blend each image with another of its batch; 0.2 = mostly light blends."),
    "cutmix_alpha": ("CutMix alpha (0 = off)", "float", 0.0, 100.0, 0.1,
                     "Paste a patch of another image; 1.0 is usual. With both on, one is drawn per batch."),
    "mix_prob": ("Share of batches mixed", "slider", 0.0, 1.0, 0.05, None),
    "multi_scale_sizes": ("Multi-scale sizes (px)", "sizes", None, None, None,
                          "Each batch is resized to one of these, e.g. 24, 28, 32 for a 28 px model."),
}
# Rows of knobs (two per row; a toggle takes a row of its own), in an order where a knob comes
# after the ones that switch it on.
GROUPS = {
    "📐 Geometry": [["hflip_prob", "vflip_prob"], ["rotation_degrees"], ["crop_padding", "padding_mode"],
                   ["random_resized_crop"], ["rrc_scale", "rrc_ratio"]],
    "🎨 Colour & blur": [["brightness", "contrast"], ["saturation", "hue"], ["grayscale_prob", "blur_prob"],
                        ["blur_kernel", "blur_sigma"]],
    "🩹 Erasing": [["erasing_prob", "erasing_scale"]],
    "🎲 Auto policy": [["auto_policy", "autoaugment_policy"], ["randaugment_num_ops", "randaugment_magnitude"],
                      ["magnitude_bins", "augmix_severity"], ["augmix_width", "augmix_depth"]],
}
BATCH_GROUP = [["mixup_alpha", "cutmix_alpha"], ["mix_prob", "multi_scale_sizes"]]
SAMPLE_FIELDS = [f for rows in GROUPS.values() for row in rows for f in row]
BATCH_FIELDS = [f for row in BATCH_GROUP for f in row]


def _enabled(field: str, v: Mapping) -> bool:
    """Whether a knob has any effect given the ones before it (others are shown greyed out)."""
    policy = v.get("auto_policy")
    return {
        "rrc_scale": v.get("random_resized_crop"), "rrc_ratio": v.get("random_resized_crop"),
        "padding_mode": bool(v.get("crop_padding")), "blur_kernel": bool(v.get("blur_prob")),
        "blur_sigma": bool(v.get("blur_prob")), "erasing_scale": bool(v.get("erasing_prob")),
        "autoaugment_policy": policy == "autoaugment", "randaugment_num_ops": policy == "randaugment",
        "randaugment_magnitude": policy == "randaugment",
        "magnitude_bins": policy in ("randaugment", "trivialaugment"),
        "augmix_severity": policy == "augmix", "augmix_width": policy == "augmix", "augmix_depth": policy == "augmix",
        "mix_prob": bool(v.get("mixup_alpha") or v.get("cutmix_alpha")),
    }.get(field, True)


# --- widget values <-> recipe dicts ------------------------------------------------------------

def _to_widget(field: str, value):
    kind = KNOBS[field][1]
    if kind == "range":
        return (float(value[0]), float(value[1]))
    if kind == "sizes":
        return ", ".join(str(s) for s in value)
    if kind == "int":
        return int(value)
    if kind in ("float", "slider"):
        return float(value)
    return value


def _parse_sizes(text: str) -> list[int]:
    sizes = []
    for tok in (t for t in re.split(r"[,\s]+", text.strip()) if t):
        if not tok.isdigit():
            raise ConfigError(f"multi_scale_sizes: {tok!r} is not a whole number of pixels "
                              "(write sizes like 24, 28, 32).")
        sizes.append(int(tok))
    return sizes


def _from_widget(field: str, value):
    kind = KNOBS[field][1]
    if kind == "range":
        return [float(value[0]), float(value[1])]
    if kind == "sizes":
        return _parse_sizes(value)
    return value


def load(prefix: str, recipe: Mapping, fields: list[str]) -> None:
    """Put a recipe's values (defaults for what it leaves out) into the widgets under ``prefix``."""
    full = {**DEFAULTS, **AugmentConfig.from_dict(recipe).to_dict()}
    for f in fields:
        st.session_state[prefix + f] = _to_widget(f, full[f])


def recipe_from_state() -> AugmentConfig:
    """The recipe the widgets describe. Raises ConfigError with the engine's message."""
    s = st.session_state
    d = {f: _from_widget(f, s[MAIN + f]) for f in SAMPLE_FIELDS + BATCH_FIELDS}
    if s.get("augment.tail_on"):
        d["tail_threshold"] = int(s["augment.tail_threshold"])
        d["tail_recipe"] = {f: _from_widget(f, s[TAIL + f]) for f in SAMPLE_FIELDS}
    return AugmentConfig.from_dict(d)


# --- start from: presets and saved recipes -------------------------------------------------------

def start_options(saved: Mapping[str, dict]) -> dict[str, tuple[str, dict]]:
    """option key -> (name, recipe dict)."""
    opts = {f"preset:{n}": (n, cfg.to_dict()) for n, cfg in PRESETS.items()}
    opts.update({f"saved:{n}": (n, d) for n, d in saved.items()})
    return opts


def _option_label(key: str) -> str:
    kind, name = key.split(":", 1)
    return f"Preset · {name} ({PRESET_NOTES.get(name, '')})" if kind == "preset" else f"Saved · {name}"


def _load_all(cfg: AugmentConfig) -> None:
    """Main and tail widgets from one recipe. Without a tail recipe the tail widgets hold the
    suggested one (strong), ready for when the user switches tail-awareness on."""
    load(MAIN, cfg.to_dict(), SAMPLE_FIELDS + BATCH_FIELDS)
    st.session_state["augment.tail_on"] = cfg.tail_aware
    st.session_state["augment.tail_threshold"] = cfg.tail_threshold
    load(TAIL, cfg.tail_recipe if cfg.tail_aware else PRESETS["strong"].to_dict(), SAMPLE_FIELDS)


def _load_start(options: Mapping[str, tuple[str, dict]]) -> None:
    name, recipe = options[st.session_state[START_KEY]]
    try:
        cfg = AugmentConfig.from_dict(recipe)
    except ConfigError as e:
        st.session_state["augment.load_error"] = f"Recipe **{name}** cannot be loaded: {e}"
        return
    _load_all(cfg)


def _load_tail_start(options: Mapping[str, tuple[str, dict]]) -> None:
    _, recipe = options[st.session_state["augment.tail_start"]]
    per_sample = {k: v for k, v in recipe.items() if k not in BATCH_KEYS + TAIL_KEYS}
    load(TAIL, per_sample, SAMPLE_FIELDS)


def _tail_toggled(few_threshold: int) -> None:
    if st.session_state["augment.tail_on"] and not st.session_state.get("augment.tail_threshold"):
        st.session_state["augment.tail_threshold"] = few_threshold


def _load_in_use() -> None:
    """Widgets from the recipe in use (a recipe from an older version: the baseline)."""
    s = st.session_state
    try:
        cfg = AugmentConfig.from_dict(s.get(ACTIVE_KEY) or {})
    except ConfigError:
        cfg = AugmentConfig()
    _load_all(cfg)
    s[LOADED_KEY] = cfg.to_dict()
    if s.get(RECIPE_START_KEY):
        s[LAST_START_KEY] = s[START_KEY] = s[RECIPE_START_KEY]


def ensure_state(options: Mapping[str, tuple[str, dict]]) -> None:
    """First visit (or back from another page): widgets from the workspace's recipe in use. Later:
    when the recipe in use was changed elsewhere (another tab) and not here, follow it."""
    s = st.session_state
    try:  # the router copies the stored recipe as it is ({} for none): the full dict, as the page sets it
        s[ACTIVE_KEY] = AugmentConfig.from_dict(s.get(ACTIVE_KEY) or {}).to_dict()
    except ConfigError:
        pass
    if MAIN + SAMPLE_FIELDS[0] not in s:
        _load_in_use()
    elif (loaded := s.get(LOADED_KEY)) is not None:
        try:
            in_use = AugmentConfig.from_dict(s.get(ACTIVE_KEY) or {}).to_dict()
            here = recipe_from_state().to_dict()
        except ConfigError:
            in_use = here = None
        if in_use is not None and in_use != loaded and here == loaded:
            _load_in_use()
    if s.get(LAST_START_KEY) not in options:
        s[LAST_START_KEY] = "preset:none"
    if START_KEY not in s or s[START_KEY] not in options:
        s[START_KEY] = s[LAST_START_KEY]


def use_recipe(cfg: AugmentConfig, name: str, start: str) -> None:
    """Make ``cfg`` the workspace's recipe in use (what every tab's next run trains with)."""
    s = st.session_state
    d = save_recipe_in_use(cfg.to_dict(), name=name, start=start)
    s[ACTIVE_KEY], s[NAME_KEY], s[RECIPE_START_KEY], s[LOADED_KEY] = d["recipe"], d["name"], start, d["recipe"]


def apply_if_changed(cfg: AugmentConfig, name: str, start: str) -> None:
    """The Augment page, each run: a valid recipe on screen that differs from the one in use
    (settings or name) becomes the recipe in use."""
    s = st.session_state
    if cfg.to_dict() != s.get(LOADED_KEY) or name != s.get(NAME_KEY):
        use_recipe(cfg, name, start)


def save(store) -> None:
    """Save button callback: store the recipe under its name and make it the one in use."""
    s = st.session_state
    name = (s.get("augment.save_name") or "").strip()
    try:
        if not name:
            raise ValueError("Give the recipe a name first.")
        cfg = recipe_from_state()
        store.save_recipe(name, cfg.to_dict())
        use_recipe(cfg, name, f"saved:{name}")
    except (ValueError, OSError) as e:  # ConfigError is a ValueError
        s["augment.save_error"] = f"**Not saved:** {e}"
        return
    s[START_KEY] = s[LAST_START_KEY] = f"saved:{name}"
    s["augment.saved"] = f"Saved recipe {name}: it is now the one Train uses."


# --- the editor ----------------------------------------------------------------------------------

def _knob(container, prefix: str, field: str, disabled: bool):
    label, kind, lo, hi, step, help_ = KNOBS[field]
    key = prefix + field
    if kind == "bool":
        return container.toggle(label, key=key, help=help_, disabled=disabled)
    if kind == "choice":
        return container.selectbox(label, lo, key=key, help=help_, disabled=disabled)
    if kind == "sizes":
        return container.text_input(label, key=key, help=help_, disabled=disabled,
                                    placeholder="e.g. 24, 28, 32")
    if kind in ("slider", "range"):
        v = st.session_state.get(key)
        vals = v if isinstance(v, tuple) else (v,)
        lo, hi = min([lo, *vals]), max([hi, *vals])  # a stored value outside the usual range still shows
        return container.slider(label, lo, hi, step=step, key=key, help=help_, disabled=disabled)
    return container.number_input(label, lo, hi, step=step, key=key, help=help_, disabled=disabled,
                                  format="%d" if kind == "int" else "%.2f")


def knob_grid(prefix: str, rows: list[list[str]]) -> None:
    values: dict = {}
    for row in rows:
        if KNOBS[row[0]][1] == "bool":
            cols = [st.container()]
        else:
            cols = st.columns(2)
        for col, f in zip(cols, row):
            values[f] = _knob(col, prefix, f, not _enabled(f, values))


def editor(options: Mapping[str, tuple[str, dict]], few_threshold: int) -> None:
    """Start-from selectbox and every knob, grouped. Read the result with ``recipe_from_state``."""
    st.selectbox("Start from", list(options), format_func=_option_label, key=START_KEY,
                 on_change=_load_start, args=(options,),
                 help="Loads a preset or a saved recipe into the settings below; then change anything.")
    if msg := st.session_state.pop("augment.load_error", None):
        st.error(msg)
    for i, (title, fields) in enumerate(GROUPS.items()):
        with st.expander(title, expanded=i == 0, key=f"augment.x.{i}"):
            knob_grid(MAIN, fields)
    with st.expander("🧩 Batch mixing & multi-scale", key="augment.x.batch"):
        st.caption("Applied to whole batches after they are put together.")
        knob_grid(MAIN, BATCH_GROUP)
    with st.expander("🦎 Tail-aware recipe", key="augment.x.tail"):
        on = st.toggle("Give tail classes their own recipe", key="augment.tail_on",
                       on_change=_tail_toggled, args=(few_threshold,),
                       help="Images of classes with fewer training images than the threshold go "
                            "through the tail recipe instead of the main one.")
        c1, c2 = st.columns(2)
        c1.number_input("Tail: fewer than … training images", 0, 10**9, step=1,
                        key="augment.tail_threshold", disabled=not on)
        c2.selectbox("Tail recipe starts from", list(options), format_func=_option_label,
                     key="augment.tail_start", index=None, placeholder="a preset or saved",
                     on_change=_load_tail_start, args=(options,), disabled=not on)
        for tab, fields in zip(st.tabs([t.split(" ", 1)[1] for t in GROUPS]), GROUPS.values()):
            with tab:
                knob_grid(TAIL, fields)


# --- preview -------------------------------------------------------------------------------------

def _display(img: np.ndarray, min_side: int = 112) -> np.ndarray:
    """uint8 (H, W, C) -> nearest-neighbour upscaled (crisp pixels), 2-D when greyscale."""
    k = max(1, -(-min_side // img.shape[0]))
    img = img.repeat(k, 0).repeat(k, 1)
    return img[..., 0] if img.shape[-1] == 1 else img


def pick_images(data: PreparedData, classes: list[int], per_class: int) -> tuple[list, list[int]]:
    ds = ImageDataset(data.splits["train"], data.eval_spec.channels, None)
    labels = data.splits["train"].labels
    idx = [int(i) for c in classes for i in np.flatnonzero(labels == c)[:per_class]]
    return [ds.raw(i) for i in idx], [int(labels[i]) for i in idx]


def _row_label(data: PreparedData, label: int, counts: list[int], groups: list[str], tails: set[int]) -> str:
    extra = " :violet-badge[gets the tail recipe]" if label in tails else ""
    return (f"**{data.class_names[label]}** · {counts[label]:,} training images "
            f"{GROUP_BADGES[groups[label]]}{extra}")


def preview_grid(cfg: AugmentConfig, data: PreparedData, images: list, labels: list[int], *,
                 n: int, seed: int) -> None:
    spec = data.eval_spec
    counts, groups = data.counts("train"), data.groups()
    rows = preview(cfg, images, labels, n=n, seed=seed, size=spec.size, channels=spec.channels,
                   mean=spec.mean, std=spec.std, class_counts=counts)
    tails = set(tail_classes(cfg, counts))
    widths = [1, 1, 0.2, *[1] * n]  # a gap between what evaluation sees and the training views
    head = st.columns(widths)
    for col, text in zip(head, ["original", "evaluation", "", *[f"train #{i + 1}" for i in range(n)]]):
        col.caption(text)
    for label, row in zip(labels, rows):
        st.markdown(_row_label(data, label, counts, groups, tails))
        cols = st.columns(widths)
        for col, img in zip(cols[:2] + cols[3:], [row.original, row.eval_view, *row.augmented]):
            col.image(_display(img), width="stretch", output_format="PNG")


def mix_preview(cfg: AugmentConfig, data: PreparedData, images: list, labels: list[int], *, seed: int) -> None:
    spec = data.eval_spec
    mixes = preview_batch_mix(cfg, images, labels, num_classes=data.num_classes, seed=seed,
                              size=spec.size, channels=spec.channels, mean=spec.mean, std=spec.std)
    cols = st.columns(max(len(mixes), 4))
    for col, m in zip(cols, mixes):
        top = np.argsort(-m.soft_label)[:2]
        parts = [f"{m.soft_label[c] * 100:.0f}% {data.class_names[c]}" for c in top if m.soft_label[c] > 0.005]
        col.image(_display(m.image), width="stretch", output_format="PNG", caption=f"{m.op}: " + " + ".join(parts))


def recipe_caption(recipe: Mapping | None, name: str | None = None, *, hint: bool = True) -> str:
    """One line: a recipe's name and what it does. With ``hint`` (Train page) the tail recipe is
    summed up and the line says where to change it; without (Runs) every op is listed."""
    try:
        cfg = AugmentConfig.from_dict(recipe or {})
    except ConfigError as e:
        return f"⚠️ Augmentation recipe not usable: {e}"
    if hint and cfg == AugmentConfig():
        return (f"🎨 Augmentation: **{name or 'none'}** · No augmentation: training images are used as they "
                "are, like validation and test — choose a recipe on **Augment & balance**.")
    lines = describe(cfg)
    if hint and cfg.tail_aware:
        lines[-1] = f"own recipe for tail classes (< {cfg.tail_threshold} images)"
    label = f"**{name}** · " if name else ""
    return (f"🎨 Augmentation: {label}{' · '.join(lines)}"
            + (" — the workspace's recipe in use; see or change it on **Augment & balance**." if hint else ""))


def recipe_in_use_note(recipe: Mapping | None, name: str | None, class_names: list[str]) -> None:
    """Train page: the recipe in use in one line, then what in it can change labels of this dataset."""
    if problem := st.session_state.get(RECIPE_PROBLEM_KEY):
        st.warning(f"⚠️ {problem}")
    st.caption(recipe_caption(recipe, name))
    try:
        cfg = AugmentConfig.from_dict(recipe or {})
    except ConfigError:
        return
    for w in label_warnings(cfg, class_names):
        st.warning(f"⚠️ {w}")


def soft_target_losses() -> str:
    labels = [l.label for l in list_losses() if l.supports_soft_targets]
    return ", ".join(labels[:-1]) + " or " + labels[-1]


# --- class weights and sampling -------------------------------------------------------------------

def weights_block(data: PreparedData) -> None:
    weighted = {l.name: l for l in list_losses()}["weighted_ce"].params  # defaults of the registry
    counts, names, groups = data.counts("train"), data.class_names, data.groups()
    c1, c2 = st.columns(2)
    method = c1.selectbox("Weighting", WEIGHTING_METHODS, key="augment.w_method",
                          index=WEIGHTING_METHODS.index(weighted["method"]))
    beta = c2.number_input("beta (effective number)", value=float(weighted["beta"]), step=0.0001,
                           format="%.4f", key="augment.w_beta", disabled=method != "effective_number",
                           help="In [0, 1): 0 = equal weights, close to 1 = inverse frequency.")
    try:
        w = class_weights(counts, method, beta).tolist()
    except ValueError as e:
        st.error(f"**Cannot compute class weights:** {e}")
        return
    st.plotly_chart(charts.weights_vs_counts(names, counts, groups, w, method=method), width="stretch")
    lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
    st.caption(f"Bars: training images per class · line: the weight of each class's loss (dotted: 1, "
               f"unweighted). Rarest class **{names[lo]}** weighs {w[lo] / w[hi]:.3g}× the largest, **{names[hi]}**.")


def sampling_block(data: PreparedData, default_epochs: int) -> None:
    counts, names, groups = data.counts("train"), data.class_names, data.groups()
    c1, c2, c3 = st.columns([2, 2, 1])
    sampler = c1.selectbox("Sampler", list(SAMPLERS), key="augment.s_sampler",
                           help="\n\n".join(f"**{k}**: {v}" for k, v in SAMPLERS.items()))
    total = c3.number_input("Epochs", 1, 1000, default_epochs, key="augment.s_epochs",
                            disabled=sampler != "progressive")
    epoch = c2.slider("Epoch", 0, int(total), 0, key="augment.s_epoch", disabled=sampler != "progressive",
                      help="Progressive sampling moves from instance- to class-balanced over training.")
    try:
        p = class_sampling_probs(counts, sampler, epoch=int(epoch), total_epochs=int(total))
    except ValueError as e:
        st.error(f"**Cannot compute sampling rates:** {e}")
        return
    draws = (p * sum(counts)).tolist()
    st.plotly_chart(charts.draws_vs_counts(names, counts, groups, draws, sampler=sampler), width="stretch")
    lo = int(np.argmin(counts))
    st.caption(f"Bars: training images per class · line: images drawn from each class in one epoch. "
               f"Each image of the rarest class **{names[lo]}** is seen about {draws[lo] / counts[lo]:.2g}× per epoch.")
