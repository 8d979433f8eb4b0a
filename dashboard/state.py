"""Cached handles shared by all pages and sessions (st.cache_resource)."""
from __future__ import annotations

import json

import streamlit as st

from engine import workspace
from engine.config import DataConfig, data_config_from_dict, to_dict
from engine.data.datasets import PreparedData, prepare_data
from engine.infer import Predictor
from engine.store import Store, open_store


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return open_store(url)


def store() -> Store:
    return _store(workspace.db_url())


@st.cache_resource(show_spinner="Preparing the dataset ...", max_entries=4)
def _prepared(config_json: str) -> PreparedData:
    return prepare_data(data_config_from_dict(json.loads(config_json)))


def prepared(cfg: DataConfig) -> PreparedData:
    return _prepared(json.dumps(to_dict(cfg), sort_keys=True))


@st.cache_resource(show_spinner="Loading the model ...", max_entries=4)
def predictor(run_id: str, checkpoint_mtime: float) -> Predictor:
    # mtime in the key: a re-written checkpoint is reloaded
    return Predictor.for_run(run_id)


DATA_KEY = "data.config"  # the DataConfig (as a dict) chosen on the Data page, used by Train


def current_data_config() -> DataConfig:
    d = st.session_state.get(DATA_KEY)
    return data_config_from_dict(d) if d else DataConfig()


def set_data_config(cfg: DataConfig) -> None:
    st.session_state[DATA_KEY] = to_dict(cfg)
