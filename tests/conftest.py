"""Shared fixtures: a real workspace (SQLite file) in tmp_path, and one small finished run.

The built-in datasets' decoded arrays are cached once per test session (TAILLAB_CACHE_DIR), so
each test's fresh workspace does not re-parse the 220 MB MNIST pickle.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session", autouse=True)
def _shared_cache(tmp_path_factory):
    cache = os.environ.get("TAILLAB_TEST_CACHE") or str(tmp_path_factory.mktemp("builtin-cache"))
    os.environ["TAILLAB_CACHE_DIR"] = cache
    yield


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "ws"
    monkeypatch.setenv("TAILLAB_HOME", str(home))
    monkeypatch.delenv("TAILLAB_DB_URL", raising=False)
    return home


@pytest.fixture
def store(workspace):
    from engine.store import open_store
    return open_store()


def tiny_config(**overrides):
    """A few seconds of training on a small MNIST-LT slice (counts 300 ... 30), automatic settings."""
    from engine.config import DataConfig, TrainConfig
    data = dict(source="builtin:mnist", imbalance_ratio=10.0, n_max=300, val_per_class=20,
                test_per_class=100)
    data.update(overrides.pop("data", {}))
    kw = dict(data=DataConfig(**data), epochs=4, batch_size=32, log_every=5)  # the rest: auto
    kw.update(overrides)
    return TrainConfig(**kw)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """(workspace path, run id) of one finished run, trained in-process through the worker."""
    home = tmp_path_factory.mktemp("trained-ws")
    old = os.environ.get("TAILLAB_HOME")
    os.environ["TAILLAB_HOME"] = str(home)
    try:
        from engine import worker
        from engine.config import to_dict
        from engine.store import open_store
        store = open_store()
        cfg = tiny_config()
        run = store.create_run(to_dict(cfg), name="fixture-run")
        assert worker.run(run.id, store) == "finished", store.get_run(run.id).error
        yield home, run.id
    finally:
        if old is None:
            os.environ.pop("TAILLAB_HOME", None)
        else:
            os.environ["TAILLAB_HOME"] = old


@pytest.fixture
def ws(trained_run, tmp_path, monkeypatch):
    """(store, id of the finished run) in a private copy of the trained run's workspace, for
    tests that add child runs (post-hoc, pruning, distillation) without touching the shared one."""
    import shutil

    home, run_id = trained_run
    copy = tmp_path / "ws"
    shutil.copytree(home, copy)
    monkeypatch.setenv("TAILLAB_HOME", str(copy))
    monkeypatch.delenv("TAILLAB_DB_URL", raising=False)
    from engine.store import open_store
    return open_store(), run_id
