"""Shared fixtures: a real workspace (SQLite file) in tmp_path, and one small finished run.

The built-in datasets' decoded arrays are cached once per test session (TAILLAB_CACHE_DIR), so
each test's fresh workspace does not re-parse the 220 MB MNIST pickle.
"""
from __future__ import annotations

import os
import sys
import uuid
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


# The store tests run on SQLite always and on PostgreSQL too when TAILLAB_TEST_PG_URL names a
# server where the role may create databases (.ci/run starts one): each test gets a fresh database.
PG_URL = os.environ.get("TAILLAB_TEST_PG_URL")
DB_BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=DB_BACKENDS)
def db_url(request, tmp_path):
    """A SQLAlchemy URL of an empty database: a SQLite file, or a fresh PostgreSQL database
    (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from sqlalchemy import create_engine, make_url, text

    from engine.store.db import normalise_url
    base = make_url(normalise_url(PG_URL))
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"taillab_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def db_store(db_url):
    """A Store on ``db_url`` (both backends)."""
    from engine.store import open_store
    s = open_store(db_url)
    yield s
    s.engine.dispose()


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
