"""engine.augment: every knob on tiny real tensors, previews, tail-aware recipes, batch ops, checks."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from engine.augment import (
    PRESETS,
    AugmentConfig,
    build_batch_transform,
    build_train_transform,
    describe,
    preview,
    preview_batch_mix,
    tail_classes,
    validate_for_training,
)
from engine.config import ConfigError
from engine.transforms import EvalSpec, eval_transform

SIZE = 28
SHAPES = [(28, 28), (50, 37)]


def norm(channels):
    return dict(mean=(0.5,) * channels, std=(0.25,) * channels)


def make_image(channels, h, w, seed=0):
    """A structured image (gradient + blocks + noise) so geometric ops visibly change it."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    base = (xx * 255 // max(w - 1, 1) + (yy < h // 3) * 60).clamp(0, 255)
    img = torch.stack([(base + 40 * c) % 256 for c in range(channels)]).float()
    img += torch.randint(0, 30, img.shape, generator=g)
    return img.clamp(0, 255).to(torch.uint8)


def eval_view(img, channels, size=SIZE):
    return eval_transform(EvalSpec(size, channels, **norm(channels)))(img)


def train(cfg, channels, size=SIZE, class_counts=None):
    return build_train_transform(cfg, size=size, channels=channels, class_counts=class_counts, **norm(channels))


# --- every knob ---------------------------------------------------------------------------------

KNOBS = {
    "hflip": dict(hflip_prob=1.0),
    "vflip": dict(vflip_prob=1.0),
    "rotation": dict(rotation_degrees=30),
    "random_resized_crop": dict(random_resized_crop=True, rrc_scale=(0.3, 0.6)),
    "crop_padding": dict(crop_padding=4),
    "crop_padding_reflect": dict(crop_padding=4, padding_mode="reflect"),
    "color_jitter": dict(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1),
    "grayscale": dict(grayscale_prob=1.0),
    "blur": dict(blur_prob=1.0, blur_kernel=5, blur_sigma=(1.0, 2.0)),
    "erasing": dict(erasing_prob=1.0, erasing_scale=(0.1, 0.3)),
    "autoaugment": dict(auto_policy="autoaugment", autoaugment_policy="svhn"),
    "randaugment": dict(auto_policy="randaugment", randaugment_num_ops=3, randaugment_magnitude=20),
    "trivialaugment": dict(auto_policy="trivialaugment"),
    "augmix": dict(auto_policy="augmix", augmix_severity=5),
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("knob", list(KNOBS))
def test_every_knob_gives_normalised_size_x_size(knob, shape, channels):
    img = make_image(channels, *shape)
    t = train(AugmentConfig(**KNOBS[knob]), channels)
    ref = eval_view(img, channels)
    changed = 0
    for seed in range(3):
        torch.manual_seed(seed)
        out = t(img, 0)
        assert out.shape == (channels, SIZE, SIZE) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        changed += not torch.equal(out, ref)
    if knob == "grayscale" and channels == 1:
        assert changed == 0  # nothing to drop on a grey image
    else:
        assert changed >= 2  # each knob visibly acts (policies may draw "identity" once)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_augmentation_is_the_eval_view_and_flips_are_exact(shape, channels):
    img = make_image(channels, *shape)
    ref = eval_view(img, channels)
    assert torch.equal(train(AugmentConfig(), channels)(img, 0), ref)
    assert torch.equal(train(AugmentConfig(hflip_prob=1.0), channels)(img, 0), torch.flip(ref, dims=[-1]))
    assert torch.equal(train(AugmentConfig(vflip_prob=1.0), channels)(img, 0), torch.flip(ref, dims=[-2]))


def test_grayscale_makes_rgb_channels_equal_and_input_channels_are_converted():
    img = make_image(3, 28, 28)
    out = train(AugmentConfig(grayscale_prob=1.0), 3)(img, 0)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert train(AugmentConfig(), 1)(img, 0).shape == (1, SIZE, SIZE)  # RGB source, grey run
    assert train(AugmentConfig(), 3)(make_image(1, 28, 28), 0).shape == (3, SIZE, SIZE)
    with pytest.raises(TypeError, match="uint8"):
        train(AugmentConfig(), 1)(img.float(), 0)


def test_global_seed_reproduces_and_transform_pickles():
    img = make_image(3, 50, 37)
    t = train(PRESETS["strong"], 3)
    t2 = pickle.loads(pickle.dumps(t))  # DataLoader workers need this
    torch.manual_seed(7)
    a = [t(img, 0) for _ in range(3)]
    torch.manual_seed(7)
    b = [t2(img, 0) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])


