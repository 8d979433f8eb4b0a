import math

import numpy as np
import pytest

from engine.config import DataConfig
from engine.data.datasets import prepare_data
from engine.data.longtail import longtail_counts, longtail_indices


@pytest.mark.parametrize("ratio", [1, 10, 100])
def test_counts_follow_cifar_lt_formula(ratio):
    n_max, C = 5000, 10
    expected = [math.floor(n_max * ratio ** (-i / (C - 1))) for i in range(C)]
    assert longtail_counts(n_max, C, ratio) == expected


def test_counts_by_hand():
    # ratio 100 over 3 classes: 1000, 1000 * 100^-0.5 = 100, 1000 / 100 = 10
    assert longtail_counts(1000, 3, 100) == [1000, 100, 10]
    assert longtail_counts(7, 1, 100) == [7]
    assert longtail_counts(100, 4, 10, "step") == [100, 100, 10, 10]
    assert longtail_counts(100, 5, 10, "step") == [100, 100, 100, 10, 10]


def test_bad_profile_and_ratio():
    with pytest.raises(ValueError, match="exp, step"):
        longtail_counts(10, 3, 10, "linear")
    with pytest.raises(ValueError, match=">= 1"):
        longtail_counts(10, 3, 0.5)


def test_indices_are_a_seeded_subset_per_class():
    labels = np.repeat(np.arange(3), 50)
    idx = longtail_indices(labels, [50, 20, 5], seed=3)
    assert np.bincount(labels[idx]).tolist() == [50, 20, 5]
    assert len(set(idx)) == len(idx)
    assert (idx == longtail_indices(labels, [50, 20, 5], seed=3)).all()
    assert not (idx == longtail_indices(labels, [50, 20, 5], seed=4)).all()
    with pytest.raises(ValueError, match="fewer than"):
        longtail_indices(labels, [51, 1, 1], seed=0)


@pytest.mark.parametrize("ratio", [1, 10, 100])
def test_mnist_lt_train_counts_equal_formula_test_stays_balanced(workspace, ratio):
    data = prepare_data(DataConfig(source="builtin:mnist", imbalance_ratio=ratio, n_max=500))
    assert data.counts("train") == [math.floor(500 * ratio ** (-i / 9)) for i in range(10)]
    assert data.counts("val") == [100] * 10
    assert sum(data.counts("test")) == 10_000  # the official MNIST test set, untouched
    # validation is disjoint from training
    assert len(data.splits["val"]) == 1000


def test_animal_mnist_lt_and_groups(workspace):
    data = prepare_data(DataConfig(source="builtin:animal_mnist", imbalance_ratio=100))
    counts = data.counts("train")
    assert counts[0] == 700 and counts == longtail_counts(700, 10, 100)
    assert data.counts("test") == [200] * 10
    # many > 100, few < 20: 700 419 251 150 | 90 54 32 | 19 11 7
    assert data.groups() == ["many"] * 4 + ["medium"] * 3 + ["few"] * 3
    assert data.class_names[0] == "bear" and data.eval_spec.channels == 1


def test_same_config_same_version_hash(workspace):
    a = prepare_data(DataConfig(n_max=100, seed=1))
    b = prepare_data(DataConfig(n_max=100, seed=1))
    c = prepare_data(DataConfig(n_max=100, seed=2))
    assert a.version_id == b.version_id != c.version_id
