"""Blocks of the Data page: built-in datasets, and the Data studio for the user's own images
(source -> scan -> look -> fix problems -> classes and splits -> save a version -> train).

The page calls these top to bottom. Heavy work is cached: a scan per (source, folder mtimes) in
``_scans`` (so reruns are instant), statistics per (scan, thresholds), manifests per hash.

Start-up: the built-in view (the first page a user sees) draws its histogram without torch or
pandas; pandas is imported by the functions that draw tables, and the built-ins' table and sample
images are drawn only once their expander is opened.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter, OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from dashboard import charts, state
from engine.config import BUILTIN_SOURCES, ConfigError, DataConfig
from engine.data import library, sources
from engine.data.sources import DatasetError
from engine.data.io import ImageReadError, open_image
from PIL import ImageOps
from engine.data.manifest import Manifest, diff_counts, load_manifest, manifest_from_scan, save_manifest
from engine.data.prepare import CONFIRM_SHARE, VersionPlan, apply_plan, fix_drops
from engine.data.scan import ScanResult, scan_listing
from engine.data.sources import DataError
from engine.data.stats import UNSPLIT, DatasetStats, compute_stats, shot_group, summarize_counts

if TYPE_CHECKING:
    import pandas as pd

BUILTIN, FOLDER, ZIP, CSV, VERSION = ("Built-in", "Folder on the server", "Upload a zip", "CSV manifest",
                                      "Saved version")
KINDS = [BUILTIN, FOLDER, ZIP, CSV, VERSION]
BUILTIN_LABELS = {"builtin:mnist": "MNIST-LT (digits)", "builtin:animal_mnist": "Animal-MNIST-LT (silhouettes)"}
MAX_ROWS = 2000  # rows shown in a problem list
PICKABLE = 5000  # files offered in the hand-picked exclusion list


def initial_kind(cfg: DataConfig) -> int:
    if cfg.source.startswith("builtin:"):
        return KINDS.index(BUILTIN)
    return KINDS.index(VERSION if cfg.source.startswith("version:") else FOLDER)


# --- built-in datasets ---------------------------------------------------------------------------

def builtin(current: DataConfig) -> None:
    """MNIST-LT / Animal-MNIST-LT: long-tail settings, figures, histogram, samples; sets the data config."""
    with st.container(border=True):
        c1, c2, c3, c4 = st.columns(4)
        source = c1.selectbox("Dataset", BUILTIN_SOURCES, format_func=BUILTIN_LABELS.get, key="data.builtin",
                              index=BUILTIN_SOURCES.index(current.source) if current.source in BUILTIN_SOURCES else 0)
        ratio = c2.number_input("Imbalance ratio (n_max / n_min)", 1.0, 1000.0, float(current.imbalance_ratio),
                                step=10.0, key="data.ratio",
                                help="CIFAR-LT construction: class i keeps n_max · ratio^(-i/(C-1)) "
                                     "training images. 1 = balanced.")
        profile = c3.selectbox("Profile", ["exp", "step"], key="data.profile",
                               index=["exp", "step"].index(current.profile),
                               help="exp: counts fall off exponentially; step: half the classes "
                                    "keep n_max, half get n_max / ratio.")
        seed = c4.number_input("Seed", 0, 2**31 - 1, int(current.seed), key="data.seed")
        t1, t2, t3, _ = st.columns(4)
        many = t1.number_input("Head: more than … images", 1, 100000, int(current.many_threshold), key="data.many")
        few = t2.number_input("Tail: fewer than … images", 1, 100000, int(current.few_threshold), key="data.few")
        n_max = t3.number_input("Largest class (0 = all it can have)", 0, 100000, int(current.n_max or 0), step=100,
                                key="data.nmax", help="n_max: images kept in the biggest class. Smaller = faster runs.")
    try:
        cfg = DataConfig(source=source, imbalance_ratio=float(ratio), profile=profile, seed=int(seed),
                         many_threshold=int(many), few_threshold=int(few), n_max=int(n_max) or None)
        data = state.data_plan(cfg)  # the plan has the counts: no pixels resized, no torch
    except (ConfigError, DatasetError) as e:
        st.error(f"**This dataset cannot be used:** {e}")
        return
    except Exception as e:  # noqa: BLE001 — shown, never a stack trace in the user's face
        st.error(f"**Could not load the dataset:** {type(e).__name__}: {e}")
        return
    state.set_data_config(cfg)
    counts, groups = data.counts("train"), data.groups()
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
    k80 = summarize_counts(counts).classes_for_80
    st.caption(f"{k80} of {data.num_classes} classes hold 80% of the training images. Validation and test "
               "sets are kept as they are (balanced for the built-ins), so accuracy on them shows how the "
               "model does on every class.")
    # Drawn only once opened (a rerun): closed, they cost the first render nothing (no table
    # component, no 48 images for the browser to load next to the histogram).
    table = st.expander("Images per class and split", key="data.b.table", on_change="rerun")
    if table.open:
        import pandas as pd  # lazy: see the module docstring

        df = pd.DataFrame({"class": data.class_names, "group": [charts.GROUP_LABELS[g] for g in groups],
                           **{s: data.counts(s) for s in ("train", "val", "test")}})
        # the histogram's order: training count, largest first, then name
        table.dataframe(df.iloc[charts.class_order(data.class_names, counts)], hide_index=True, width="stretch")
    samples = st.expander("Sample images (tail classes first)", key="data.b.samples", on_change="rerun")
    if samples.open:
        train = data.splits["train"]  # built-ins: uint8 arrays in memory, as stored
        for c in np.argsort(counts)[: min(6, data.num_classes)]:
            cols = samples.columns(9)
            cols[0].markdown(f"**{data.class_names[c]}**  \n{counts[c]} imgs · {charts.GROUP_LABELS[groups[c]]}")
            for col, i in zip(cols[1:], np.flatnonzero(train.labels == c)[:8]):
                col.image(train.images[i], clamp=True, width="stretch")
    st.success(f"Training will use this dataset (version `{data.version_id[:12]}`). Next: **Train** in the sidebar.")


# --- step 1: the source --------------------------------------------------------------------------

def _imported() -> list[str]:
    return library.imported_datasets()


def pick_source(kind: str, current: DataConfig) -> tuple[str, str] | None:
    """Widgets for one kind of source; (kind, path or version hash), or None (with a hint shown)."""
    own = not current.source.startswith(("builtin:", "version:"))
    if kind == FOLDER:
        roots = sources.allowed_roots()
        path = st.text_input("Folder path (one sub-folder per class, or train / val / test folders of class "
                             "folders)", key="data.folder", value=current.source if own else "",
                             placeholder=str(roots[0] / "my-images"))
        st.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in roots) + " (set `TAILLAB_DATA_ROOTS` "
                   "to change them). Your files are only read, never changed.")
        if not path.strip():
            st.info("Enter the path of a folder with one sub-folder of images per class.")
            return None
        return "folder", path.strip()
    if kind == ZIP:
        up = st.file_uploader("Zip of class folders (each class a folder of PNG / JPEG / WebP / BMP / GIF / "
                              "TIFF images)", type=["zip"], key="data.zip")
        if up is not None:
            done = st.session_state.setdefault("data._imported", {})  # upload id -> folder: hash once
            if up.file_id not in done:
                done[up.file_id] = str(_import_upload(up.name, up.getvalue()))
            return "folder", done[up.file_id]
        old = _imported()
        if old:
            name = st.selectbox("… or open a zip imported before", ["—", *old], key="data.zip_old")
            if name != "—":
                return "folder", str(library.datasets_dir() / name)
        st.info("Drop a zip file: it is checked, then extracted into the workspace (`datasets/`).")
        return None
    if kind == CSV:
        path = st.text_input("CSV file (rows `path,label[,split]`, paths relative to the CSV's folder)",
                             key="data.csv", placeholder=str(sources.allowed_roots()[0] / "labels.csv"))
        if not path.strip():
            st.info("Enter the path of a CSV file listing images: path,label and optionally split "
                    "(train / val / test).")
            return None
        if not path.strip().lower().endswith(".csv"):
            st.error(f"**This source cannot be used:** {path.strip()} is not a .csv file.")
            return None
        return "csv", path.strip()
    infos = versions()
    if not infos:
        st.info("No saved versions yet: scan a folder, a zip or a CSV and save a version first.")
        return None
    hashes = [i["hash"] for i in infos]
    by_hash = {i["hash"]: i for i in infos}
    want = current.source.split(":", 1)[1] if current.source.startswith("version:") else ""
    index = next((k for k, h in enumerate(hashes) if want and h.startswith(want)), 0)
    h = st.selectbox("Version", hashes, index=index, key="data.version",
                     format_func=lambda h: _version_label(by_hash[h]))
    return "version", h


def _version_label(v: dict) -> str:
    return f"{v['hash'][:16]} · {v['name'] or v['source']} · {v['images']:,} images · {v['created'][:16]}"


def _import_upload(filename: str, data: bytes) -> Path:
    """Extract an uploaded zip into the workspace once: the same bytes reuse the same folder."""
    with st.spinner(f"Checking and extracting {filename} …"):
        target, res = library.import_upload(filename, data)
    if res is not None:
        st.toast(f"Extracted {res.files:,} files into datasets/{res.name}"
                 + (f" (unwrapped the folder {res.unwrapped!r})" if res.unwrapped else ""), icon="📦")
    return target


# --- scanning (cached) ---------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _scans() -> "OrderedDict[tuple, tuple[ScanResult, Manifest]]":
    return OrderedDict()  # shared by every session: (kind, path, signature) -> (scan, base version)


_signature = library.source_signature  # the scan-cache key: changes when files come or go


@st.cache_resource(show_spinner=False, max_entries=16)
def _manifest(ref: str) -> Manifest:
    return load_manifest(ref)  # immutable: the hash is the key


def load(ref: tuple[str, str], *, rescan: bool = False) -> tuple[tuple, ScanResult, Manifest]:
    """(cache key, scan, base version) of a source, scanning with a progress bar when needed."""
    kind, target = ref
    if kind == "version":
        base = _manifest(target)
        root = sources.check_allowed(base.root)  # a version made from a shell may point anywhere
        if not root.is_dir():
            raise DataError(f"The images of version {base.short_hash} were in {root}, which is gone.")
        key = ("version", base.hash, _signature(root))
    else:
        real = sources.check_allowed(target)
        if not real.exists():
            raise DataError(f"The {'CSV file' if kind == 'csv' else 'folder'} {target} does not exist.")
        key, base = (kind, str(real), _signature(real)), None
    cache = _scans()
    if rescan:
        cache.pop(key, None)
    if key in cache:
        cache.move_to_end(key)
        return (key, *cache[key])
    listing = base.to_listing() if base is not None else sources.list_source(real, check_root=False)
    bar = st.progress(0.0, text=f"Scanning {len(listing.entries):,} images …")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"Scanning images: {done:,} / {total:,}")

    scan = scan_listing(listing, progress=progress)
    bar.empty()
    cache[key] = (scan, base if base is not None else manifest_from_scan(scan, listing=listing))
    while len(cache) > 4:
        cache.popitem(last=False)
    return (key, *cache[key])


def thresholds(current: DataConfig) -> dict:
    """Head / tail and problem thresholds (a collapsed row of inputs)."""
    with st.expander("⚙️ Thresholds: head / tail classes, tiny images, aspect ratio, near duplicates",
                     key="data.x.thresholds"):
        c = st.columns(5)
        s = dict(
            many=c[0].number_input("Head: more than … images", 1, 10**6, int(current.many_threshold),
                                   key="data.many"),
            few=c[1].number_input("Tail: fewer than … images", 1, 10**6, int(current.few_threshold),
                                  key="data.few"),
            min_side=c[2].number_input("Tiny: a side under … px", 1, 4096, 16, key="data.min_side"),
            max_aspect=c[3].number_input("Extreme: aspect over …", 1.0, 100.0, 4.0, step=0.5, key="data.max_aspect"),
            near_threshold=c[4].number_input("Near duplicate: ≤ … of 64 bits differ", 0, 16, 4, key="data.near",
                                             help="Distance between difference hashes (dHash). 0 turns the "
                                                  "near-duplicate search off."))
    if s["few"] > s["many"]:
        raise DataError(f"The tail threshold ({s['few']}) must not exceed the head threshold ({s['many']}).")
    return {k: (float(v) if k == "max_aspect" else int(v)) for k, v in s.items()}


@st.cache_resource(show_spinner="Computing statistics …", max_entries=8)
def _stats(key: tuple, settings_json: str, _scan: ScanResult) -> DatasetStats:
    return compute_stats(_scan, **json.loads(settings_json))


def stats(key: tuple, scan: ScanResult, settings: dict) -> DatasetStats:
    return _stats(key, json.dumps(settings, sort_keys=True), scan)


# --- step 2: look --------------------------------------------------------------------------------

def _count_split(s: DatasetStats) -> str:
    """The split the class figures count ("train"), or UNSPLIT for all images together."""
    return "train" if s.counts_from == "train" else UNSPLIT


def overview(scan: ScanResult, s: DatasetStats) -> None:
    """Figures, then tabs: classes (histogram, table), image properties, samples."""
    split = _count_split(s)
    summ = s.summary  # of the training split when the source has one
    figs = st.columns(4) + st.columns(4)
    figs[0].metric("Images", f"{s.num_images:,}", help=f"readable images of {s.num_files:,} image files"
                   + (f"; splits: {', '.join(s.splits)}" if s.splits != [UNSPLIT] else ""))
    figs[1].metric("Classes", s.num_classes)
    figs[2].metric("Imbalance ratio", "—" if summ.num_classes == 0 else f"{summ.imbalance_ratio:.1f}",
                   help=f"largest / smallest class, {s.counts_note}")
    figs[3].metric("Gini", f"{summ.gini:.2f}", help="0 = balanced, towards 1 = one class holds everything")
    figs[4].metric("Norm. entropy", f"{summ.entropy:.2f}", help="1 = balanced, lower = more imbalanced")
    figs[5].metric("Head classes", summ.many, help=f"more than {s.settings['many']} images")
    figs[6].metric("Medium classes", summ.medium)
    figs[7].metric("Tail classes", summ.few, help=f"fewer than {s.settings['few']} images")
    st.caption(f"Imbalance ratio, Gini, entropy and head / medium / tail classes are {s.counts_note}.")
    if s.warnings:
        st.warning("\n".join(f"- {w}" for w in s.warnings))
    t_classes, t_props, t_samples = st.tabs(["📊 Classes", "🖼️ Image properties", "🔍 Samples"],
                                            key="data.tabs")
    with t_classes:
        _classes_tab(s, split, summ)
    with t_props:
        _properties_tab(scan, s)
    with t_samples:
        _samples_tab(scan, s, split)


def _classes_tab(s: DatasetStats, split: str, summ) -> None:
    import pandas as pd  # lazy: see the module docstring

    names = [c.name for c in s.classes]
    basis = s.basis_counts()
    counts = [basis.get(n, 0) for n in names]
    groups = [shot_group(n, s.settings["many"], s.settings["few"]) for n in counts]
    log_y = st.toggle("Log scale", value=True, key="data.log", help="Tail classes stay visible next to the head.")
    fig = charts.class_histogram(names, counts, groups, log_y=log_y, many_threshold=s.settings["many"],
                                 few_threshold=s.settings["few"])
    if split != "train":
        fig.update_layout(yaxis_title="images" + (" (log scale)" if log_y else ""))
    st.plotly_chart(fig, width="stretch", key="data.hist")
    what = "training images" if split == "train" else "images"
    st.caption(f"**{summ.classes_for_80} of {summ.num_classes} classes hold 80% of the {what}.** Bars are "
               "coloured head / medium / tail by the thresholds (dotted lines); the green line is the "
               "cumulative share.")
    table = pd.DataFrame({"class": names, "group": [charts.GROUP_LABELS[g] for g in groups],
                          "images": [c.count for c in s.classes],
                          **{k: [c.per_split.get(k, 0) for c in s.classes] for k in s.splits if k != UNSPLIT}})
    table = table.iloc[charts.class_order(names, counts)]  # the histogram's order
    st.caption("Images per class and split, largest class first as in the histogram (click a column header "
               "to sort).")
    st.dataframe(table, hide_index=True, width="stretch", key="data.class_table",
                 height=min(36 + 35 * len(table), 400))


def _properties_tab(scan: ScanResult, s: DatasetStats) -> None:
    import pandas as pd  # lazy: see the module docstring

    ok = scan.usable
    if not ok:
        st.info("No readable image.")
        return
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.image_sizes([f.width for f in ok], [f.height for f in ok]), width="stretch")
    c2.plotly_chart(charts.aspect_histogram([f.aspect for f in ok], max_aspect=s.settings["max_aspect"]),
                    width="stretch")
    c3, c4, c5 = st.columns(3)
    c3.plotly_chart(charts.breakdown(s.formats, title="File formats"), width="stretch")
    c4.plotly_chart(charts.breakdown(s.modes, title="Colour modes (as stored)"), width="stretch")
    with c5:
        which = "training split" if s.stats_split == "train" else "all images"
        st.markdown(f"**Normalisation** ({which})")
        st.dataframe(pd.DataFrame({"channel": ["R", "G", "B", "grey"],
                                   "mean": [*s.mean, s.grey_mean], "std": [*s.std, s.grey_std]}).round(4),
                     hide_index=True, width="stretch")
        mean = ", ".join(f"{v:.4f}" for v in s.mean)
        std = ", ".join(f"{v:.4f}" for v in s.std)
        st.code(f"mean=({mean})\nstd=({std})", language="python")
        st.caption("Per-channel mean / std on the 0..1 scale: use them to normalise inputs. Training on a "
                   "version computes the same from its training split.")
    st.caption(f"Width {s.width['min']:.0f}–{s.width['max']:.0f} px (median {s.width['median']:.0f}), height "
               f"{s.height['min']:.0f}–{s.height['max']:.0f} px (median {s.height['median']:.0f}). Sizes are of "
               "the upright image (EXIF rotation applied).")


@st.cache_data(show_spinner=False, max_entries=2000)
def _thumb(path: str, mtime_ns: int, side: int = 112) -> np.ndarray | None:
    try:
        img = open_image(path, mode="RGB")
    except ImageReadError:
        return None
    # letterboxed on the page background, so every row of thumbnails lines up
    return np.asarray(ImageOps.pad(img, (side, side), color=(240, 242, 246)))


def _show_thumbs(root: Path, rels: list[str], cols) -> None:
    for col, rel in zip(cols, rels):
        p = root / rel
        try:
            a = _thumb(str(p), p.stat().st_mtime_ns)
        except OSError:
            a = None
        if a is None:
            col.caption(f"⚠️ {rel} (unreadable)")
        else:
            col.image(a, caption="/".join(rel.split("/")[-2:]), width="stretch")  # class/file


def _samples_tab(scan: ScanResult, s: DatasetStats, split: str, per_class: int = 7) -> None:
    names = [c.name for c in s.classes if c.count]
    default = names if len(names) <= 8 else names[:4] + names[-4:]
    picked = st.multiselect("Classes to show (largest first; the default includes the smallest, tail classes)",
                            names, default=default,
                            key=f"data.sample_classes.{zlib.crc32(chr(10).join(names).encode()):08x}")
    by_class: dict[str, list[str]] = {}
    for f in scan.usable:
        if split == UNSPLIT or f.split == split:
            by_class.setdefault(f.label, []).append(f.rel)
    count = {c.name: c.count for c in s.classes}
    for name in picked:
        files = sorted(by_class.get(name, []))
        rng = np.random.default_rng(0)
        shown = [files[i] for i in sorted(rng.choice(len(files), min(per_class, len(files)), replace=False))]
        cols = st.columns(per_class + 1)
        group = shot_group(s.basis_counts().get(name, 0), s.settings["many"], s.settings["few"])
        cols[0].markdown(f"**{name}**  \n{count[name]:,} images · {charts.GROUP_LABELS[group]}")
        _show_thumbs(scan.root, shown, cols[1:])


# --- step 3: problems ----------------------------------------------------------------------------

def _n(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _groups_table(groups) -> pd.DataFrame:
    import pandas as pd  # lazy: see the module docstring

    rows = [{"group": k + 1, "files": len(g.paths), "kind": g.kind, "classes": ", ".join(sorted(set(g.labels))),
             "splits": ", ".join(sorted({x or UNSPLIT for x in g.splits})), "paths": " · ".join(g.paths)}
            for k, g in enumerate(groups[:MAX_ROWS])]
    return pd.DataFrame(rows)


def _kinds(groups) -> str:
    within = sum(not g.label_conflict for g in groups)
    conflict = sum(g.label_conflict for g in groups)
    leak = sum(g.leakage for g in groups)
    return f"{within} within a class, {conflict} across classes (label conflict), {leak} across splits (leakage)"


def problems(scan: ScanResult, s: DatasetStats, base: Manifest) -> dict:
    """One expander per kind of problem, each with its list and what to do about it. Returns the
    chosen fixes (keys of VersionPlan)."""
    import pandas as pd  # lazy: see the module docstring

    fixes: dict = {}
    extra = sum(len(g.paths) - 1 for g in s.duplicates)
    k = int(st.session_state.get("data.fix.k", 10))
    small = [(c.name, c.count) for c in s.classes if 0 < c.count < k]
    found = {"unreadable files": len(s.corrupt), "duplicate groups": len(s.duplicates),
             "near-duplicate groups": len(s.near_duplicates), "tiny images": len(s.tiny),
             "extreme aspect ratios": len(s.extreme_aspect), f"classes under {k} images": len(small)}
    st.caption(" · ".join(f"{'⚠️' if n else '✅'} {n} {what}" for what, n in found.items()))

    if s.corrupt:
        with st.expander(f"❌ Unreadable files ({len(s.corrupt)})", key="data.x.corrupt"):
            labels = {f.rel: f.label for f in scan.images}
            st.dataframe(pd.DataFrame([{"file": p, "class": labels.get(p, ""), "reason": r}
                                       for p, r in s.corrupt[:MAX_ROWS]]), hide_index=True, width="stretch")
            st.caption("Unreadable files are never put in a version. Fix or delete them in the source if "
                       "you want them back.")
    if s.duplicates:
        with st.expander(f"👯 Exact duplicates ({_n(len(s.duplicates), 'group')}, "
                         f"{_n(extra, 'extra copy', 'extra copies')})", key="data.x.dupes"):
            st.caption(f"Files with identical bytes: {_kinds(s.duplicates)}.")
            st.dataframe(_groups_table(s.duplicates), hide_index=True, width="stretch")
            fixes["dedupe"] = st.checkbox("Keep one file of each group, leave the other copies out (train "
                                          "copy first)", key="data.fix.dedupe")
    if s.near_duplicates or not s.near_separable:
        with st.expander(f"🪞 Near duplicates ({_n(len(s.near_duplicates), 'group')})", key="data.x.near"):
            st.caption(f"Nearly the same picture (resized, recompressed, slightly edited): "
                       f"{_kinds(s.near_duplicates)}.")
            if not s.near_separable:
                st.warning(s.near_search.note)
            st.dataframe(_groups_table(s.near_duplicates), hide_index=True, width="stretch")
            for g in s.near_duplicates[:3]:
                _show_thumbs(scan.root, list(g.paths[:6]), st.columns(6))
            if s.near_separable:
                fixes["dedupe_near"] = st.checkbox("Keep one file of each near-duplicate group",
                                                   key="data.fix.near")
    conflicts = [g for g in (*s.duplicates, *s.near_duplicates) if g.label_conflict]
    if conflicts:
        with st.expander(f"🏷️ Label conflicts ({_n(len(conflicts), 'group')})", key="data.x.conflicts"):
            st.caption("The same picture filed under different classes: at most one label is right.")
            st.dataframe(_groups_table(conflicts), hide_index=True, width="stretch")
            if not s.near_separable and any(g in s.near_duplicates for g in conflicts):
                st.caption("The hash cannot separate these images: the fix below leaves out exact copies only.")
            fixes["drop_conflicts"] = st.checkbox("Leave out every file of these groups", key="data.fix.conflicts")
    leaks = [g for g in (*s.duplicates, *s.near_duplicates) if g.leakage]
    if leaks:
        with st.expander(f"🔀 Split leakage ({_n(len(leaks), 'group')})", key="data.x.leaks"):
            st.caption("The same picture in more than one of the source's splits, so test accuracy would "
                       "be measured on images seen in training. Keeping one file per group (above) keeps "
                       "the training copy.")
            st.dataframe(_groups_table(leaks), hide_index=True, width="stretch")
    for attr, title, key in (("tiny", f"🔬 Tiny images (a side under {s.settings['min_side']} px)", "tiny"),
                             ("extreme_aspect", f"↔️ Extreme aspect ratio (over {s.settings['max_aspect']:g})",
                              "aspect")):
        items = getattr(s, attr)
        if items:
            with st.expander(f"{title}: {len(items)}", key=f"data.x.{key}"):
                st.dataframe(pd.DataFrame([{"file": p, "width": w, "height": h} for p, w, h in items[:MAX_ROWS]]),
                             hide_index=True, width="stretch")
                fixes["exclude_" + ("tiny" if key == "tiny" else "extreme_aspect")] = st.checkbox(
                    "Leave these images out", key=f"data.fix.{key}")
    with st.expander(f"🐜 Small classes ({len(small)} under {k} images)", key="data.x.small"):
        st.number_input("Small: fewer than … images", 1, 10**6, 10, key="data.fix.k")
        if small:
            st.dataframe(pd.DataFrame(small, columns=["class", "images"]), hide_index=True, width="stretch")
        if s.empty_classes:
            st.caption(f"Class folders without a usable image (never in a version): {', '.join(s.empty_classes)}.")
        if st.checkbox(f"Drop classes with fewer than {k} images", key="data.fix.small"):
            fixes["drop_under"] = k
    with st.expander("✋ Leave out files picked by hand", key="data.x.pick"):
        paths = [r.path for r in base.rows]
        if len(paths) > PICKABLE:
            flagged = {p for p, _, _ in (*s.tiny, *s.extreme_aspect)} | {
                p for g in (*s.duplicates, *s.near_duplicates) for p in g.paths}
            paths = sorted(flagged & set(paths)) or paths[:PICKABLE]
            st.caption(f"{len(base.rows):,} files: only the flagged ones (or the first {PICKABLE:,}) are offered.")
        fixes["exclude"] = tuple(st.multiselect("Files to leave out", paths, key=f"data.fix.exclude.{base.hash[:8]}",
                                                placeholder="Type part of a file name"))
    return fixes


# --- step 4: classes, split, long tail -----------------------------------------------------------

def plan_controls(base: Manifest, fixes: dict) -> VersionPlan:
    """Class edits, the split and the long-tail builder; returns the whole plan."""
    import pandas as pd  # lazy: see the module docstring

    classes = base.classes
    counts = Counter(r.label for r in base.rows)
    c1, c2 = st.columns([1, 1])
    with c1:
        drop = st.multiselect("Drop classes", classes, key=f"data.act.drop.{base.hash[:8]}")
        st.caption("Rename a class by typing its new name; give several classes the same new name to merge them.")
        edited = st.data_editor(pd.DataFrame({"class": classes, "images": [counts[c] for c in classes],
                                              "new name": [""] * len(classes)}),
                                key=f"data.act.rename.{base.hash[:8]}", hide_index=True, width="stretch",
                                disabled=["class", "images"], height=min(36 + 35 * len(classes), 300))
        rename = tuple((c, str(n).strip()) for c, n in zip(edited["class"], edited["new name"])
                       if isinstance(n, str) and n.strip() and n.strip() != c)
    with c2:
        if base.is_split:
            keep = st.radio("Split", ["Keep the source's splits", "Stratified train / val / test split"],
                            key="data.split.mode", horizontal=True,
                            help="The source comes split already (train / val / test folders or a split "
                                 "column). Stratified: split again, every class in the same proportions "
                                 "(seeded).") == "Keep the source's splits"
        else:
            keep = False
            st.markdown("**Split**: stratified, every class in the same proportions (seeded)")
        a, b, c = st.columns(3)
        seed = c.number_input("Seed", 0, 2**31 - 1, 0, key="data.split.seed")
        split_kw: dict = {}
        if keep:
            if "val" not in base.splits:
                split_kw["val_from_train"] = a.slider("Move to val (share of train)", 0.0, 0.5, 0.1, 0.05,
                                                      key="data.split.carve")
        else:
            split_kw["val"] = a.slider("Validation share", 0.0, 0.5, 0.1, 0.05, key="data.split.val")
            split_kw["test"] = b.slider("Test share", 0.0, 0.5, 0.2, 0.05, key="data.split.test")
            split_kw["min_val"] = a.number_input("At least … val images per class", 0, 1000, 1,
                                                 key="data.split.min_val")
            split_kw["min_test"] = b.number_input("At least … test images per class", 0, 1000, 1,
                                                  key="data.split.min_test")
        lt = st.toggle("Make the training split long-tailed", key="data.lt",
                       help="CIFAR-LT construction on the training split only: class i keeps "
                            "n_max · ratio^(-i/(C-1)) images (exp) or half keep n_max (step). Val and "
                            "test stay whole.")
        lt_kw: dict = {}
        if lt:
            a, b, c = st.columns(3)
            lt_kw["longtail_ratio"] = float(a.number_input("Imbalance ratio", 1.0, 1000.0, 10.0, step=5.0,
                                                           key="data.lt.ratio"))
            lt_kw["longtail_profile"] = b.selectbox("Profile", ["exp", "step"], key="data.lt.profile")
            lt_kw["n_max"] = int(c.number_input("Largest class (0 = most possible)", 0, 10**6, 0,
                                                key="data.lt.nmax")) or None
    return VersionPlan(split="keep" if keep else "stratified", seed=int(seed), drop_classes=tuple(drop),
                       rename=rename, **split_kw, **lt_kw, **fixes)


# --- step 5: preview, save, train ----------------------------------------------------------------

def _preview(base: Manifest, plan: VersionPlan, s: DatasetStats, key: tuple):
    memo_key = (base.hash, repr(key), json.dumps(asdict(plan), sort_keys=True))
    memo = st.session_state.get("data._preview")
    if not memo or memo[0] != memo_key:
        memo = (memo_key, apply_plan(base, plan, s))
        st.session_state["data._preview"] = memo
    return memo[1]


def _train_on(short_hash: str, many: int, few: int, where: str) -> None:
    state.set_data_config(DataConfig(source=f"version:{short_hash}", many_threshold=many, few_threshold=few))
    st.session_state["data.train_on"] = (where, short_hash)


def _default_name(base: Manifest) -> str:
    """The source folder's name, or the name of the version it was made from."""
    saved = next((v["name"] for v in versions() if v["hash"] == base.hash), None)
    if saved is not None:
        return saved or base.short_hash
    return Path(base.source.split(":", 1)[-1]).name or base.short_hash