# --- tail-aware ---------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_tail_recipe_applies_only_to_tail_labels(channels):
    cfg = AugmentConfig(tail_threshold=10, tail_recipe={"vflip_prob": 1.0})
    counts = [500, 3, 10, 9]  # labels 1 and 3 are tail (< 10); 10 itself is not
    t = train(cfg, channels, class_counts=counts)
    img = make_image(channels, 50, 37)
    ref = eval_view(img, channels)
    for label in (0, 2):
        assert torch.equal(t(img, label), ref)
    for label in (1, torch.tensor(3)):
        assert torch.equal(t(img, label), torch.flip(ref, dims=[-2]))
    assert tail_classes(cfg, counts) == [1, 3]
    assert tail_classes(cfg, {0: 500, 7: 2}) == [7]
    assert tail_classes(AugmentConfig(), counts) == []


def test_tail_recipe_needs_counts_and_rejects_batch_ops_and_nesting():
    cfg = AugmentConfig(tail_threshold=10, tail_recipe={"vflip_prob": 1.0})
    with pytest.raises(ConfigError, match="class counts"):
        train(cfg, 1)
    with pytest.raises(ConfigError, match="tail_recipe cannot set mixup_alpha"):
        AugmentConfig(tail_threshold=5, tail_recipe={"mixup_alpha": 0.2})
    with pytest.raises(ConfigError, match="tail_recipe cannot set tail_threshold"):
        AugmentConfig(tail_threshold=5, tail_recipe={"tail_threshold": 3})
    with pytest.raises(ConfigError, match=r"tail_recipe: hflip_prob must be between 0 and 1"):
        AugmentConfig(tail_threshold=5, tail_recipe={"hflip_prob": 2})
    with pytest.raises(ConfigError, match="tail_recipe: Unknown augmentation setting"):
        AugmentConfig(tail_threshold=5, tail_recipe={"flip": 1})


def test_tail_recipe_is_stored_canonically():
    a = AugmentConfig(tail_threshold=5, tail_recipe={"vflip_prob": 1, "hflip_prob": 0.0})
    b = AugmentConfig(tail_threshold=5, tail_recipe=AugmentConfig(vflip_prob=1.0))
    assert a == b and hash(a) == hash(b)
    assert a.tail_recipe == {"vflip_prob": 1.0}
    strong = AugmentConfig(tail_threshold=20, tail_recipe=PRESETS["strong"].to_dict())
    assert strong.tail_config() == PRESETS["strong"]


# --- batch ops ----------------------------------------------------------------------------------

def batch(n=8, channels=3, size=SIZE):
    return torch.randn(n, channels, size, size), torch.arange(n) % 4


def test_no_batch_op_gives_none():
    assert build_batch_transform(AugmentConfig(), num_classes=4, size=SIZE) is None
    assert build_batch_transform(PRESETS["strong"], num_classes=4, size=SIZE) is None
    assert build_batch_transform(AugmentConfig(mixup_alpha=0.2, mix_prob=0.0), num_classes=4, size=SIZE) is None


@pytest.mark.parametrize("settings", [dict(mixup_alpha=0.4), dict(cutmix_alpha=1.0),
                                      dict(mixup_alpha=0.2, cutmix_alpha=1.0)], ids=["mixup", "cutmix", "both"])
