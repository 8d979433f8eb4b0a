"""The Augment & balance page under AppTest (through the router, on a real workspace), the Train
page's use of its recipe, and a MixUp recipe through a real (one-step) training run."""
import dataclasses
import json
import math
import os
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import tiny_config
from engine.augment import PRESETS, TAIL_KEYS, AugmentConfig
from engine.config import ConfigError

APP = "../dashboard/app.py"
PAGE = "../pages/augment.py"


@pytest.fixture
def page(trained_run, monkeypatch):
    home, _ = trained_run
    monkeypatch.setenv("TAILLAB_HOME", str(home))
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    (home / "recipe-in-use.json").unlink(missing_ok=True)  # the recipe in use is the workspace's: start from none
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(PAGE).run()
    _no_exception(at)
    return at


def _no_exception(at):
    assert not at.exception, [e.value for e in at.exception]


def _image_urls(at) -> list[str]:
    return [img.proto.imgs[0].url for img in at.get("image")]


def _charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_every_setting_has_a_widget():
    from dashboard import augment_ui
    fields = {f.name for f in dataclasses.fields(AugmentConfig)}
    widgets = augment_ui.SAMPLE_FIELDS + augment_ui.BATCH_FIELDS
    assert len(widgets) == len(set(widgets)) and set(widgets) | set(TAIL_KEYS) == fields
    assert set(augment_ui.KNOBS) == set(widgets)


def test_page_renders_with_the_baseline_recipe(page):
    at = page
    assert at.title[0].value.endswith("Augment & balance")
    assert not at.error
    # default: dataclass defaults, i.e. no augmentation; it is the active recipe
    assert at.session_state["augment.config"] == AugmentConfig().to_dict()
    assert at.session_state["augment.name"] == "none"
    assert any("Training will use: none" in m.value for m in at.markdown)
    # preview: per row original + eval view + 4 views; the 2 tail classes of MNIST-LT at ratio 100
    # (largest class 1,000: the rarest keep 16 and 10), two images each
    views = at.number_input(key="augment.n").value
    assert len(at.get("image")) == 2 * 2 * (2 + views)
    labels = [m.value for m in at.markdown if "training images" in m.value]
    assert len(labels) == 4 and "10 training images" in labels[0] and "tail" in labels[0], labels


def test_preset_changes_the_preview_and_the_active_recipe(page):
    at = page
    before = _image_urls(at)
    at.selectbox(key="augment.start").set_value("preset:strong").run()
    _no_exception(at)
    after = _image_urls(at)
    assert len(after) == len(before) and after != before
    per_row = 2 + at.number_input(key="augment.n").value
    assert after[:2] == before[:2]  # original and evaluation view stay as they are
    assert at.slider(key="augment.main.hflip_prob").value == 0.5
    assert at.selectbox(key="augment.main.auto_policy").value == "randaugment"
    assert at.session_state["augment.config"] == PRESETS["strong"].to_dict()
    assert at.session_state["augment.name"] == "strong"
    # same seed, same views; another seed, new views
    at.run()
    assert _image_urls(at) == after
    at.number_input(key="augment.seed").set_value(7).run()
    assert _image_urls(at)[2:per_row] != after[2:per_row]
    # a change on top of the preset is named as such
    at.slider(key="augment.main.vflip_prob").set_value(0.25).run()
    assert at.session_state["augment.name"] == "strong (modified)"
    assert at.session_state["augment.config"]["vflip_prob"] == 0.25


@pytest.mark.parametrize("key, value, message", [
    ("augment.main.multi_scale_sizes", "24, abc", "'abc' is not a whole number of pixels"),
    ("augment.main.blur_kernel", 4, "blur_kernel must be odd"),
    ("augment.main.multi_scale_sizes", "200", "multi_scale_sizes [200] out of range"),
])
def test_bad_settings_show_an_error_not_a_traceback(page, key, value, message):
    at = page
    good = at.session_state["augment.config"]
    if key.endswith("blur_kernel"):
        at.slider(key="augment.main.blur_prob").set_value(0.5).run()
        good = at.session_state["augment.config"]
        at.number_input(key=key).set_value(value).run()
    else:
        at.text_input(key=key).set_value(value).run()
    _no_exception(at)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="augment.save").disabled
    assert at.session_state["augment.config"] == good  # the last good recipe stays active
    assert any("fix it to see the preview" in e.value for e in at.error)
    assert not at.get("image")