def save_and_train(base: Manifest, plan: VersionPlan, s: DatasetStats, key: tuple) -> None:
    """What the version will hold, the split warnings, Save as version, Train on this version."""
    label = _default_name(base)
    try:
        m, warnings = _preview(base, plan, s, key)
    except DataError as e:
        st.error(f"**This version cannot be made:** {e}")
        return
    counts = m.class_counts
    f = st.columns(6)
    f[0].metric("Images in the version", f"{m.num_images:,}", delta=f"{m.num_images - base.num_images:+,}"
                if m.num_images != base.num_images else None, delta_color="off")
    f[1].metric("Classes", len(m.classes), delta=f"{len(m.classes) - len(base.classes):+}"
                if len(m.classes) != len(base.classes) else None, delta_color="off")
    for col, x in zip(f[2:5], ("train", "val", "test")):
        col.metric(x.capitalize(), f"{sum(counts.get(x, {}).values()):,}")
    train = summarize_counts(counts.get("train", {}).values())
    f[5].metric("Imbalance ratio (train)", "—" if not train.num_classes else f"{train.imbalance_ratio:.1f}")
    if warnings:
        shown = warnings[:8] + ([f"… and {len(warnings) - 8} more"] if len(warnings) > 8 else [])
        st.warning("**Some classes cannot meet the split as asked:**\n" + "\n".join(f"- {w}" for w in shown))
    with st.expander("Per class and split, and the steps recorded with the version", key="data.x.preview"):
        st.plotly_chart(charts.split_counts(m.classes, {x: [counts[x][c] for c in m.classes] for x in counts}),
                        width="stretch")
        st.markdown("\n".join(f"{i}. {a}" for i, a in enumerate(m.actions, 1)))
    if m.hash == base.hash:
        st.caption("Nothing changes: these are exactly the images, classes and splits of the version you opened.")
    drops = fix_drops(base, plan, s)
    confirmed = True
    if drops.large():
        st.warning(f"**The fixes leave out more than {CONFIRM_SHARE:.0%} of the "
                   f"{' and '.join(drops.large())} split{'s' * (len(drops.large()) > 1)}:**\n"
                   + "\n".join(f"- {line}" for line in drops.lines()))
        confirmed = st.checkbox(f"Yes, leave these {drops.total:,} files out", key=(
            "data.confirm." + hashlib.blake2b(repr(drops.dropped).encode() + m.hash.encode(), digest_size=6).hexdigest()))
    elif drops.total:
        st.caption("The fixes leave out " + "; ".join(drops.lines()) + ".")
    c1, c2, _ = st.columns([2, 1, 1], vertical_alignment="bottom")
    name = c1.text_input("Version name", value=label, key=f"data.save.name.{base.hash[:8]}",
                         help="Shown in the versions list and runs.")
    if c2.button("💾 Save as version", key="data.save", type="primary", width="stretch", disabled=not confirmed,
                 help=None if confirmed else "Tick the confirmation above first."):
        path = save_manifest(m)
        state.store().add_dataset_version(
            id=m.hash, name=name.strip() or label, source=m.source, class_counts=counts, manifest_path=str(path),
            config={"parent": m.parent, "actions": list(m.actions), "plan": asdict(plan),
                    "thresholds": s.settings})
        st.session_state["data.saved"] = m.hash
    if st.session_state.get("data.saved") == m.hash:
        st.success(f"Saved version `{m.short_hash}` ({m.num_images:,} images, {len(m.classes)} classes).")
        many, few = s.settings["many"], s.settings["few"]
        st.button("🏋️ Train on this version", key="data.train", on_click=_train_on,
                  args=(m.short_hash, many, few, "studio"))
    if st.session_state.get("data.train_on") == ("studio", m.short_hash) and \
            state.current_data_config().source == f"version:{m.short_hash}":
        st.success(f"Training will use version `{m.short_hash}`. Next: open **Train** in the sidebar.")