def test_mixup_cutmix_give_soft_targets(settings):
    bt = build_batch_transform(AugmentConfig(**settings), num_classes=4, size=SIZE)
    x, y = batch()
    torch.manual_seed(0)
    xo, yo = bt(x.clone(), y)
    assert xo.shape == x.shape and yo.shape == (8, 4) and yo.dtype == torch.float32
    assert torch.allclose(yo.sum(1), torch.ones(8))
    assert (yo >= 0).all()
    assert not torch.equal(xo, x)
    # the own class keeps the largest-or-shared weight unless the partner has the same class
    assert (yo.argmax(1) != y).sum() <= 8
    torch.manual_seed(0)
    xo2, yo2 = bt(x.clone(), y)
    assert torch.equal(xo, xo2) and torch.equal(yo, yo2)


def test_unmixed_batches_still_get_one_hot_targets():
    bt = build_batch_transform(AugmentConfig(mixup_alpha=0.2, mix_prob=1e-9), num_classes=4, size=SIZE)
    x, y = batch()
    xo, yo = bt(x.clone(), y)
    assert torch.equal(xo, x)
    assert torch.equal(yo, torch.nn.functional.one_hot(y, 4).float())
    # a last batch of one image (drop_last=False) has no partner to mix with
    bt = build_batch_transform(AugmentConfig(cutmix_alpha=1.0), num_classes=4, size=SIZE)
    xo, yo = bt(x[:1].clone(), y[:1])
    assert torch.equal(xo, x[:1]) and torch.equal(yo, torch.nn.functional.one_hot(y[:1], 4).float())


def test_multi_scale_resizes_the_batch_to_one_listed_size():
    sizes = (20, 28, 36)
    bt = build_batch_transform(AugmentConfig(multi_scale_sizes=sizes), num_classes=4, size=SIZE)
    x, y = batch()
    seen = set()
    torch.manual_seed(0)
    for _ in range(12):
        xo, yo = bt(x, y)
        assert xo.shape[:2] == (8, 3) and xo.shape[2] == xo.shape[3] and xo.shape[2] in sizes
        assert torch.equal(yo, y)  # targets untouched without MixUp/CutMix
        seen.add(xo.shape[2])
    assert seen == set(sizes)