def test_crop_too_small_for_the_images_is_explained(page):
    at = page
    at.toggle(key="augment.main.random_resized_crop").set_value(True).run()
    at.slider(key="augment.main.rrc_scale").set_value((0.01, 1.0)).run()
    _no_exception(at)
    assert any("raise rrc_scale min to at least" in e.value for e in at.error)


def test_mixup_preview_shows_soft_labels(page):
    at = page
    at.number_input(key="augment.main.mixup_alpha").set_value(1.0).run()
    _no_exception(at)
    captions = [i.proto.imgs[0].caption for i in at.get("image") if i.proto.imgs[0].caption]
    assert len(captions) == 4 and all(c.startswith("mixup: ") and "%" in c for c in captions)  # one per previewed image
    assert any("soft labels" in i.value for i in at.info)


def test_tail_aware_recipe(page):
    at = page
    at.toggle(key="augment.tail_on").set_value(True).run()
    # the threshold starts at the dataset's own tail threshold (20): both previewed classes (16 and
    # 10 images, two rows each) get the tail recipe; lowered to 12, only the class with 10 does
    assert at.number_input(key="augment.tail_threshold").value == 20
    labels = [m.value for m in at.markdown if "training images" in m.value]
    assert sum("tail recipe" in v for v in labels) == 4
    at.number_input(key="augment.tail_threshold").set_value(12).run()
    _no_exception(at)
    cfg = AugmentConfig.from_dict(at.session_state["augment.config"])
    assert cfg.tail_aware and cfg.tail_threshold == 12
    assert cfg.tail_config() == PRESETS["strong"]  # the suggested tail recipe
    labels = [m.value for m in at.markdown if "training images" in m.value]
    assert sum("tail recipe" in v for v in labels) == 2 and all(
        ("tail recipe" in v) == ("10 training images" in v) for v in labels), labels


def test_saving_a_recipe_stores_it_and_makes_it_active(page, trained_run):
    at = page
    name = f"digits-{uuid.uuid4().hex[:6]}"
    at.selectbox(key="augment.start").set_value("preset:light").run()
    at.slider(key="augment.main.rotation_degrees").set_value(15.0).run()
    at.text_input(key="augment.save_name").set_value(name).run()
    at.button(key="augment.save").click().run()
    _no_exception(at)
    from engine.store import open_store
    stored = open_store().recipes()[name]
    assert stored["rotation_degrees"] == 15.0 and stored["random_resized_crop"] is True
    assert at.session_state["augment.config"] == stored
    assert at.session_state["augment.name"] == name
    assert at.selectbox(key="augment.start").value == f"saved:{name}"
    # loading another preset and then the saved recipe brings its settings back
    at.selectbox(key="augment.start").set_value("preset:none").run()
    assert at.slider(key="augment.main.rotation_degrees").value == 0.0
    at.selectbox(key="augment.start").set_value(f"saved:{name}").run()
    assert at.slider(key="augment.main.rotation_degrees").value == 15.0
    assert at.session_state["augment.name"] == name
    # no name: a message, nothing saved
    at.text_input(key="augment.save_name").set_value("  ").run()
    at.button(key="augment.save").click().run()
    assert any("Give the recipe a name" in e.value for e in at.error)


