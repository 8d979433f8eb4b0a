"""What a newcomer hit on the way (issue 7): the live view, the router, the sidebar, group names,
class order, the augmentation recipe in use. AppTest through the real router, and pure functions."""
import json
import os

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts, views
from engine.store import RunStatus

APP = "../dashboard/app.py"


@pytest.fixture
def home(workspace, monkeypatch):
    workspace.mkdir(parents=True, exist_ok=True)
    monkeypatch.delenv("TAILLAB_DATA_ROOTS", raising=False)  # default roots: the workspace and ~
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    return workspace


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]


# --- the live view -------------------------------------------------------------------------------

def test_progress_says_preparing_before_the_first_step():
    assert views.progress_state(RunStatus.QUEUED, 0, None, 1.0)[0] is None
    frac, text = views.progress_state(RunStatus.RUNNING, 0, 0, 4.0)
    assert frac is None and "Preparing" in text and "0 / 0" not in text
    frac, text = views.progress_state(RunStatus.RUNNING, 0, 120, 4.0)  # total known, no step yet
    assert frac is None and "Preparing" in text
    frac, text = views.progress_state(RunStatus.RUNNING, 30, 120, 10.0)
    assert frac == pytest.approx(0.25) and "step 30 / 120" in text and "ETA" in text
    assert views.progress_state(RunStatus.FINISHED, 120, 120, 10.0)[0] == 1.0


def test_headline_says_its_split_with_short_labels():
    val = {"val/acc": 0.5, "val/bal_acc": 0.4, "val/many_acc": 0.9, "val/medium_acc": 0.3, "val/few_acc": 0.0}
    where, items = views.headline_items(val, RunStatus.RUNNING, epoch=2, epochs=6)
    assert "Validation set" in where and "epoch 2 of 6" in where and "test" in where
    assert [v for _, v in items] == [0.5, 0.4, 0.9, 0.3, 0.0]
    assert all(len(label) <= 13 for label, _ in items)  # five side by side, never cut off
    where, items = views.headline_items({**val, "test/acc": 0.7, "test/few_acc": 0.1}, RunStatus.FINISHED)
    assert "Test set" in where and items[0] == ("Accuracy", 0.7) and items[-1][1] == 0.1


def test_cancelled_run_mentions_checkpoints_only_when_written(home):
    from engine import workspace
    assert not views.has_checkpoint("abc")
    assert not (home / "runs" / "abc").exists()  # asking does not create the folder
    workspace.run_dir("abc")
    assert not views.has_checkpoint("abc")
    (home / "runs" / "abc" / "last.pt").write_bytes(b"x")
    assert views.has_checkpoint("abc")


def test_per_class_accuracy_shows_zero_classes():
    fig = charts.per_class_accuracy(["a", "b", "c", "d"], [0.9, 0.0, None, 0.5], ["many", "few", "few", "medium"],
                                    [500, 5, 5, 60])
    text = {x: t for tr in fig.data for x, t in zip(tr.x, tr.text)}
    assert text == {"a": "90%", "b": "0%", "c": "n/a", "d": "50%"}
    assert all(tr.textposition == "outside" and tr.cliponaxis is False for tr in fig.data)
    assert list(fig.layout.xaxis.categoryarray) == ["a", "d", "b", "c"]  # count, then name
    assert fig.layout.xaxis.dtick == 1  # every class labelled
    assert {tr.name for tr in fig.data} == {"head", "medium", "tail"}


def test_one_class_order_and_group_names():
    assert charts.class_order(["b", "c", "a", "d"], [5, 9, 5, 1]) == [1, 2, 0, 3]
    fig = charts.class_histogram(["b", "c", "a", "d"], [5, 9, 5, 1], ["medium", "many", "medium", "few"])
    assert list(fig.layout.xaxis.categoryarray) == ["c", "a", "b", "d"]
    assert {tr.name for tr in fig.data if tr.type == "bar"} == {"head", "medium", "tail"}


# --- the sidebar ---------------------------------------------------------------------------------

def _sidebar_text(at) -> str:
    return "\n".join([m.value for m in at.sidebar.markdown] + [c.value for c in at.sidebar.caption])


def test_sidebar_shows_a_running_run(home, store):
    run = store.create_run({"epochs": 3}, name="busy-run")
    store.mark_running(run.id, total_steps=10)  # this process: alive, heartbeat now
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["data.kind"] = "Folder on the server"  # no built-in dataset loaded
    at.run()
    _ok(at)
    text = _sidebar_text(at)
    assert "Training now" in text and "busy-run" in text
    store.end_run(run.id, RunStatus.FINISHED)
    at.run()
    assert "busy-run" not in _sidebar_text(at)


def test_sidebar_follows_the_folder_in_view(home):
    from tests.test_data_page import make_folder
    folder = make_folder(home / "pets", {"dog": 12, "cat": 6, "ant": 6, "bee": 3}, corrupt=False, duplicate=False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["data.kind"] = "Folder on the server"
    at.run()
    at.text_input(key="data.folder").set_value(str(folder)).run()
    _ok(at)
    text = _sidebar_text(at)
    assert "folder `pets` (in view on Data)" in text
    assert "Train uses `builtin:mnist`" in text
    # the class table: the histogram's order (count, then name), head / medium / tail names
    table = next(d.value for d in at.dataframe if "group" in d.value.columns)
    assert list(table["class"]) == ["dog", "ant", "cat", "bee"]
    assert set(table["group"]) <= {"head", "medium", "tail"}
