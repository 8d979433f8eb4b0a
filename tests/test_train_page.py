"""Train page widgets of issue 10 under AppTest: the job queue (runs at once, reorder, remove),
the new settings reaching the launched config, and Resume on Runs."""
from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest

from engine import jobs
from engine.config import to_dict
from engine.store import RunStatus
from tests.conftest import tiny_config

APP = "../dashboard/app.py"


@pytest.fixture
def at(workspace, monkeypatch):
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    monkeypatch.delenv("TAILLAB_MAX_RUNS", raising=False)
    a = AppTest.from_file(APP, default_timeout=120)
    a.run()
    a.switch_page("../pages/train.py").run()
    assert not a.exception, [e.value for e in a.exception]
    return a


def _busy_and_waiting(store, names):
    busy = store.create_run(to_dict(tiny_config(name="busy")), name="busy")
    store.mark_running(busy.id)  # this test process: alive, so the one slot stays taken
    out = []
    for n in names:
        r = store.create_run(to_dict(tiny_config(name=n)), name=n)
        store.enqueue(r.id)
        out.append(r.id)
    return busy.id, out


def test_queue_lists_moves_and_removes_waiting_runs(at, store):
    busy, (a, b, c) = _busy_and_waiting(store, ["a", "b", "c"])
    at.run()
    assert not at.exception
    assert any("1 training, 3 waiting" in e.label for e in at.expander)
    at.button(key=f"train.queue.up.{c}").click().run()
    assert [r.name for r in store.waiting_runs()] == ["a", "c", "b"]
    at.button(key=f"train.queue.rm.{a}").click().run()
    assert store.get_run(a).status == RunStatus.CANCELLED
    assert [r.name for r in store.waiting_runs()] == ["c", "b"]
    at.number_input(key="train.queue.max").set_value(2).run()
    assert jobs.max_concurrent() == 2
    store.end_run(busy, RunStatus.CANCELLED)
    for rid in (b, c):  # started by the dispatch: cancel before they train
        jobs.cancel(store, rid)
        jobs.kill(store, rid)


def test_new_settings_reach_the_launched_config(at, store):
    at.selectbox(key="train.sched").set_value("multistep").run()
    at.text_input(key="train.milestones").input("2, 3").run()
    at.number_input(key="train.es").set_value(2).run()
    at.number_input(key="train.clip").set_value(1.5).run()
    at.number_input(key="train.freeze").set_value(1).run()
    at.selectbox(key="train.opt").set_value("sgd").run()
    at.checkbox(key="train.nesterov").uncheck().run()
    at.number_input(key="train.epochs").set_value(4).run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="train.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = store.get_run(at.session_state["train.run_id"])
    try:
        c = run.config
        assert (c["scheduler"], c["milestones"], c["early_stop_patience"], c["grad_clip"]) == ("multistep", [2, 3], 2, 1.5)
        assert (c["freeze_backbone_epochs"], c["optimizer"], c["nesterov"]) == (1, "sgd", False)
    finally:
        jobs.cancel(store, run.id)
        jobs.kill(store, run.id)


def test_bad_milestones_are_named(at):
    at.selectbox(key="train.sched").set_value("multistep").run()
    at.text_input(key="train.milestones").input("ten, 20").run()
    at.button(key="train.start").click().run()
    assert any("Milestones must be whole epochs" in e.value for e in at.error)


def test_resume_button_on_runs(workspace, store, monkeypatch):
    """A failed run with a checkpoint offers Resume; a damaged checkpoint gets a clear message."""
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    from engine import workspace as ws
    run = store.create_run(to_dict(tiny_config(name="broken")), name="broken")
    store.end_run(run.id, RunStatus.FAILED, "killed")
    (ws.run_dir(run.id) / "last.pt").write_bytes(b"PK\x03\x04 half a zip")
    a = AppTest.from_file(APP, default_timeout=120)
    a.run()
    a.switch_page("../pages/runs.py").run()
    a.dataframe[0]  # the table is there
    a.session_state[next(k for k in a.session_state if str(k).startswith("runs.table"))] = \
        {"selection": {"rows": [0], "columns": []}}
    a.run()
    a.button(key="runs.resume").click().run()
    assert not a.exception, [e.value for e in a.exception]
    assert any("Cannot resume this run" in e.value and "damaged" in e.value for e in a.error)
    assert store.get_run(run.id).status == RunStatus.FAILED


def test_live_progress_line_and_smoothing():
    from dashboard import views
    frac, text = views.progress_state(RunStatus.RUNNING, 30, 120, 10.0, images_per_s=812.4, memory_mb=903.2)
    assert frac == 0.25 and "ETA 30s" in text and "812 images/s" in text and "903 MB in use" in text
    assert views.progress_state(RunStatus.QUEUED, 0, None, 0.0, waiting=2)[1].startswith("🕒 Waiting in the queue: number 2")
