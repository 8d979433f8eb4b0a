import math

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from engine.evaluate import summarize
from engine.train import CancelFit, Callback, NonFiniteLoss, fit, lr_at


def test_short_run_learns_well_above_chance(workspace):
    seen = []

    class Spy(Callback):
        def on_epoch_end(self, state, metrics):
            seen.append(metrics)

    result = fit(tiny_config(), [Spy()], checkpoint_dir=workspace / "ck")
    # 10 balanced test classes: chance is 10 %; the automatic settings reach ~93 % in 4 epochs
    assert result.test["acc"] > 0.85 and result.test["bal_acc"] > 0.85, result.test
    assert len(seen) == 4 and seen[-1]["train/loss"] < seen[0]["train/loss"]
    assert {"val/acc", "val/bal_acc", "val/many_acc", "val/medium_acc", "val/few_acc"} <= set(seen[0])
    ck = torch.load(workspace / "ck" / "best.pt", weights_only=False)
    # the checkpoint stores the resolved settings, never "auto"
    c = ck["config"]
    assert (c["model"], c["loss"], c["optimizer"], c["lr"]) == ("compact_cnn", "logit_adjusted", "adamw", 2e-3)
    assert (c["data"]["image_size"], c["data"]["channels"]) == (28, 1) and ck["eval_spec"]["size"] == 28
    assert ck["train_counts"] == [math.floor(300 * 10 ** (-i / 9)) for i in range(10)]
    assert (workspace / "ck" / "last.pt").exists()


def test_summarize_by_hand():
    targets = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    preds = np.array([0, 0, 0, 1, 1, 0, 2, 0])
    m = summarize(preds, targets, 3, ["many", "medium", "few"])
    assert m["acc"] == pytest.approx(5 / 8)
    assert m["bal_acc"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert (m["many_acc"], m["medium_acc"], m["few_acc"]) == (0.75, 0.5, 0.5)
    m = summarize(preds, targets, 3, ["many", "many", "many"])
    assert math.isnan(m["few_acc"])


def test_lr_schedule():
    assert lr_at(0, total=100, warmup=10, peak=1.0, schedule="cosine") == pytest.approx(0.1)
    assert lr_at(10, total=110, warmup=10, peak=1.0, schedule="cosine") == pytest.approx(1.0)
    assert lr_at(60, total=110, warmup=10, peak=1.0, schedule="cosine") == pytest.approx(0.5)
    assert lr_at(110, total=110, warmup=10, peak=1.0, schedule="cosine") == pytest.approx(0.0)
    assert lr_at(50, total=100, warmup=0, peak=0.3, schedule="constant") == 0.3


def test_nan_loss_stops_with_a_readable_message(workspace):
    cfg = tiny_config(loss="ldam", loss_params={"scale": 1e39}, epochs=1)
    with pytest.raises(NonFiniteLoss, match="not a finite number"):
        fit(cfg)


def test_cancel_callback_stops_the_loop(workspace):
    class StopAt3(Callback):
        def on_step_end(self, state):
            if state.step == 3:
                raise CancelFit()

    with pytest.raises(CancelFit):
        fit(tiny_config(), [StopAt3()])


@pytest.mark.parametrize("loss, sampler", [("balanced_softmax", "class_balanced"),
                                           ("ldam", "progressive"), ("focal", "sqrt")])
def test_long_tail_settings_train(workspace, loss, sampler):
    r = fit(tiny_config(loss=loss, sampler=sampler, epochs=1, drw_epoch=0 if loss == "ldam" else None))
    assert 0 <= r.test["bal_acc"] <= 1
