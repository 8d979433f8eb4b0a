"""Jobs (issue 10): the queue, resume after a kill, a killed worker seen by every view, torchrun
from the CLI, and concurrent writers while a reader polls. Real worker processes on a real store."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import jobs, workspace
from engine.store import RunStatus
from engine.train import ResumeError
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parent.parent


def _waiting_run(store, name: str):
    """A run waiting in the queue, made directly (no worker): what launch leaves behind when
    every slot is busy."""
    from engine.config import to_dict
    run = store.create_run(to_dict(tiny_config(name=name)), name=name)
    store.enqueue(run.id)
    return store.get_run(run.id)


def test_queue_order_claims_and_limits(store):
    a, b, c = (_waiting_run(store, n) for n in "abc")
    assert [r.name for r in store.waiting_runs()] == ["a", "b", "c"] and a.waiting
    store.move_in_queue(c.id, 0)
    assert [r.name for r in store.waiting_runs()] == ["c", "a", "b"]
    first = store.claim_next(1)
    assert first.id == c.id and not first.waiting
    assert store.claim_next(1) is None  # one slot, taken (claimed counts as busy)
    assert store.claim_next(2).id == a.id
    jobs.cancel(store, b.id)  # removing a waiting run: cancelled at once, never started
    assert store.get_run(b.id).status == RunStatus.CANCELLED and store.waiting_runs() == []
    with pytest.raises(ValueError, match="still waiting"):
        store.move_in_queue(a.id, 0)
    assert store.reap_stale() == []  # waiting or just-claimed runs are not dead workers


def test_max_concurrent_setting(workspace, monkeypatch):
    monkeypatch.delenv("TAILLAB_MAX_RUNS", raising=False)
    assert jobs.max_concurrent() == 1
    jobs.set_max_concurrent(3)
    assert jobs.max_concurrent() == 3
    monkeypatch.setenv("TAILLAB_MAX_RUNS", "2")
    assert jobs.max_concurrent() == 2
    with pytest.raises(ValueError, match="from 1 to 64"):
        jobs.set_max_concurrent(0)


def test_second_run_waits_then_runs(store, monkeypatch):
    """One run at a time: the second launch waits in the queue and starts when the first ends."""
    monkeypatch.delenv("TAILLAB_MAX_RUNS", raising=False)
    first = jobs.launch(tiny_config(epochs=1, name="first"), store)
    second = jobs.launch(tiny_config(epochs=1, name="second"), store)
    assert not first.waiting and second.waiting
    done = jobs.wait(store, second.id, timeout=300)
    assert done.status == RunStatus.FINISHED
    first = store.get_run(first.id)
    assert first.status == RunStatus.FINISHED and done.started_at >= first.ended_at


def test_kill_then_resume_continues_without_duplicate_steps(store, monkeypatch):
    """A worker killed in its second epoch: `runs show` (get_run) says failed at once; resume
    continues from the epoch-1 checkpoint and the curves hold each step once."""
    monkeypatch.delenv("TAILLAB_MAX_RUNS", raising=False)
    run = jobs.launch(tiny_config(epochs=3, name="killed"), store)
    deadline = time.time() + 240
    while time.time() < deadline:
        pts = [p for p in store.metric_history(run.id, ["val/bal_acc"])]
        steps = [p for p in store.metric_history(run.id, ["train/step_loss"])]
        if pts and steps and steps[-1].step > pts[0].step:  # into epoch 2
            break
        time.sleep(0.2)
    jobs.kill(store, run.id)
    time.sleep(0.5)
    killed = store.get_run(run.id)  # not list_runs: the single-run view reaps too
    assert killed.status == RunStatus.FAILED and "stopped without reporting" in killed.error
    resumed = jobs.resume(store, run.id)
    assert resumed.status in RunStatus.ACTIVE
    done = jobs.wait(store, run.id, timeout=300)
    assert done.status == RunStatus.FINISHED, done.error
    hist = store.metric_history(run.id)
    for key in {p.key for p in hist}:
        steps = [p.step for p in hist if p.key == key]
        assert len(steps) == len(set(steps)), key
    assert [p.epoch for p in hist if p.key == "val/bal_acc"] == [1, 2, 3]
    assert done.latest.get("test/bal_acc", 0) > 0.5, (sorted(done.latest), sorted({p.key for p in hist}))
    assert any("resumed after epoch 1" in n for n in json.loads(done.tags["data_notes"]))


def test_resume_refuses_a_corrupted_checkpoint(store):
    run = store.create_run({"epochs": 1}, name="broken")
    store.end_run(run.id, RunStatus.FAILED, "killed")
    (workspace.run_dir(run.id) / "last.pt").write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(ResumeError, match="damaged"):
        jobs.resume(store, run.id)
    assert store.get_run(run.id).status == RunStatus.FAILED  # nothing changed
    finished = store.create_run({"epochs": 1}, name="done")
    store.end_run(finished.id, RunStatus.FINISHED)
    with pytest.raises(ValueError, match="only a failed or cancelled run"):
        jobs.resume(store, finished.id)


def test_cli_nproc_2_matches_one_process(workspace):
    """`taillab train --nproc 2` runs the worker under torchrun: rank 0 reports, the run has the
    same metric keys as a one-process run, and says it ran data-parallel."""
    env = dict(os.environ, TAILLAB_HOME=str(workspace), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    args = ["train", "--dataset", "mnist", "--imbalance-ratio", "10", "--n-max", "300", "--val-per-class", "20",
            "--test-per-class", "100", "--epochs", "1", "--batch-size", "32", "--threads", "1"]
    outs = [subprocess.run([sys.executable, "-m", "engine.cli", *args, *extra], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=600) for extra in ([], ["--nproc", "2"])]
    for o in outs:
        assert o.returncode == 0, o.stdout[-2000:] + o.stderr[-2000:]
    from engine.store import open_store
    store = open_store()
    one, two = sorted(store.list_runs(), key=lambda r: r.created_at)
    assert two.tags["nproc"] == "2" and "nproc" not in one.tags
    keys = lambda r: sorted({p.key for p in store.metric_history(r.id)})  # noqa: E731
    assert keys(one) == keys(two)
    assert any("data-parallel on 2 processes (gloo)" in n for n in json.loads(two.tags["data_notes"]))
    assert two.latest["test/bal_acc"] > 0.5


def test_two_writers_and_a_reader_never_see_database_is_locked(workspace):
    """Two 'workers' logging metrics as fast as they can while a 'dashboard' lists runs and reads
    curves: no error reaches any of them (WAL, busy timeout, short transactions)."""
    from engine.store import open_store
    runs = [open_store().create_run({}, name=f"w{i}") for i in range(2)]
    errors: list[BaseException] = []
    stop = time.time() + 4

    def write(run_id):
        s = open_store()
        step = 0
        try:
            while time.time() < stop:
                step += 1
                s.log_metrics(run_id, {"train/step_loss": 1.0 / step, "lr": 0.1}, step=step)
                s.heartbeat(run_id)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def read():
        s = open_store()
        try:
            while time.time() < stop:
                s.list_runs()
                s.curves([r.id for r in runs], "train/step_loss")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(r.id,)) for r in runs] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(len(open_store().metric_history(r.id, ["lr"])) > 10 for r in runs)
