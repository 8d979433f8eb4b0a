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
    ({"optimizer": "adam"}, ["sgd", "adamw"]),
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
