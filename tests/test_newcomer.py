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


# --- the augmentation recipe in use ----------------------------------------------------------------

def test_recipe_in_use_lives_in_the_workspace(home):
    from engine import recipes
    from engine.augment import PRESETS
    from engine.config import ConfigError
    assert recipes.recipe_in_use() == recipes.NONE  # nothing chosen yet: no augmentation
    d = recipes.save_recipe_in_use({"rotation_degrees": 10}, name="mine", start="preset:light")
    assert d["recipe"]["rotation_degrees"] == 10.0 and d["recipe"] == recipes.recipe_in_use()["recipe"]
    assert recipes.recipe_in_use()["name"] == "mine"
    assert json.loads((home / "recipe-in-use.json").read_text())["start"] == "preset:light"
    assert not list(home.glob(".recipe-*"))  # no temporary file left behind
    with pytest.raises(ConfigError):
        recipes.save_recipe_in_use({"hflip": 1}, name="bad")
    assert recipes.recipe_in_use()["name"] == "mine"  # a refused recipe changes nothing
    (home / "recipe-in-use.json").write_text("{not json")
    broken = recipes.recipe_in_use()
    assert broken["recipe"] == {} and "cannot be read" in broken["problem"]
    recipes.save_recipe_in_use(PRESETS["strong"].to_dict(), name="strong", start="preset:strong")
    assert recipes.recipe_in_use()["recipe"] == PRESETS["strong"].to_dict()


def test_label_warnings_for_digits_not_for_animals():
    from engine.augment import PRESETS, AugmentConfig, label_warnings, text_like
    digits = [str(i) for i in range(10)]
    assert text_like(digits) and text_like(["digit_0", "digit_1"]) and text_like(["A", "b", "C"])
    assert not text_like(["cat", "dog"]) and not text_like(["7"])
    assert label_warnings(PRESETS["light"], digits) == [] and label_warnings(PRESETS["none"], digits) == []
    strong = label_warnings(PRESETS["strong"], digits)
    assert any("Horizontal flip" in w for w in strong) and any("crop down to 25%" in w for w in strong)
    assert label_warnings(PRESETS["strong"], ["bear", "cat", "dog"]) == []
    upside = label_warnings(AugmentConfig(vflip_prob=0.5, rotation_degrees=40), digits)
    assert any("6 ↔ 9" in w for w in upside) and any("±40°" in w for w in upside)
    assert label_warnings(AugmentConfig(hflip_prob=0.5), ["turn_left", "turn_right", "stop"])
    tail = AugmentConfig(tail_threshold=20, tail_recipe={"hflip_prob": 0.5})
    assert [w for w in label_warnings(tail, digits) if w.startswith("Tail recipe: Horizontal flip")]


def test_a_new_session_trains_with_the_workspace_recipe(home):
    from engine import recipes
    from engine.augment import PRESETS
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("../pages/augment.py").run()
    _ok(at)
    assert not recipes.recipe_in_use_path().exists()  # opening the page writes nothing
    at.selectbox(key="augment.start").set_value("preset:strong").run()
    _ok(at)
    assert recipes.recipe_in_use()["name"] == "strong"
    assert recipes.recipe_in_use()["recipe"] == PRESETS["strong"].to_dict()
    assert any("Horizontal flip" in w.value for w in at.warning)  # MNIST: digits
    # another tab / session: its Train page uses and shows the workspace's recipe, with the warnings
    other = AppTest.from_file(APP, default_timeout=120)
    other.switch_page("../pages/train.py").run()
    _ok(other)
    assert other.session_state["augment.config"] == PRESETS["strong"].to_dict()
    line = next(c.value for c in other.caption if "Augmentation" in c.value)
    assert "**strong**" in line and "RandAugment" in line
    assert any("Horizontal flip" in w.value for w in other.warning)
    # its Augment page opens on that recipe, and follows a change made in the first tab
    other.switch_page("../pages/augment.py").run()
    assert other.selectbox(key="augment.start").value == "preset:strong"
    assert other.slider(key="augment.main.hflip_prob").value == 0.5
    at.selectbox(key="augment.start").set_value("preset:light").run()
    other.run()
    assert other.slider(key="augment.main.hflip_prob").value == 0.0
    assert other.session_state["augment.name"] == "light"


def test_train_says_no_augmentation_plainly(home):
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("../pages/train.py").run()
    _ok(at)
    line = next(c.value for c in at.caption if "Augmentation" in c.value)
    assert "No augmentation" in line and "**none**" in line
    assert not at.warning
