"""Small UI helpers shared by the pages."""
from __future__ import annotations

import functools
import math
from datetime import datetime

import streamlit as st


def pct(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 100:.1f}%"


def duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def when(ts: datetime | None) -> str:
    return "—" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


@functools.cache
def _status_icons() -> dict[str, str]:
    from engine.store import RunStatus  # not at import: app.py imports the store after the page

    return {RunStatus.QUEUED: "⏳", RunStatus.RUNNING: "🏃", RunStatus.FINISHED: "✅",
            RunStatus.FAILED: "❌", RunStatus.CANCELLED: "⏹️"}


def status_badge(status: str) -> str:
    return f"{_status_icons().get(status, '')} {status}"


def guard(condition: bool, message: str) -> None:
    """Show ``message`` and stop the page unless ``condition`` holds."""
    if not condition:
        st.info(message)
        st.stop()
