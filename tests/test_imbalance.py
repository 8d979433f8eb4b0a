"""engine.imbalance: weights, losses, samplers and post-hoc corrections against hand-computed values."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import imbalance as im

LOG2, LOG3, LOG4 = math.log(2), math.log(3), math.log(4)
SOFT_LOSSES = ["ce", "weighted_ce", "balanced_softmax", "logit_adjusted"]
ALL_LOSSES = [info.name for info in im.list_losses()]


def approx(value, expected, tol=1e-6):
    return value == pytest.approx(expected, rel=tol, abs=tol)


# --------------------------------------------------------------------------------------------------
# class_weights / parse_weight_table
# --------------------------------------------------------------------------------------------------

def test_class_weights_by_hand():
    counts = [100, 10, 1]
    assert np.array_equal(im.class_weights(counts, "none"), [1.0, 1.0, 1.0])
    # 1/n = [0.01, 0.1, 1], sum 1.11, scaled to sum 3
    assert np.allclose(im.class_weights(counts, "inverse"), np.array([0.01, 0.1, 1.0]) * 3 / 1.11)
    root = np.array([0.1, 1 / math.sqrt(10), 1.0])
    assert np.allclose(im.class_weights(counts, "inverse_sqrt"), root * 3 / root.sum())
    # beta = 0.5, n = [1, 2]: (1-b)/(1-b^n) = [0.5/0.5, 0.5/0.75] = [1, 2/3] -> sum 2 -> [1.2, 0.8]
    w = im.class_weights([1, 2], "effective_number", beta=0.5)
    assert w.dtype == np.float64 and np.allclose(w, [1.2, 0.8])
    # beta = 0 is "none"; default beta = 0.9999 is close to inverse for small counts
    assert np.allclose(im.class_weights(counts, "effective_number", beta=0.0), [1, 1, 1])
    eff = im.class_weights(counts, "effective_number")
    raw = (1 - 0.9999) / (1 - 0.9999 ** np.array(counts, dtype=float))
    assert np.allclose(eff, raw / raw.sum() * 3) and approx(eff.sum(), 3.0)


def test_class_weights_accept_numpy_and_tensor_counts():
    expected = im.class_weights([100, 10, 1], "inverse")
    assert np.allclose(im.class_weights(np.array([100, 10, 1]), "inverse"), expected)
    assert np.allclose(im.class_weights(torch.tensor([100, 10, 1]), "inverse"), expected)


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5, float("nan")])
def test_class_weights_bad_beta(beta):
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        im.class_weights([10, 1], "effective_number", beta=beta)


def test_class_weights_unknown_method_lists_valid():
    with pytest.raises(ValueError, match="Unknown weighting method 'inv'.*inverse, inverse_sqrt, effective_number"):
        im.class_weights([10, 1], "inv")


@pytest.mark.parametrize(
    "counts, message",
    [
        ([10, 0, 3], r"Class 1 has count 0.*at least one training image"),
        ([10, 5, -2], r"Class 2 has count -2"),
        ([float("nan"), 5], r"class 0 is nan"),
        ([5, float("inf")], r"class 1 is inf"),
        ([5, "ten"], r"class 1 is not a number: 'ten'"),
        ([5, None], r"class 1 is not a number: None"),
        ([], r"empty"),
    ],
)
def test_class_weights_bad_counts_name_the_class(counts, message):
    with pytest.raises(ValueError, match=message):
        im.class_weights(counts, "inverse")


def test_weights_are_never_inf_or_nan_for_extreme_counts():
    for method in im.WEIGHTING_METHODS:
        w = im.class_weights([1, 10_000, 10**9], method)
        assert np.all(np.isfinite(w)) and approx(w.sum(), 3.0)


def test_parse_weight_table():
    names = ["cat", "dog", "owl"]
    assert np.array_equal(im.parse_weight_table({"owl": 3, "cat": 1, "dog": "2.5"}, names), [1.0, 2.5, 3.0])
    assert np.array_equal(im.parse_weight_table([1, 2, 0.5], names), [1.0, 2.0, 0.5])


@pytest.mark.parametrize(
    "table, message",
    [
        ({"cat": 1, "dog": -2, "owl": 1}, r"class 'dog' is -2.*> 0"),
        ({"cat": 0, "dog": 1, "owl": 1}, r"class 'cat' is 0.*> 0"),
        ({"cat": 1, "dog": 1}, r"no weight for class\(es\): owl"),
        ({"cat": 1, "dog": "heavy", "owl": 1}, r"class 'dog' is not a number: 'heavy'"),
        ({"cat": 1, "dog": None, "owl": 1}, r"class 'dog' is not a number: None"),
        ({"cat": 1, "dog": "nan", "owl": 1}, r"class 'dog'.*finite"),
        ({"cat": 1, "dog": 1, "owl": 1, "bat": 1}, r"unknown classes: bat"),
        ([1, 2], r"no weight for class\(es\): owl"),
        ([1, 2, 3, 4], r"4 weights for 3 classes"),
    ],
)
def test_parse_weight_table_rejects_bad_entries(table, message):
    with pytest.raises(ValueError, match=message):
        im.parse_weight_table(table, ["cat", "dog", "owl"])


# --------------------------------------------------------------------------------------------------
# Losses: hand-computed values
# --------------------------------------------------------------------------------------------------

def logits_of_probs(*rows):
    return torch.tensor([[math.log(p) for p in row] for row in rows], dtype=torch.float64)


def test_ce_by_hand():
    z = logits_of_probs([1, 2, 1], [1, 2, 1])  # softmax = [1/4, 1/2, 1/4]
    loss = im.create_loss("ce")
    assert approx(loss(z, torch.tensor([1, 0])).item(), (LOG2 + LOG4) / 2)
    # label smoothing 0.3, target 1: 0.7 * log 2 + 0.3/3 * (log4 + log2 + log4) = 1.2 log 2
    smooth = im.create_loss("ce", label_smoothing=0.3)
    assert approx(smooth(z[:1], torch.tensor([1])).item(), 1.2 * LOG2)


def test_weighted_ce_by_hand():
    z = logits_of_probs([1, 3], [1, 3])  # softmax = [1/4, 3/4]
    target = torch.tensor([0, 1])  # CE = log 4, log 4/3
    # inverse weights for counts [1, 2]: [1, 1/2] scaled to sum 2 -> [4/3, 2/3]; weighted mean
    loss = im.create_loss("weighted_ce", [1, 2], method="inverse")
    expected = (4 / 3 * LOG4 + 2 / 3 * math.log(4 / 3)) / 2
    assert approx(loss(z, target).item(), expected)
    assert torch.allclose(loss.weights, torch.tensor([4 / 3, 2 / 3]))


def test_focal_by_hand():
    z = logits_of_probs([1, 3], [1, 3])
    target = torch.tensor([0, 1])  # p_t = 1/4, 3/4
    loss = im.create_loss("focal", gamma=2.0)
    expected = ((3 / 4) ** 2 * LOG4 + (1 / 4) ** 2 * math.log(4 / 3)) / 2
    assert approx(loss(z, target).item(), expected)
    assert approx(im.create_loss("focal", gamma=0.0)(z, target).item(), (LOG4 + math.log(4 / 3)) / 2)


def test_cb_focal_by_hand():
    z = logits_of_probs([1, 3], [1, 3])
    target = torch.tensor([0, 1])
    # effective-number weights (beta 0.5, counts [1, 2]) = [1.2, 0.8]; the weight multiplies CE
    # before p = exp(-l), as in the official focal_loss(F.cross_entropy(weight=...)).
    l0, l1 = 1.2 * LOG4, 0.8 * math.log(4 / 3)
    expected = ((1 - math.exp(-l0)) * l0 + (1 - math.exp(-l1)) * l1) / 2
    loss = im.create_loss("cb_focal", [1, 2], beta=0.5, gamma=1.0)
    assert approx(loss(z, target).item(), expected)


def test_ldam_by_hand():
    # counts [1, 16]: n^-1/4 = [1, 1/2] -> margins scaled to max 0.5 -> [0.5, 0.25]
    loss = im.create_loss("ldam", [1, 16], max_margin=0.5, scale=2.0)
    assert torch.allclose(loss.margins, torch.tensor([0.5, 0.25]))
    z = torch.tensor([[1.0, 0.0], [0.0, 1.25]], dtype=torch.float64)
    # row 0: [1 - 0.5, 0] * 2 = [1, 0]; row 1: [0, 1.25 - 0.25] * 2 = [0, 2]
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    assert approx(loss(z, torch.tensor([0, 1])).item(), expected)


def official_ldam(x, target, cls_num_list, max_m, s, weight):
    """LDAMLoss.forward from the LDAM-DRW repository, CPU types."""
    m_list = 1.0 / np.sqrt(np.sqrt(cls_num_list))
    m_list = torch.FloatTensor(m_list * (max_m / np.max(m_list)))
    index = torch.zeros_like(x, dtype=torch.uint8)
    index.scatter_(1, target.data.view(-1, 1), 1)
    batch_m = torch.matmul(m_list[None, :], index.float().transpose(0, 1)).view((-1, 1))
    output = torch.where(index.bool(), x - batch_m, x)
    return F.cross_entropy(s * output, target, weight=weight)


def test_ldam_matches_official_code_with_and_without_weights():
    torch.manual_seed(0)
    counts = [500, 120, 30, 4]
    x, target = torch.randn(16, 4).clamp(-1, 1), torch.randint(0, 4, (16,))
    plain = im.create_loss("ldam", counts)
    assert approx(plain(x, target).item(), official_ldam(x, target, counts, 0.5, 30.0, None).item(), 1e-5)
    w = im.class_weights(counts, "effective_number")
    drw = im.drw_loss("ldam", counts, {})
    expected = official_ldam(x, target, counts, 0.5, 30.0, torch.tensor(w, dtype=torch.float32))
    assert approx(drw(x, target).item(), expected.item(), 1e-5)


def test_balanced_softmax_and_logit_adjusted_by_hand():
    z = torch.zeros(2, 2)
    target = torch.tensor([0, 1])
    # counts [1, 3]: logits + log n = [0, log 3] -> CE = log 4, log 4/3
    expected = (LOG4 + math.log(4 / 3)) / 2
    assert approx(im.create_loss("balanced_softmax", [1, 3])(z, target).item(), expected)
    assert approx(im.create_loss("logit_adjusted", [1, 3])(z, target).item(), expected)
    # tau = 2: logits + 2 log [1/4, 3/4] -> softmax = [1/10, 9/10]
    la2 = im.create_loss("logit_adjusted", [1, 3], tau=2.0)
    assert approx(la2(z[:1], target[:1]).item(), math.log(10))


def test_balanced_softmax_equals_logit_adjusted_tau_1():
    torch.manual_seed(1)
    counts = [1000, 200, 37, 5, 1]
    z = torch.randn(32, 5) * 4
    for target in (torch.randint(0, 5, (32,)), torch.softmax(torch.randn(32, 5), 1)):
        bs = im.create_loss("balanced_softmax", counts)(z, target)
        la = im.create_loss("logit_adjusted", counts, tau=1.0)(z, target)
        assert torch.allclose(bs, la, atol=1e-5)


def test_drw_loss_switches_on_effective_number_weights():
    counts = [100, 10, 1]
    drw = im.drw_loss("ce", counts, {"label_smoothing": 0.0}, beta=0.999)
    expected = im.class_weights(counts, "effective_number", beta=0.999)
    assert torch.allclose(drw.weights, torch.tensor(expected, dtype=torch.float32))
    z, target = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    reference = F.cross_entropy(z, target, weight=torch.tensor(expected, dtype=torch.float32))
    assert torch.allclose(drw(z, target), reference)
    for name in ALL_LOSSES:
        assert im.drw_loss(name, counts, {}).weights is not None
    with pytest.raises(ValueError, match="do not pass weights"):
        im.drw_loss("ce", counts, {"weights": [1, 1, 1]})


# --------------------------------------------------------------------------------------------------
# Soft targets (MixUp/CutMix)
# --------------------------------------------------------------------------------------------------

def test_soft_target_by_hand():
    z = logits_of_probs([1, 2, 1])
    q = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
    assert approx(im.create_loss("ce")(z, q).item(), 0.5 * LOG4 + 0.5 * LOG2)
    # weights [2, 1, 1]: (0.5*2*log4 + 0.5*1*log2) / (0.5*2 + 0.5*1)
    loss = im.create_loss("ce", weights=[2.0, 1.0, 1.0])
    assert approx(loss(z, q).item(), (LOG4 + 0.5 * LOG2) / 1.5)


@pytest.mark.parametrize("name", SOFT_LOSSES)
def test_one_hot_soft_targets_equal_hard_targets(name):
    torch.manual_seed(2)
    counts = [300, 40, 9, 2]
    params = {"label_smoothing": 0.1} if name == "ce" else {}
    z, target = torch.randn(10, 4), torch.randint(0, 4, (10,))
    for loss in (im.create_loss(name, counts, **params), im.drw_loss(name, counts, params)):
        assert torch.allclose(loss(z, target), loss(z, F.one_hot(target, 4).float()), atol=1e-6)


@pytest.mark.parametrize("name", ["focal", "cb_focal", "ldam"])
def test_soft_targets_rejected_with_the_supporting_losses_named(name):
    loss = im.create_loss(name, [10, 5, 1])
    with pytest.raises(ValueError, match="MixUp/CutMix.*ce, weighted_ce, balanced_softmax, logit_adjusted"):
        loss(torch.randn(2, 3), torch.full((2, 3), 1 / 3))


def test_registry_soft_flags_match_modules():
    for info in im.list_losses():
        assert info.supports_soft_targets == (info.name in SOFT_LOSSES)
        assert im.create_loss(info.name, [5, 3, 1]).supports_soft_targets == info.supports_soft_targets


def test_bad_target_shapes():
    loss = im.create_loss("ce")
    with pytest.raises(ValueError, match="class indices of shape"):
        loss(torch.randn(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"Soft targets must have the logits' shape \(2, 3\)"):
        loss(torch.randn(2, 3), torch.ones(2, 4) / 4)
    with pytest.raises(ValueError, match="built for 2 classes got logits with 3"):
        im.create_loss("balanced_softmax", [5, 1])(torch.randn(2, 3), torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------------------
# Every registry entry: stability, training, devices, bad parameters
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("drw", [False, True])
def test_gradients_finite_for_extreme_counts(name, drw):
    torch.manual_seed(3)
    counts = [10_000, 1]
    loss = im.drw_loss(name, counts, {}) if drw else im.create_loss(name, counts)
    z = (torch.randn(64, 2) * 20).requires_grad_()
    target = torch.tensor([0, 1] * 32)
    value = loss(z, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("info", im.list_losses(), ids=lambda info: info.name)
def test_every_loss_trains_one_step(info):
    torch.manual_seed(4)
    counts = [60, 15, 5]
    x = torch.randn(80, 8)
    y = torch.tensor([0] * 60 + [1] * 15 + [2] * 5)
    x[torch.arange(80), y] += 2.0  # learnable signal
    head = im.NormedLinear(8, 3) if info.name == "ldam" else torch.nn.Linear(8, 3)
    loss_fn = im.create_loss(info.name, counts if info.needs_class_counts else None)
    opt = torch.optim.SGD(head.parameters(), lr=0.05)
    before = loss_fn(head(x), y)
    opt.zero_grad()
    before.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    opt.step()
    with torch.no_grad():
        after = loss_fn(head(x), y)
    assert torch.isfinite(after) and after < before


def test_losses_needing_counts_say_so():
    for info in im.list_losses():
        if info.needs_class_counts:
            with pytest.raises(ValueError, match=f"Loss '{info.name}' needs the training-set class counts"):
                im.create_loss(info.name)
        else:
            im.create_loss(info.name)


def test_buffers_move_with_to():
    for name in ALL_LOSSES:
        loss = im.drw_loss(name, [100, 10, 1], {}).to("meta")
        buffers = dict(loss.named_buffers())
        assert "weights" in buffers
        assert all(buffer.device.type == "meta" for buffer in buffers.values())
    assert "adjustment" in dict(im.create_loss("logit_adjusted", [3, 1]).named_buffers())
    assert "margins" in dict(im.create_loss("ldam", [3, 1]).named_buffers())


def test_float64_logits():
    loss = im.drw_loss("logit_adjusted", [100, 10, 1], {})
    value = loss(torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0]))
    assert value.dtype == torch.float64


def test_create_loss_bad_names_and_params():
    with pytest.raises(ValueError, match="Unknown loss 'dice'. Valid losses: ce, weighted_ce, focal"):
        im.create_loss("dice")
    with pytest.raises(ValueError, match="Unknown parameter.*alpha.*'focal'.*Valid parameters: gamma, weights"):
        im.create_loss("focal", alpha=0.25)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        im.create_loss("focal", gamma=-0.5)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        im.create_loss("cb_focal", [10, 1], gamma=-1)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        im.create_loss("cb_focal", [10, 1], beta=1.0)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        im.create_loss("weighted_ce", [10, 1], beta=-0.1)
    with pytest.raises(ValueError, match="Unknown weighting method 'log'"):
        im.create_loss("weighted_ce", [10, 1], method="log")
    with pytest.raises(ValueError, match="scale must be > 0"):
        im.create_loss("ldam", [10, 1], scale=0)
    with pytest.raises(ValueError, match="label_smoothing must be < 1"):
        im.create_loss("ce", label_smoothing=1.0)
    with pytest.raises(ValueError, match="tau must be a finite number"):
        im.create_loss("logit_adjusted", [10, 1], tau="big")
    with pytest.raises(ValueError, match="Class 1 has count 0"):
        im.create_loss("balanced_softmax", [10, 0])
    with pytest.raises(ValueError, match=r"weights\[1\] = -1.0"):
        im.create_loss("ce", weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="3 class weights for 2 classes"):
        im.create_loss("ldam", [10, 1], weights=[1, 1, 1])


def test_list_losses_is_a_safe_copy():
    info = im.list_losses()[0]
    info.params["label_smoothing"] = 0.5
    assert im.list_losses()[0].params == {"label_smoothing": 0.0}
    with pytest.raises(AttributeError):
        info.name = "x"


def test_normed_linear_outputs_cosines():
    torch.manual_seed(5)
    head = im.NormedLinear(4, 3)
    assert head.weight.shape == (4, 3)
    x = torch.randn(5, 4)
    expected = F.cosine_similarity(x[:, :, None], head.weight[None], dim=1)
    assert torch.allclose(head(x), expected, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------

def test_class_sampling_probs_by_hand():
    counts = [1, 4]
    assert np.allclose(im.class_sampling_probs(counts, "instance"), [0.2, 0.8])
    assert np.allclose(im.class_sampling_probs(counts, "class_balanced"), [0.5, 0.5])
    assert np.allclose(im.class_sampling_probs(counts, "sqrt"), [1 / 3, 2 / 3])
    # epoch 1 of 4: 0.75 * [0.2, 0.8] + 0.25 * [0.5, 0.5]
    assert np.allclose(im.class_sampling_probs(counts, "progressive", epoch=1, total_epochs=4), [0.275, 0.725])


def test_progressive_goes_from_instance_to_class_balanced():
    counts = [100, 10, 1]
    start = im.class_sampling_probs(counts, "progressive", epoch=0, total_epochs=10)
    end = im.class_sampling_probs(counts, "progressive", epoch=10, total_epochs=10)
    assert np.allclose(start, im.class_sampling_probs(counts, "instance"))
    assert np.allclose(end, im.class_sampling_probs(counts, "class_balanced"))
    with pytest.raises(ValueError, match="epoch must be an integer in"):
        im.class_sampling_probs(counts, "progressive", epoch=11, total_epochs=10)
    with pytest.raises(ValueError, match="total_epochs must be an integer >= 1"):
        im.class_sampling_probs(counts, "progressive", epoch=0, total_epochs=0)


@pytest.mark.parametrize(
    "name, epoch", [("class_balanced", 0), ("sqrt", 0), ("progressive", 0), ("progressive", 1), ("progressive", 3)]
)
def test_sampler_empirical_rates_match_probs(name, epoch):
    labels = np.array([0] * 700 + [1] * 250 + [2] * 50)
    sampler = im.create_sampler(labels, name, epoch=epoch, total_epochs=3, seed=7, num_samples=20_000)
    assert isinstance(sampler, torch.utils.data.WeightedRandomSampler) and sampler.replacement
    drawn = labels[np.fromiter(iter(sampler), dtype=np.int64)]
    rates = np.bincount(drawn, minlength=3) / len(drawn)
    expected = im.class_sampling_probs([700, 250, 50], name, epoch=epoch, total_epochs=3)
    assert np.allclose(rates, expected, atol=0.015)


def test_sampler_defaults_seed_and_instance():
    labels = [0, 0, 0, 1, 2, 2]
    assert im.create_sampler(labels, "instance") is None
    a = im.create_sampler(labels, "class_balanced", seed=3)
    b = im.create_sampler(torch.tensor(labels), "class_balanced", seed=3)
    assert len(a) == len(labels) and list(a) == list(b)
    # classes absent from labels simply take no part (labels 0 and 5 only)
    sparse = im.create_sampler([0, 0, 0, 5], "class_balanced", num_samples=4000)
    drawn = np.array([0, 0, 0, 5])[list(sparse)]
    assert abs((drawn == 5).mean() - 0.5) < 0.04


def test_sampler_bad_names():
    with pytest.raises(ValueError, match="Unknown sampler 'balanced'. Valid samplers: instance, class_balanced, sqrt, progressive"):
        im.create_sampler([0, 1], "balanced")
    with pytest.raises(ValueError, match="Unknown sampler"):
        im.class_sampling_probs([1, 2], "oversample")
    with pytest.raises(ValueError, match="Class 1 has count 0"):
        im.class_sampling_probs([3, 0], "sqrt")
    assert set(im.SAMPLERS) == {"instance", "class_balanced", "sqrt", "progressive"}


# --------------------------------------------------------------------------------------------------
# Metrics and post-hoc corrections
# --------------------------------------------------------------------------------------------------

def test_balanced_accuracy_by_hand():
    # recall class 0 = 2/3, class 1 = 1; class 2 absent from targets is ignored
    assert approx(im.balanced_accuracy([0, 0, 1, 1], [0, 0, 0, 1], num_classes=3), 5 / 6)
    assert approx(im.balanced_accuracy(torch.tensor([2, 2]), torch.tensor([2, 2]), 3), 1.0)


def test_posthoc_logit_adjust_by_hand():
    z = np.zeros((1, 2))
    assert np.allclose(im.posthoc_logit_adjust(z, [1, 3], 1.0), [[LOG4, math.log(4 / 3)]])
    zt = torch.zeros(1, 2)
    assert torch.allclose(im.posthoc_logit_adjust(zt, [1, 3], 2.0), torch.tensor([[2 * LOG4, 2 * math.log(4 / 3)]]))


def test_tune_posthoc_tau_by_hand():
    # logits = log prior + 1 on the true class. Class 1 is right once tau > 0.545, class 0 while
    # tau < 1.455: the smallest grid tau with balanced accuracy 1 is 0.6.
    prior = np.log([0.9, 0.1])
    targets = np.array([0] * 9 + [1])
    logits = prior + np.eye(2)[targets]
    tau, bal_acc = im.tune_posthoc_tau(logits, targets, [90, 10])
    assert approx(tau, 0.6) and bal_acc == 1.0
    assert im.tune_posthoc_tau(logits, targets, [90, 10], taus=[0.0]) == (0.0, 0.5)


def test_tau_normalize_by_hand():
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert torch.allclose(im.tau_normalize(w, 1.0), torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    assert torch.allclose(im.tau_normalize(w, 0.0), w)
    half = im.tau_normalize(w.numpy(), 0.5)
    assert np.allclose(half, [[3 / math.sqrt(5), 4 / math.sqrt(5)], [0.0, 2 / math.sqrt(2)]])
    assert np.all(np.isfinite(im.tau_normalize(np.zeros((2, 3)), 1.0)))


def test_tune_tau_normalization_by_hand():
    # Head row norm 4, tail row norm 1. Tail feature [0.5, 1] scores [0.5 * 4^(1-tau), 1]:
    # correct once tau > 0.5, so the first grid tau is 0.6.
    weight = np.array([[4.0, 0.0], [0.0, 1.0]])
    features = np.array([[1.0, 0.0], [0.5, 1.0]])
    targets = np.array([0, 1])
    tau, bal_acc = im.tune_tau_normalization(features, targets, weight, None)
    assert approx(tau, 0.6) and bal_acc == 1.0
    # a bias favouring the tail makes tau = 0 already perfect
    assert im.tune_tau_normalization(features, targets, weight, np.array([0.0, 2.0]))[0] == 0.0
