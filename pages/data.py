"""Data: pick a dataset, see its long tail (head / medium / tail classes) before training."""
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, state
from dashboard.ui import guard
from engine.config import BUILTIN_SOURCES, ConfigError, DataConfig
from engine.data.folder import DatasetError

st.title("📊 Data")
st.caption("Choose what to train on. TailLab splits every class into **head** (many-shot), "
           "**medium** and **tail** (few-shot) by its number of training images.")

current = state.current_data_config()
defaults = DataConfig()
BUILTIN_LABELS = {"builtin:mnist": "MNIST-LT (digits)", "builtin:animal_mnist": "Animal-MNIST-LT (silhouettes)"}

with st.container(border=True):
    kind = st.radio("Source", ["Built-in", "Folder on the server"], horizontal=True, key="data.kind",
                    index=0 if current.source.startswith("builtin:") else 1)
    c1, c2, c3, c4 = st.columns(4)
    if kind == "Built-in":
        source = c1.selectbox("Dataset", BUILTIN_SOURCES, format_func=BUILTIN_LABELS.get, key="data.builtin",
                              index=BUILTIN_SOURCES.index(current.source) if current.source in BUILTIN_SOURCES else 0)
        ratio = c2.number_input("Imbalance ratio (n_max / n_min)", 1.0, 1000.0,
                                float(current.imbalance_ratio), step=10.0, key="data.ratio",
                                help="CIFAR-LT construction: class i keeps n_max · ratio^(-i/(C-1)) "
                                     "training images. 1 = balanced.")
        profile = c3.selectbox("Profile", ["exp", "step"], key="data.profile",
                               index=["exp", "step"].index(current.profile),
                               help="exp: counts fall off exponentially; step: half the classes "
                                    "keep n_max, half get n_max / ratio.")
        seed = c4.number_input("Seed", 0, 2**31 - 1, int(current.seed), key="data.seed")
        folder_kw = {}
    else:
        source = c1.text_input("Folder path (one sub-folder per class)", key="data.folder",
                               value="" if current.source.startswith("builtin:") else current.source,
                               placeholder="/data/my-images")
        ratio, profile = defaults.imbalance_ratio, defaults.profile
        seed = c4.number_input("Split seed", 0, 2**31 - 1, int(current.seed), key="data.seed_f")
        val_fraction = c2.slider("Validation share", 0.0, 0.4, float(current.val_fraction), 0.05, key="data.val")
        test_fraction = c3.slider("Test share", 0.0, 0.4, float(current.test_fraction), 0.05, key="data.test")
        folder_kw = {"val_fraction": val_fraction, "test_fraction": test_fraction}
    t1, t2, t3, _ = st.columns(4)
    many = t1.number_input("Head: more than … images", 1, 100000, int(current.many_threshold), key="data.many")
    few = t2.number_input("Tail: fewer than … images", 1, 100000, int(current.few_threshold), key="data.few")
    if kind == "Built-in":
        folder_kw = {"n_max": t3.number_input(
            "Largest class (0 = all it can have)", 0, 100000, int(current.n_max or 0), step=100,
            key="data.nmax", help="n_max: images kept in the biggest class. Smaller = faster runs.") or None}

guard(bool(source and source.strip()), "Enter the path of a folder with one sub-folder of images per class.")
try:
    cfg = DataConfig(source=source.strip(), imbalance_ratio=float(ratio), profile=profile, seed=int(seed),
                     many_threshold=int(many), few_threshold=int(few), **folder_kw)
    data = state.prepared(cfg)
except (ConfigError, DatasetError) as e:
    st.error(f"**This dataset cannot be used:** {e}")
    st.stop()
except Exception as e:  # noqa: BLE001 — shown, never a stack trace in the user's face
    st.error(f"**Could not load the dataset:** {type(e).__name__}: {e}")
    st.stop()

state.set_data_config(cfg)
counts = data.counts("train")
groups = data.groups()
nz = [c for c in counts if c > 0]

m = st.columns(6)
m[0].metric("Training images", f"{sum(counts):,}")
m[1].metric("Classes", data.num_classes)
m[2].metric("Imbalance ratio", f"{max(nz) / min(nz):.1f}" if nz else "—", help="largest / smallest class")
m[3].metric("Head classes", groups.count("many"), help=f"more than {cfg.many_threshold} training images")
m[4].metric("Medium classes", groups.count("medium"))
m[5].metric("Tail classes", groups.count("few"), help=f"fewer than {cfg.few_threshold} training images")

log_y = st.toggle("Log scale", value=True, key="data.log")
st.plotly_chart(charts.class_histogram(data.class_names, counts, groups, log_y=log_y,
                                       many_threshold=cfg.many_threshold, few_threshold=cfg.few_threshold),
                width="stretch")
cum = np.cumsum(sorted(counts, reverse=True)) / max(sum(counts), 1)
k80 = int(np.searchsorted(cum, 0.8) + 1)
st.caption(f"{k80} of {data.num_classes} classes hold 80% of the training images. "
           "Validation and test sets are kept as they are (balanced for the built-ins), so accuracy on "
           "them shows how the model does on every class.")

with st.expander("Images per class and split", expanded=False):
    table = pd.DataFrame({"class": data.class_names, "group": groups,
                          **{s: data.counts(s) for s in ("train", "val", "test")}})
    st.dataframe(table.sort_values("train", ascending=False), hide_index=True, width="stretch")

with st.expander("Sample images (tail classes first)", expanded=False):
    from engine.data.datasets import ImageDataset
    ds = ImageDataset(data.splits["train"], data.eval_spec.channels, None)
    labels = data.splits["train"].labels
    order = np.argsort(counts)[: min(6, data.num_classes)]
    for c in order:
        idx = np.flatnonzero(labels == c)[:8]
        cols = st.columns(9)
        cols[0].markdown(f"**{data.class_names[c]}**  \n{counts[c]} imgs · {groups[c]}")
        for col, i in zip(cols[1:], idx):
            img = ds.raw(int(i)).permute(1, 2, 0).numpy()
            col.image(img.squeeze(), clamp=True, width="stretch")

st.success(f"Training will use this dataset (version `{data.version_id[:12]}`). Next: **Train** in the sidebar.")
