"""The job protocol with real worker processes: finished, cancelled, killed, NaN."""
import os
import signal
import time

import pytest

from tests.conftest import tiny_config
from engine import jobs
from engine.store import RunStatus


def _wait_for(pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.3)
    return False


def test_launch_runs_to_finished_with_metrics(store, workspace):
    run = jobs.launch(tiny_config(), store)
    run = jobs.wait(store, run.id, timeout=180)
    assert run.status == RunStatus.FINISHED, run.error
    assert run.latest["test/acc"] > 0.5
    keys = {p.key for p in store.metric_history(run.id)}
    assert {"train/step_loss", "train/loss", "val/bal_acc", "val/few_acc", "test/acc"} <= keys
    assert len(store.class_results(run.id, "test")) == 10
    assert run.dataset_version_id and store.get_dataset_version(run.dataset_version_id).num_classes == 10
    assert (workspace / "runs" / run.id / "best.pt").is_file()
    assert run.best_val > 0.5 and 1 <= run.best_epoch <= 4 and "best_val_bal_acc" not in run.tags
    assert 0 < run.latest["test/macro_f1"] <= 1 and 0 <= run.latest["test/ece"] <= 1


def test_cancel_ends_as_cancelled(store):
    run = jobs.launch(tiny_config(epochs=50), store)
    assert _wait_for(lambda: "train/step_loss" in store.get_run(run.id).latest)
    jobs.cancel(store, run.id)
    run = jobs.wait(store, run.id, timeout=60)
    assert run.status == RunStatus.CANCELLED and run.error is None


def test_killed_worker_is_failed_not_running_forever(store):
    run = jobs.launch(tiny_config(epochs=50), store)
    assert _wait_for(lambda: store.get_run(run.id).status == RunStatus.RUNNING)
    os.killpg(store.get_run(run.id).pid, signal.SIGKILL)
    run = jobs.wait(store, run.id, timeout=30)
    assert run.status == RunStatus.FAILED
    assert "killed" in run.error


def test_nan_loss_fails_with_message(store):
    run = jobs.launch(tiny_config(loss="ldam", loss_params={"scale": 1e39}, epochs=1), store)
    run = jobs.wait(store, run.id, timeout=120)
    assert run.status == RunStatus.FAILED
    assert "not a finite number" in run.error and "learning rate" in run.error