def test_weights_and_sampling_charts(page):
    at = page
    charts = _charts(at)
    assert len(charts) == 2
    weights = next(t for t in charts[0]["data"] if t["name"] == "loss weight")
    assert weights["y"][-1] > 1 > weights["y"][0]  # rarest class (drawn last) weighs the most
    bars = [t for t in charts[0]["data"] if t["type"] == "bar"]
    assert {t["name"] for t in bars} == {"head", "medium", "tail"}  # 5 / 3 / 2 classes at ratio 100
    assert bars[0]["marker"]["color"] == "#4C78A8"
    at.selectbox(key="augment.w_method").set_value("none").run()
    weights = next(t for t in _charts(at)[0]["data"] if t["name"] == "loss weight")
    assert weights["y"] == [1.0] * 10
    # sampling: class-balanced draws the same number of images from every class
    at.selectbox(key="augment.s_sampler").set_value("class_balanced").run()
    draws = next(t for t in _charts(at)[1]["data"] if t["name"] == "drawn per epoch")
    assert max(draws["y"]) == pytest.approx(min(draws["y"]))
    at.selectbox(key="augment.s_sampler").set_value("progressive").run()
    at.slider(key="augment.s_epoch").set_value(5).run()
    draws = next(t for t in _charts(at)[1]["data"] if t["name"] == "drawn per epoch")
    assert max(draws["y"]) == pytest.approx(min(draws["y"]))  # the last epoch is class-balanced
    assert any("seen about" in c.value for c in at.caption)


def test_bad_beta_is_an_error_message(page):
    at = page
    at.selectbox(key="augment.w_method").set_value("effective_number").run()
    at.number_input(key="augment.w_beta").set_value(1.0).run()
    _no_exception(at)
    assert any("beta must be in [0, 1)" in e.value for e in at.error)
    assert len(at.get("plotly_chart")) == 1  # the sampling chart is still there


def test_train_page_shows_the_recipe_and_refuses_mixup_with_focal(page):
    at = page
    at.selectbox(key="augment.start").set_value("preset:light").run()
    at.number_input(key="augment.main.mixup_alpha").set_value(0.2).run()
    at.switch_page("../pages/train.py").run()
    _no_exception(at)
    line = next(c.value for c in at.caption if "Augmentation" in c.value)
    assert "light (modified)" in line and "Rotation ±10°" in line and "MixUp alpha=0.2" in line
    at.selectbox(key="train.loss").set_value("focal").run()
    at.button(key="train.start").click().run()
    _no_exception(at)
    assert any("MixUp/CutMix" in e.value and "balanced_softmax" in e.value for e in at.error)
    # back on the Augment page, the recipe is still there
    at.switch_page(PAGE).run()
    assert at.number_input(key="augment.main.mixup_alpha").value == 0.2
    assert at.session_state["augment.name"] == "light (modified)"


def test_mixup_recipe_trains_end_to_end(workspace):
    from engine.train import fit
    recipe = {"hflip_prob": 0.5, "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "tail_threshold": 10,
              "tail_recipe": {"auto_policy": "trivialaugment"}}
    # counts 60 ... 6, a single batch of every training image: one step
    cfg = tiny_config(epochs=1, batch_size=256, augment=recipe,
                      data={"n_max": 60, "val_per_class": 5, "test_per_class": 10})
    result = fit(cfg)
    assert result.state.step == 1 and math.isfinite(result.state.loss)
    assert 0.0 <= result.test["acc"] <= 1.0


def test_mixup_with_focal_loss_is_refused():
    with pytest.raises(ConfigError, match="Losses that can: ce, weighted_ce"):
        tiny_config(loss="focal", augment={"mixup_alpha": 0.2})


def test_tail_classes_are_previewed_first(page):
    at = page
    from engine.config import DataConfig, to_dict
    at.session_state["data.config"] = to_dict(DataConfig(source="builtin:animal_mnist"))
    at.run()
    _no_exception(at)
    labels = [m.value for m in at.markdown if "training images" in m.value]
    assert labels and all("tail" in v for v in labels)  # Animal-MNIST-LT has 3 tail classes


def test_recipe_caption_for_runs_and_train():
    from dashboard.augment_ui import recipe_caption
    recipe = {"hflip_prob": 0.5, "tail_threshold": 20, "tail_recipe": {"auto_policy": "augmix"}}
    full = recipe_caption(recipe, hint=False)
    assert "Horizontal flip p=0.5" in full and "AugMix" in full and "Augment & balance" not in full
    short = recipe_caption(recipe, "mine")
    assert "**mine**" in short and "own recipe for tail classes (< 20 images)" in short
    assert "AugMix" not in short and "Augment & balance" in short
    assert "No augmentation" in recipe_caption({}, hint=False)
    assert "not usable" in recipe_caption({"hflip": 1}, hint=False)