# --- previews -----------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_preview_is_deterministic_and_leaves_global_rng_alone(channels):
    imgs = [make_image(channels, 28, 28, 0), make_image(channels, 50, 37, 1)]
    cfg = PRESETS["strong"]
    kw = dict(n=3, size=32, channels=channels, **norm(channels))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = preview(cfg, imgs, [0, 1], seed=5, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    b = preview(cfg, imgs, [0, 1], seed=5, **kw)
    c = preview(cfg, imgs, [0, 1], seed=6, **kw)
    assert len(a) == 2
    for ra, rb in zip(a, b):
        assert ra.original.shape == ra.eval_view.shape == (32, 32, channels)
        assert ra.original.dtype == ra.eval_view.dtype == np.uint8
        assert len(ra.augmented) == 3 and all(v.shape == (32, 32, channels) and v.dtype == np.uint8
                                              for v in ra.augmented)
        assert all(np.array_equal(x, y) for x, y in zip(ra.augmented, rb.augmented))
    assert any(not np.array_equal(x, y) for ra, rc in zip(a, c) for x, y in zip(ra.augmented, rc.augmented))
    # the eval view is the eval transform, de-normalised; the original is the resized source
    assert np.abs(a[0].eval_view.astype(int) - a[0].original.astype(int)).max() <= 1


def test_preview_shows_flips_and_tail_recipe():
    img = make_image(3, 50, 37)
    counts = [100, 2]
    cfg = AugmentConfig(tail_threshold=10, tail_recipe={"hflip_prob": 1.0})
    rows = preview(cfg, [img, img], [0, 1], n=2, seed=0, size=SIZE, channels=3, class_counts=counts, **norm(3))
    head, tail = rows
    assert all(np.array_equal(v, head.eval_view) for v in head.augmented)
    assert all(np.array_equal(v, tail.eval_view[:, ::-1]) for v in tail.augmented)


def test_preview_batch_mix():
    imgs = [make_image(3, 28, 28, s) for s in range(4)]
    cfg = AugmentConfig(mixup_alpha=1.0, cutmix_alpha=1.0)
    kw = dict(num_classes=5, size=SIZE, channels=3, **norm(3))
    state = torch.get_rng_state()
    a = preview_batch_mix(cfg, imgs, [0, 1, 2, 3], seed=1, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    b = preview_batch_mix(cfg, imgs, [0, 1, 2, 3], seed=1, **kw)
    assert len(a) == 4
    for i, (m, m2) in enumerate(zip(a, b)):
        assert m.image.shape == (SIZE, SIZE, 3) and m.image.dtype == np.uint8
        assert m.soft_label.shape == (5,) and abs(m.soft_label.sum() - 1) < 1e-5
        assert set(np.nonzero(m.soft_label)[0]) <= {i, (i + 1) % 4}
        assert m.op in ("mixup", "cutmix") and np.array_equal(m.image, m2.image)
    assert preview_batch_mix(AugmentConfig(), imgs, [0, 1, 2, 3], seed=1, **kw) == []
    with pytest.raises(ConfigError, match="at least 2 images"):
        preview_batch_mix(cfg, imgs[:1], [0], seed=1, **kw)


# --- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    (dict(hflip_prob=1.5), "hflip_prob must be between 0 and 1"),
    (dict(vflip_prob=True), "vflip_prob must be a number"),
    (dict(rotation_degrees=270), "rotation_degrees must be between 0 and 180"),
    (dict(rrc_scale=(0.0, 1.0)), r"rrc_scale must be \[min, max\]"),
    (dict(rrc_scale=(0.9, 0.5)), "min <= max"),
    (dict(crop_padding=-1), "crop_padding must be a whole number from 0"),
    (dict(padding_mode="wrap"), "Valid choices: constant, edge, reflect"),
    (dict(hue=0.7), "hue must be between 0 and 0.5"),
    (dict(blur_kernel=4), "blur_kernel must be odd"),
    (dict(erasing_scale=(0.0, 0.3)), r"erasing_scale .* in \(0, 1\)"),
    (dict(erasing_scale=(0.1, 1.0)), r"erasing_scale .* in \(0, 1\)"),
    (dict(auto_policy="autoaug"), "Valid choices: none, autoaugment, randaugment, trivialaugment, augmix"),
    (dict(autoaugment_policy="mnist"), "Valid choices: imagenet, cifar10, svhn"),
    (dict(randaugment_magnitude=31), "randaugment_magnitude must be a whole number from 0 to 30"),
    (dict(augmix_depth=0), "augmix_depth"),
    (dict(mixup_alpha=-0.1), "mixup_alpha must be between 0 and 100"),
    (dict(multi_scale_sizes=[4, 28]), "multi_scale_sizes entry must be a whole number from 8"),
    (dict(multi_scale_sizes=28), "multi_scale_sizes must be a list"),
    (dict(tail_threshold=-2), "tail_threshold must be a whole number"),
])
def test_bad_settings_raise_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        AugmentConfig(**settings)


def test_unknown_key_lists_valid_settings():
    with pytest.raises(ConfigError, match=r"Unknown augmentation setting\(s\): flip\. Valid settings: .*hflip_prob"):
        AugmentConfig.from_dict({"flip": 0.5})


@pytest.mark.parametrize("settings, kw, message", [
    (dict(mixup_alpha=0.2), dict(batch_size=1), "batch_size >= 2, got 1"),
    (dict(cutmix_alpha=1.0), dict(batch_size=1), "MixUp/CutMix"),
    (dict(multi_scale_sizes=[200]), {}, r"multi_scale_sizes \[200\] out of range.*between 8 and 112"),
    (dict(multi_scale_sizes=[8, 28]), dict(input_size=64), "between 16 and 256"),
    (dict(random_resized_crop=True, rrc_scale=(0.01, 1.0)), {}, "raise rrc_scale min to at least 0.11"),
    (dict(crop_padding=28), {}, "crop_padding 28 px must be smaller than the 28 px model input"),
    (dict(blur_prob=0.5, blur_kernel=31), {}, "blur_kernel 31 px is larger"),
    (dict(tail_threshold=5, tail_recipe={"crop_padding": 40}), {}, "tail_recipe: crop_padding 40"),
])
def test_validate_for_training_errors(settings, kw, message):
    args = dict(batch_size=64, input_size=28, image_size=28) | kw
    with pytest.raises(ConfigError, match=message):
        validate_for_training(AugmentConfig(**settings), **args)


