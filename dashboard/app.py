"""TailLab dashboard entry point: page config, router, shared sidebar.

    streamlit run dashboard/app.py      (or: taillab dashboard / make run)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import state  # noqa: E402
from dashboard.ui import status_badge  # noqa: E402
from engine import workspace  # noqa: E402

st.set_page_config(page_title="TailLab", page_icon="🦎", layout="wide")

DATA = st.Page("../pages/data.py", title="Data", icon="📊", url_path="data")


def _home() -> None:
    # Streamlit serves the default page at "/" only: a default Data page made "/data" a
    # "Page not found". The app root is this hidden page, which opens Data at /data.
    st.switch_page(DATA)


HOME = st.Page(_home, title="TailLab", icon="🦎", default=True, url_path="home", visibility="hidden")
PAGES = {
    "Prepare": [
        HOME,
        DATA,
        st.Page("../pages/augment.py", title="Augment & balance", icon="🎨", url_path="augment"),
    ],
    "Train": [
        st.Page("../pages/train.py", title="Train", icon="🏋️", url_path="train"),
        st.Page("../pages/runs.py", title="Runs", icon="📈", url_path="runs"),
        st.Page("../pages/compare.py", title="Compare", icon="⚖️", url_path="compare"),
    ],
    "Use": [
        st.Page("../pages/compress.py", title="Compress", icon="🗜️", url_path="compress"),
        st.Page("../pages/predict.py", title="Predict", icon="🔮", url_path="predict"),
    ],
}
nav = st.navigation(PAGES)
state.sync_recipe_in_use()  # the workspace's augmentation recipe, for Augment and Train


@st.fragment(run_every=3)  # seconds; a string ("3s") is parsed with pandas, 0.2 s to import
def training_now() -> None:
    """Active runs. A fragment of its own: the sidebar is drawn before the page runs, so a run
    launched by the Train page (which then only reruns its live fragment) would never show."""
    from engine.store import RunStatus  # the store's first import: after the page (see below)

    runs = [r for r in state.store().list_runs(limit=50) if r.status in RunStatus.ACTIVE]
    active, waiting = [r for r in runs if not r.waiting], [r for r in runs if r.waiting]
    if active:
        st.markdown("**Training now**")
        for r in active[:3]:
            st.caption(f"{status_badge(r.status)} {r.name}")
        if len(active) > 3:
            st.caption(f"… and {len(active) - 3} more on **Runs**")
    if waiting:
        st.caption(f"🕒 {len(waiting)} waiting in the queue (**Train** → Queue)")


with st.sidebar:
    st.markdown("### 🦎 TailLab")
    st.caption("Image classifiers for long-tailed data: head, medium and tail classes, every step.")
    dataset_slot = st.empty()
    training_slot = st.container()
    st.caption(f"Workspace: `{workspace.home()}`")


def show_dataset() -> None:
    line, train_uses = state.dataset_lines(on_data_page=nav.url_path == DATA.url_path)
    with dataset_slot.container():
        st.markdown(f"**Dataset:** {line}")
        if train_uses:
            st.caption(train_uses)


# "Training now" needs the store, whose first use in a server process (sqlalchemy, alembic: about
# 0.5 s) would delay the first page a user sees. On Data (which never stops early) it is drawn
# after the page, while the browser draws the page; on the others before, as a page that stops
# early (st.stop) ends the script. The hidden home page only switches to Data.
training_after_page = nav.url_path in (HOME.url_path, DATA.url_path)
if not training_after_page:
    with training_slot:
        training_now()
show_dataset()  # stays if the page stops early
nav.run()
if training_after_page:
    with training_slot:
        training_now()
show_dataset()  # again: the Data page may have changed the dataset (or the one in view) meanwhile
state.warm_up()  # the page is drawn: torch and torchvision load in the background for Train / Augment
