import pytest

from engine.config import (ConfigError, DataConfig, TrainConfig, to_json, to_toml,
                           train_config_from_json, train_config_from_toml)


def test_round_trips():
    cfg = TrainConfig(data=DataConfig(source="builtin:animal_mnist", imbalance_ratio=50, n_max=300),
                      model="resnet18", epochs=2, loss="ldam", loss_params={"scale": 10.0},
                      sampler="sqrt", drw_epoch=1)
    assert train_config_from_json(to_json(cfg)) == cfg
    assert train_config_from_toml(to_toml(cfg)) == cfg


@pytest.mark.parametrize("kw, words", [
    ({"model": "vgg99"}, ["small_cnn", "resnet18", "mobilenet_v2"]),
    ({"optimizer": "rmsprop"}, ["sgd", "adam", "adamw"]),
    ({"scheduler": "exp"}, ["step", "multistep", "onecycle", "plateau"]),
    ({"precision": "int8"}, ["bf16", "fp16"]),
    ({"device": "tpu"}, ["cuda", "mps"]),
    ({"loss": "magic"}, ["balanced_softmax", "ldam"]),
    ({"sampler": "random"}, ["class_balanced"]),
    ({"epochs": 0}, ["epochs"]),
    ({"lr": -1.0}, ["lr"]),
    ({"batch_size": 2.5}, ["batch_size"]),
])
def test_bad_train_settings_name_the_valid_ones(kw, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kw)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("kw, word", [
    ({"source": "builtin:cifar"}, "builtin:mnist"), ({"imbalance_ratio": 0.5}, ">= 1"),
    ({"few_threshold": 200}, "few_threshold"), ({"profile": "linear"}, "exp"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "leave some"),
])
def test_bad_data_settings(kw, word):
    with pytest.raises(ConfigError, match=word):
        DataConfig(**kw)


def test_unknown_keys_in_toml_listed():
    with pytest.raises(ConfigError, match="Unknown TrainConfig setting.*epoch"):
        train_config_from_toml('epoch = 3\n')
    with pytest.raises(ConfigError, match="Not a valid TOML"):
        train_config_from_toml("model = \n")


# --- augmentation recipes are checked against the run at config time ----------------------------

@pytest.mark.parametrize("loss", ["focal", "cb_focal", "ldam"])
def test_mixup_needs_a_soft_target_loss(loss):
    for recipe in ({"mixup_alpha": 0.2}, {"cutmix_alpha": 1.0}):
        with pytest.raises(ConfigError) as e:
            TrainConfig(loss=loss, augment=recipe)
        msg = str(e.value)
        assert loss in msg and "ce, weighted_ce, balanced_softmax, logit_adjusted" in msg


def test_mixup_with_soft_target_losses_and_mix_prob_zero_accepted():
    for loss in ("ce", "weighted_ce", "balanced_softmax", "logit_adjusted"):
        assert TrainConfig(loss=loss, augment={"mixup_alpha": 0.2}).augment == {"mixup_alpha": 0.2}
    # mix_prob 0 mixes nothing, so targets stay class indices: focal is fine
    TrainConfig(loss="focal", augment={"mixup_alpha": 0.2, "mix_prob": 0.0})


@pytest.mark.parametrize("kw, augment, words", [
    ({"batch_size": 1}, {"cutmix_alpha": 1.0}, ["batch_size >= 2", "got 1"]),
    ({}, {"multi_scale_sizes": [200]}, ["multi_scale_sizes [200]", "between 8 and 112"]),
    ({}, {"random_resized_crop": True, "rrc_scale": [0.01, 1.0]}, ["rrc_scale min", "28x28"]),
    ({}, {"crop_padding": 28}, ["crop_padding 28"]),
    ({}, {"hflip": 0.5}, ["Unknown augmentation setting", "hflip_prob"]),
    ({}, {"mixup_alpha": -1}, ["mixup_alpha must be between 0 and 100"]),
])
def test_bad_recipes_fail_at_config_time(kw, augment, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig(augment=augment, **kw)
    for w in words:
        assert w in str(e.value)


def test_recipe_checked_at_the_datasets_input_size():
    # 32 px padding is refused on a 28 px built-in but fine on a 64 px folder dataset or a
    # built-in resized to 96 px.
    with pytest.raises(ConfigError, match="crop_padding 32"):
        TrainConfig(augment={"crop_padding": 32})
    TrainConfig(data=DataConfig(source="/data/photos"), augment={"crop_padding": 32})
    TrainConfig(data=DataConfig(image_size=96), augment={"crop_padding": 32})


def test_recipe_round_trips_through_toml():
    cfg = TrainConfig(augment={"hflip_prob": 0.5, "mixup_alpha": 0.2, "tail_threshold": 20,
                               "tail_recipe": {"auto_policy": "randaugment"}})
    assert train_config_from_toml(to_toml(cfg)) == cfg


def test_one_home_for_input_errors():
    """config, augment and the imbalance checks raise the same ConfigError from engine.errors,
    and config no longer needs augment to be imported for its error type (nor augment config)."""
    import ast
    from pathlib import Path

    from engine import errors
    from engine.augment import AugmentConfig
    assert ConfigError is errors.ConfigError
    with pytest.raises(errors.ConfigError, match="whole number from 0 to 256"):
        AugmentConfig(crop_padding=-1)
    src = ast.parse((Path(__file__).parent.parent / "engine" / "augment.py").read_text())
    imported = {n.module for n in ast.walk(src) if isinstance(n, ast.ImportFrom)}
    assert "engine.config" not in imported
