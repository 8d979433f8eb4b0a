import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from sqlalchemy import inspect, text

from engine.store import RunStatus, open_store
from engine.store.api import RunNotFound
from engine.store.db import current_revision


def test_migration_applies_to_empty_db(tmp_path):
    db = tmp_path / "empty.db"
    store = open_store(f"sqlite:///{db}")
    names = set(inspect(store.engine).get_table_names())
    assert {"runs", "params", "metrics", "latest_metrics", "tags", "class_results", "artifacts",
            "dataset_versions", "recipes", "alembic_version"} <= names
    assert current_revision(store.engine) == "0003"
    assert store.upgrade_notice is None  # a new database is created, not upgraded
    ins = inspect(store.engine)
    idx = {i["name"]: i["column_names"] for i in ins.get_indexes("metrics")}
    assert idx["ix_metrics_run_id_key_step"] == ["run_id", "key", "step"]
    idx = {i["name"]: i["column_names"] for i in ins.get_indexes("latest_metrics")}
    assert idx["ix_latest_metrics_key_value"] == ["key", "value"]
    assert {i["name"] for i in ins.get_indexes("run_labels")} == {"ix_run_labels_label"}
    assert {"starred", "notes", "best_val", "best_epoch", "model", "loss"} <= {
        c["name"] for c in ins.get_columns("runs")}
    assert not list(tmp_path.glob("*.backup-*"))
    with store.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    open_store(f"sqlite:///{db}")  # idempotent


def test_run_lifecycle_params_metrics(db_store):
    store = db_store
    run = store.create_run({"model": "small_cnn", "data": {"source": "builtin:mnist"}}, name="r1")
    assert run.status == RunStatus.QUEUED
    assert store.get_params(run.id) == {"model": "small_cnn", "data.source": "builtin:mnist"}
    store.mark_running(run.id, total_steps=10)
    store.log_metrics(run.id, {"loss": 1.5, "acc": 0.5}, step=1, epoch=1)
    store.log_metrics(run.id, {"loss": float("nan"), "acc": float("inf")}, step=2, epoch=2)
    store.log_metrics(run.id, {"acc": float("-inf")}, step=3, epoch=3)
    hist = store.metric_history(run.id, ["loss"])
    assert [(p.step, p.value) for p in hist] == [(1, 1.5), (2, None)]  # the NaN row is kept: a gap
    assert [p.value for p in store.metric_history(run.id, ["acc"])] == [0.5, None, None]
    got = store.get_run(run.id)
    assert got.latest == {"loss": None, "acc": None}
    with store.engine.connect() as c:  # stored as NULL with the flag, never as NaN or float max
        assert c.execute(text("SELECT COUNT(*) FROM metrics WHERE value IS NULL AND is_nan")).scalar() == 3
    assert got.config["model"] == "small_cnn" and store.facets()["model"] == ["small_cnn"]
    assert got.total_steps == 10 and got.status == RunStatus.RUNNING
    store.end_run(run.id, RunStatus.FINISHED)
    store.end_run(run.id, RunStatus.FAILED, "late")  # first end wins
    assert store.get_run(run.id).status == RunStatus.FINISHED
    with pytest.raises(RunNotFound):
        store.get_run("nope")


def test_class_results_and_groups(db_store):
    store = db_store
    run = store.create_run({}, name="r")
    store.log_class_results(run.id, "test", class_names=["a", "b", "c"], train_counts=[500, 50, 5],
                            support=[10, 10, 0], correct=[9, 5, 0], many_threshold=100, few_threshold=20)
    rows = store.class_results(run.id)
    assert [(r.class_name, r.group, r.accuracy) for r in rows] == [
        ("a", "many", 0.9), ("b", "medium", 0.5), ("c", "few", None)]


def test_dead_worker_is_reaped_as_failed(store):
    run = store.create_run({}, name="r")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.set_pid(run.id, proc.pid)
    store.mark_running(run.id)
    with store.session() as s:  # pretend the dead pid was the worker's
        from engine.store.models import RunRow
        s.get(RunRow, run.id).pid = proc.pid
    assert store.reap_stale() == [run.id]
    got = store.get_run(run.id)
    assert got.status == RunStatus.FAILED and "stopped without reporting" in got.error


def test_silent_worker_on_other_host_is_reaped(db_store):
    store = db_store
    run = store.create_run({}, name="r")
    store.mark_running(run.id)
    with store.session() as s:
        from engine.store.models import RunRow
        row = s.get(RunRow, run.id)
        row.host, row.heartbeat_at = "elsewhere", datetime.utcnow() - timedelta(seconds=60)
    assert store.reap_stale() == [run.id]
    assert "No heartbeat" in store.get_run(run.id).error


def test_cancel_queued_run_without_worker(db_store):
    store = db_store
    run = store.create_run({}, name="r")
    store.request_cancel(run.id)
    assert store.get_run(run.id).status == RunStatus.CANCELLED


def test_dataset_versions_are_idempotent_and_delete_cascades(db_store):
    store = db_store
    v = store.add_dataset_version(id="abc", name="x", source="s",
                                  class_counts={"train": {"a": 3, "b": 1}, "test": {"a": 1, "b": 1}})
    assert (v.num_classes, v.num_images) == (2, 6)
    store.add_dataset_version(id="abc", name="other", source="s", class_counts={})
    assert [x.name for x in store.list_dataset_versions()] == ["x"]
    run = store.create_run({}, name="r", dataset_version_id="abc")
    store.log_metrics(run.id, {"a": 1}, step=0)
    store.set_labels(run.id, ["x"])
    store.delete_run(run.id)
    with store.engine.connect() as c:
        for table in ("metrics", "latest_metrics", "run_labels", "params"):
            assert c.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() == 0, table


def test_recipes_round_trip(db_store):
    store = db_store
    store.save_recipe("light", {"hflip_prob": 0.5})
    assert store.recipes() == {"light": {"hflip_prob": 0.5}}
    with pytest.raises(ValueError):
        store.save_recipe("  ", {})
