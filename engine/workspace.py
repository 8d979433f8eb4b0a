"""Where TailLab keeps everything: one folder, ``./taillab-workspace`` or ``$TAILLAB_HOME``."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "taillab-workspace"


def home() -> Path:
    """The workspace folder (created on first use)."""
    p = Path(os.environ.get("TAILLAB_HOME") or DEFAULT_HOME).expanduser().resolve()
    p.mkdir(parents=True, exist_ok=True)
    return p


def db_url() -> str:
    """SQLAlchemy URL of the store: ``$TAILLAB_DB_URL`` or a SQLite file in the workspace."""
    return os.environ.get("TAILLAB_DB_URL") or f"sqlite:///{home() / 'taillab.db'}"


def run_dir(run_id: str) -> Path:
    p = home() / "runs" / run_id
    p.mkdir(parents=True, exist_ok=True)
    return p


def best_checkpoint(run_id: str) -> Path:
    """A run's best checkpoint: what prediction, ``init_from`` and post-hoc methods load."""
    return home() / "runs" / run_id / "best.pt"


def cache_dir() -> Path:
    p = Path(os.environ["TAILLAB_CACHE_DIR"]) if os.environ.get("TAILLAB_CACHE_DIR") else home() / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p
