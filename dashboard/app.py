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
from engine.store import RunStatus  # noqa: E402

st.set_page_config(page_title="TailLab", page_icon="🦎", layout="wide")

PAGES = {
    "Prepare": [
        st.Page("../pages/data.py", title="Data", icon="📊", default=True, url_path="data"),
        st.Page("../pages/augment.py", title="Augment & balance", icon="🎨", url_path="augment"),
    ],
    "Train": [
        st.Page("../pages/train.py", title="Train", icon="🏋️", url_path="train"),
        st.Page("../pages/runs.py", title="Runs", icon="📈", url_path="runs"),
    ],
    "Use": [
        st.Page("../pages/predict.py", title="Predict", icon="🔮", url_path="predict"),
    ],
}
nav = st.navigation(PAGES)

with st.sidebar:
    st.markdown("### 🦎 TailLab")
    st.caption("Image classifiers for long-tailed data: head, medium and tail classes, every step.")
    cfg = state.current_data_config()
    st.markdown(f"**Dataset:** `{cfg.source}`" + (f" · ratio {cfg.imbalance_ratio:g}"
                                                  if cfg.source.startswith("builtin:") else ""))
    active = [r for r in state.store().list_runs(limit=50) if r.status in RunStatus.ACTIVE]
    if active:
        st.markdown("**Training now**")
        for r in active[:3]:
            st.caption(f"{status_badge(r.status)} {r.name}")
    st.caption(f"Workspace: `{workspace.home()}`")

nav.run()