# --- saved versions ------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=4)
def _versions(signature: tuple, names: str) -> list[dict]:
    return [v.to_dict() for v in library.list_versions(json.loads(names))]


def versions() -> list[dict]:
    """Saved versions (manifest files), newest first, with their names from the store."""
    signature = library.versions_signature()
    if signature == (0, 0):
        return []
    names = {v.id: v.name for v in state.store().list_dataset_versions()}
    return _versions(signature, json.dumps(names, sort_keys=True))


def _open_version(h: str) -> None:
    st.session_state["data.kind"] = VERSION
    st.session_state["data.version"] = h


def versions_section() -> None:
    """The saved versions, what each was made from, actions, and a side-by-side comparison."""
    rows = versions()
    if not rows:
        st.caption("No saved versions yet. Steps ① to ⑤ above make one from a folder, a zip or a CSV.")
        return
    import pandas as pd  # lazy: see the module docstring

    runs = Counter(r.dataset_version_id for r in state.store().list_runs())
    saved = {r["hash"][:16] for r in rows}
    df = pd.DataFrame([{"version": r["hash"][:16], "name": r["name"], "images": r["images"], "classes": r["classes"],
                        "splits": r["splits"], "runs": runs.get(r["hash"], 0), "created (UTC)": r["created"],
                        # a parent that was never saved is the source as scanned
                        "parent": r["parent"] if r["parent"] in saved else "(the scanned source)" * bool(r["parent"]),
                        "source": r["source"], "actions": r["actions"]} for r in rows])
    st.dataframe(df, hide_index=True, width="stretch", key="data.versions.table")
    hashes = [r["hash"] for r in rows]
    by_hash = {r["hash"]: r for r in rows}
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Version", hashes, key="data.versions.pick", format_func=lambda h: _version_label(by_hash[h]))
    thr = state.current_data_config()
    c2.button("🏋️ Train on it", key="data.versions.train", on_click=_train_on, width="stretch",
              args=(pick[:16], thr.many_threshold, thr.few_threshold, "versions"))
    c3.button("🔎 Open in the studio", key="data.versions.open", on_click=_open_version, args=(pick,),
              width="stretch",
              help="Look at it, clean it up or split it again: the result is a new version.")
    if st.session_state.get("data.train_on") == ("versions", pick[:16]) and thr.source == f"version:{pick[:16]}":
        st.success(f"Training will use version `{pick[:16]}`. Next: open **Train** in the sidebar.")
    if len(rows) < 2:
        return
    st.markdown("**Compare two versions**")
    c1, c2, c3 = st.columns([2, 2, 1])
    a = c1.selectbox("Version A", hashes, index=1, key="data.cmp.a", format_func=lambda h: _version_label(by_hash[h]))
    b = c2.selectbox("Version B", hashes, index=0, key="data.cmp.b", format_func=lambda h: _version_label(by_hash[h]))
    try:
        diff = diff_counts(_manifest(a), _manifest(b))
    except DataError as e:
        st.error(f"**Cannot compare:** {e}")
        return
    splits = list(dict.fromkeys(d.split for d in diff))
    split = c3.selectbox("Images in", splits, key="data.cmp.split", help="'all' = every split together")
    rows_ = [d for d in diff if d.split == split]
    st.plotly_chart(charts.version_comparison([d.label for d in rows_], [d.a for d in rows_], [d.b for d in rows_],
                                              name_a=f"A {a[:8]}", name_b=f"B {b[:8]}"), width="stretch")
    changed = sum(d.delta != 0 for d in rows_)
    st.caption(f"{changed} of {len(rows_)} classes differ ({split}); changed classes first.")
    table = pd.DataFrame([{"class": d.label, "A": d.a, "B": d.b, "change": d.delta} for d in rows_])
    table = table.iloc[np.argsort((table["change"] == 0).to_numpy(), kind="stable")]
    st.dataframe(table, hide_index=True, width="stretch", key="data.cmp.table",
                 height=min(36 + 35 * len(table), 320))
