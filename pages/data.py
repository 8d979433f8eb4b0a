"""Data: pick a dataset, see its long tail (head / medium / tail classes), fix what is wrong with it
and save a dataset version to train on."""
import streamlit as st

from dashboard import data_ui, state
from engine.data.sources import DataError

st.title("📊 Data")
st.caption("Choose what to train on. TailLab splits every class into **head** (many-shot), "
           "**medium** and **tail** (few-shot) by its number of training images.")

current = state.current_data_config()

st.subheader("① Choose the images")
kind = st.radio("Source", data_ui.KINDS, horizontal=True, key="data.kind", index=data_ui.initial_kind(current),
                help="Built-in: ready-made long-tailed digits / silhouettes. Your own images: a folder on this "
                     "server, an uploaded zip, a CSV listing files, or a version you saved before.")


def studio() -> None:
    """Your own images: scan -> look -> fix -> classes and splits -> save a version -> train."""
    try:
        ref = data_ui.pick_source(kind, current)
        state.set_in_view(ref)
        if ref is None:
            return
        c1, c2 = st.columns([6, 1], vertical_alignment="center")
        rescan = c2.button("🔄 Rescan", key="data.rescan", help="Read the files again (after changing them).")
        key, scan, base = data_ui.load(ref, rescan=rescan)
        c1.caption(f"`{scan.root}` · {len(scan.images):,} image files · scanned in {scan.seconds:.1f} s "
                   f"({scan.cached:,} from the cache)" + (f" · {len(scan.ignored):,} other files skipped"
                                                          if scan.ignored else ""))
        st.subheader("② Look at it")
        st.caption("How the images spread over classes, what they look like, and a few of each class.")
        settings = data_ui.thresholds(current)
        stats = data_ui.stats(key, scan, settings)
    except DataError as e:
        st.error(f"**This source cannot be used:** {e}")
        return
    except Exception as e:  # noqa: BLE001 — shown, never a stack trace in the user's face
        st.error(f"**Could not read this source:** {type(e).__name__}: {e}")
        return
    data_ui.overview(scan, stats)

    st.subheader("③ Fix problems")
    st.caption("What might hurt training. Tick a fix to apply it to the version you save in ⑤; "
               "your files stay as they are.")
    fixes = data_ui.problems(scan, stats, base)

    st.subheader("④ Classes, splits and long tail")
    st.caption("Drop, rename or merge classes, split every class into train / val / test, and optionally "
               "make the training split long-tailed to study the tail.")
    plan = data_ui.plan_controls(base, fixes)

    st.subheader("⑤ Save a version and train")
    st.caption("A version is a fixed list of (file, class, split) with a content hash: runs trained on it "
               "can always be traced back to exactly these images.")
    data_ui.save_and_train(base, plan, stats, key)


if kind == data_ui.BUILTIN:
    state.set_in_view(None)
    data_ui.builtin(current)
else:
    studio()

st.divider()
st.subheader("🗂️ Saved versions")
st.caption("Every version you saved, what it was made from, and how two versions differ.")
data_ui.versions_section()