def test_validate_for_training_lists_every_error_at_once():
    cfg = AugmentConfig(mixup_alpha=0.2, crop_padding=30)
    with pytest.raises(ConfigError) as e:
        validate_for_training(cfg, batch_size=1, input_size=28, image_size=28)
    assert "batch_size" in str(e.value) and "crop_padding" in str(e.value)


def test_validate_for_training_warnings():
    def warn(**settings):
        return " | ".join(validate_for_training(AugmentConfig(**settings), batch_size=64, input_size=28,
                                                image_size=(50, 37), channels=1))
    assert validate_for_training(AugmentConfig(), batch_size=1, input_size=28, image_size=28) == []
    assert "upside down. With vertical flips" in warn(vflip_prob=0.5, rotation_degrees=120)
    assert "no effect on 1-channel" in warn(saturation=0.4)
    assert "any input size" in warn(multi_scale_sizes=[24, 32])
    assert "tail-aware augmentation is off" in warn(tail_threshold=10)
    assert "not used" in warn(tail_recipe={"hflip_prob": 0.5})
    assert "mostly padding" in warn(crop_padding=10)


# --- serialisation, presets, text -------------------------------------------------------------------

def test_round_trip_and_baseline():
    assert AugmentConfig.from_dict({}) == AugmentConfig() == PRESETS["none"]
    assert AugmentConfig.from_dict(None) == AugmentConfig()
    cfg = AugmentConfig(hflip_prob=0.5, rrc_scale=[0.3, 0.9], multi_scale_sizes=[24, 32], mixup_alpha=0.2,
                        auto_policy="augmix", augmix_depth=2, tail_threshold=20,
                        tail_recipe={"auto_policy": "randaugment", "erasing_prob": 0.5})
    d = cfg.to_dict()
    assert AugmentConfig.from_dict(d) == cfg
    assert AugmentConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert cfg.rrc_scale == (0.3, 0.9) and cfg.multi_scale_sizes == (24, 32)
    assert all(v is not None for v in d.values())  # TOML has no null


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_for_mnist_and_folders(name):
    cfg = PRESETS[name]
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    for input_size, image_size, channels in ((28, 28, 1), (64, (50, 37), 3)):
        warnings = validate_for_training(cfg, batch_size=128, input_size=input_size, image_size=image_size,
                                         channels=channels)
        # "standard" jitters saturation, which a grey image cannot show; nothing else is risky
        assert all("no effect on 1-channel" in w for w in warnings) and (channels == 1 or not warnings)
        out = train(cfg, channels, size=input_size)(make_image(channels, 28, 28), 0)
        assert out.shape == (channels, input_size, input_size)


def test_describe():
    assert describe(AugmentConfig()) == ["No augmentation"]
    cfg = AugmentConfig(hflip_prob=0.5, auto_policy="randaugment", mixup_alpha=0.2, cutmix_alpha=1.0,
                        mix_prob=0.5, multi_scale_sizes=[24, 32], tail_threshold=20,
                        tail_recipe={"vflip_prob": 1.0})
    assert describe(cfg) == [
        "Horizontal flip p=0.5",
        "RandAugment n=2 m=9",
        "MixUp alpha=0.2",
        "CutMix alpha=1",
        "MixUp or CutMix drawn per batch",
        "Batch mixing p=0.5",
        "Multi-scale sizes 24, 32 px (one per batch)",
        "Tail classes (< 20 images) instead: Vertical flip p=1",
    ]
    assert describe(AugmentConfig(tail_threshold=5, tail_recipe={"hflip_prob": 1}))[0] == "No augmentation"
