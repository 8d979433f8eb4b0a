"""Cached handles shared by all pages and sessions (st.cache_resource)."""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING

import streamlit as st

from engine import recipes, workspace
from engine.config import DataConfig, data_config_from_dict, to_dict
from engine.data import sources
from engine.data.datasets import DataPlan, PreparedData, plan_data, prepare_data

if TYPE_CHECKING:
    from engine.store import Store


# --- start-up -----------------------------------------------------------------------------------

# torch and torchvision (about 1.5 s to import) are not needed to draw the Data page: imported here,
# in the background once the first page is drawn, the Train and Augment pages open without the wait.
WARM_MODULES = ("engine.augment", "engine.models", "engine.imbalance")
WARM_DELAY_S = 2.0  # the browser is still drawing the first page's chart: leave it the CPU meanwhile


def _import_all(names: tuple[str, ...]) -> None:
    time.sleep(WARM_DELAY_S)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 — the page that needs it will show the error
            logging.getLogger(__name__).warning("warm-up import of %s failed", name, exc_info=True)


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Start importing WARM_MODULES in a background thread, once per server process."""
    t = threading.Thread(target=_import_all, args=(WARM_MODULES,), name="taillab-warm-up", daemon=True)
    t.start()
    return t


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    from engine.store import open_store  # sqlalchemy + alembic: the app draws the page first

    return open_store(url)


def store() -> Store:
    """The workspace's store. A database that cannot be opened (not a database, a newer TailLab's,
    read-only) stops the page with the store's message; an upgraded one says where its backup is."""
    from engine.store import StoreError

    try:
        s = _store(workspace.db_url())
    except StoreError as e:
        st.error(f"**The workspace's database cannot be opened; nothing was changed.** {e}")
        st.stop()
    if s.upgrade_notice and not st.session_state.get("store.upgrade_shown"):
        st.session_state["store.upgrade_shown"] = True
        st.toast(s.upgrade_notice, icon="🗄️")
    return s


@st.cache_resource(show_spinner="Preparing the dataset ...", max_entries=4)
def _prepared(config_json: str) -> PreparedData:
    return prepare_data(data_config_from_dict(json.loads(config_json)), roots=sources.allowed_roots())


def prepared(cfg: DataConfig) -> PreparedData:
    return _prepared(json.dumps(to_dict(cfg), sort_keys=True))


@st.cache_resource(show_spinner="Reading the dataset ...", max_entries=8)
def _plan(config_json: str, signature: tuple) -> DataPlan:
    # signature in the key: files added to or removed from the folder are seen
    return plan_data(data_config_from_dict(json.loads(config_json)), roots=sources.allowed_roots())


def data_plan(cfg: DataConfig) -> DataPlan:
    """Which images train on, the splits and the data's facts (the allowed roots apply: the path
    came from the browser). Raises DataError with the reason."""
    from engine.data.library import source_signature

    sig = ()
    if not cfg.source.startswith(("builtin:", "version:")):
        sources.check_allowed(cfg.source)
        sig = source_signature(cfg.source)
    base = dataclasses.replace(cfg, image_size=None, channels=None)  # the plan does not depend on them
    return _plan(json.dumps(to_dict(base), sort_keys=True), sig)


DATA_KEY = "data.config"  # the DataConfig (as a dict) chosen on the Data page, used by Train


def current_data_config() -> DataConfig:
    d = st.session_state.get(DATA_KEY)
    return data_config_from_dict(d) if d else DataConfig()


def set_data_config(cfg: DataConfig) -> None:
    st.session_state[DATA_KEY] = to_dict(cfg)


# --- what the sidebar says about the dataset -------------------------------------------------------

IN_VIEW_KEY = "data.in_view"  # (kind, path or hash) of the source the Data studio shows, or None


def set_in_view(ref: tuple[str, str] | None) -> None:
    """Called by the Data page on every run: the studio's source in view (None: the built-ins,
    or nothing chosen yet), so the sidebar can say when it is not what Train uses."""
    st.session_state[IN_VIEW_KEY] = ref


def describe_source(source: str) -> str:
    """A DataConfig source or a studio ref as a short Markdown phrase."""
    if source.startswith("builtin:"):
        return f"`{source}`"
    if source.startswith("version:"):
        h = source.split(":", 1)[1]
        try:
            names = {v.id: v.name for v in store().list_dataset_versions()}
        except Exception:  # noqa: BLE001 — a label only
            names = {}
        name = next((n for i, n in names.items() if i.startswith(h) and n), None)
        return f"version `{h[:12]}`" + (f" ({name})" if name else "")
    kind = "CSV" if source.lower().endswith(".csv") else "folder"
    return f"{kind} `{source.rstrip('/').rsplit('/', 1)[-1] or source}`"


def _ref_source(ref: tuple[str, str]) -> str:
    kind, target = ref
    return f"version:{target}" if kind == "version" else target


def _same(ref_source: str, train_source: str) -> bool:
    if ref_source.startswith("version:") and train_source.startswith("version:"):
        a, b = ref_source[8:], train_source[8:]
        return bool(a and b) and (a.startswith(b) or b.startswith(a))
    return ref_source == train_source


def dataset_lines(*, on_data_page: bool) -> tuple[str, str | None]:
    """(the dataset line, a caption or None). The line names the dataset in view on the Data page
    (elsewhere: the one Train uses); the caption says what Train uses when that differs."""
    cfg = current_data_config()
    train = describe_source(cfg.source) + (f" · ratio {cfg.imbalance_ratio:g}"
                                           if cfg.source.startswith("builtin:") else "")
    ref = st.session_state.get(IN_VIEW_KEY) if on_data_page else None
    if not ref or _same(_ref_source(ref), cfg.source):
        return train, None
    return (f"{describe_source(_ref_source(ref))} (in view on Data)",
            f"Train uses {train}: save the one in view as a version and press **Train on this version** "
            "to train on it.")


# --- the augmentation recipe in use (the workspace's, engine.recipes) --------------------------------

RECIPE_KEY, RECIPE_NAME_KEY = "augment.config", "augment.name"  # what Train trains with, and its name
RECIPE_START_KEY, RECIPE_PROBLEM_KEY = "augment.in_use_start", "augment.in_use_problem"


def sync_recipe_in_use() -> None:
    """Copy the workspace's recipe in use into this session (the router calls it before every page),
    so a new tab, another session or a restart trains with the recipe chosen on Augment & balance."""
    rec = recipes.recipe_in_use()
    s = st.session_state
    s[RECIPE_KEY], s[RECIPE_NAME_KEY], s[RECIPE_START_KEY] = rec["recipe"], rec["name"], rec["start"]
    s[RECIPE_PROBLEM_KEY] = rec.get("problem")


@st.cache_data(show_spinner=False, max_entries=32)
def _class_names(source: str) -> list[str]:
    if source == "builtin:mnist":
        return [str(i) for i in range(10)]  # as engine.data.builtin names them; no 220 MB load for this
    if source == "builtin:animal_mnist":
        from engine.data.builtin import ANIMAL_CLASSES
        return list(ANIMAL_CLASSES)
    if source.startswith("version:"):
        from engine.data.manifest import load_manifest
        return list(load_manifest(source.split(":", 1)[1]).classes)
    return []


def class_names(cfg: DataConfig) -> list[str]:
    """The dataset's class names, cheaply (no images read); [] when they cannot be known cheaply."""
    try:
        return _class_names(cfg.source)
    except Exception:  # noqa: BLE001 — used for warnings only
        return []
