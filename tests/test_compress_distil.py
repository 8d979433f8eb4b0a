"""Knowledge distillation (engine.compress.distil): the loss by hand, and a real child run of the
session's finished run (``trained_run``) through the worker."""
import math

import pytest
import torch

from engine.config import ConfigError, TrainConfig




S = [[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]]  # student logits: 2 samples, 3 classes
Tl = [[2.0, 0.0, 1.0], [0.0, 0.0, 3.0]]  # teacher logits
Y = [1, 2]


def _softmax(row, T):
    e = [math.exp(v / T) for v in row]
    return [v / sum(e) for v in e]


def _kd_by_hand(T):
    total = 0.0
    for s, t in zip(S, Tl):
        p, q = _softmax(t, T), _softmax(s, T)
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))  # KL(teacher || student)
    return T * T * total / len(S)


def _ce_by_hand():
    return sum(-math.log(_softmax(s, 1)[y]) for s, y in zip(S, Y)) / len(S)


def test_kd_loss_matches_the_hand_computation():
    from engine.compress.distil import kd_loss
    s, t = torch.tensor(S), torch.tensor(Tl)
    assert kd_loss(s, t, 2.0).item() == pytest.approx(_kd_by_hand(2.0), rel=1e-6)
    assert _kd_by_hand(2.0) == pytest.approx(0.5276, abs=1e-4)  # the figure itself, T = 2 (worked on paper)
    assert kd_loss(s, t, 1.0).item() == pytest.approx(_kd_by_hand(1.0), rel=1e-6)
    assert kd_loss(t, t, 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_loss_mixes_by_alpha():
    from engine.compress.distil import DistillationLoss
    s, t, y = torch.tensor(S, requires_grad=True), torch.tensor(Tl), torch.tensor(Y)
    ce = torch.nn.CrossEntropyLoss()
    for alpha in (0.0, 0.3, 1.0):
        loss = DistillationLoss(ce, temperature=2.0, alpha=alpha)(s, y, t)
        want = alpha * _kd_by_hand(2.0) + (1 - alpha) * _ce_by_hand()
        assert loss.item() == pytest.approx(want, rel=1e-6)
    assert DistillationLoss(ce, temperature=2.0, alpha=0.7)(s, y).item() == pytest.approx(_ce_by_hand(), rel=1e-6)
    loss = DistillationLoss(ce, temperature=2.0, alpha=0.5)(s, y, t)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("kw,words", [({"kd_alpha": 1.5}, "kd_alpha must be between 0 and 1"),
                                      ({"kd_temperature": 0}, "kd_temperature must be > 0"),
                                      ({"distil_from": " "}, "distil_from must be a run id")])
def test_bad_distillation_settings(kw, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**kw)


def test_distil_child_run_through_the_worker(ws):
    from engine import jobs
    from engine.compress.distil import launch_distil
    from engine.infer import Predictor
    store, run_id = ws
    with pytest.raises(ConfigError, match="Valid choices"):
        launch_distil(store, run_id, student="vgg99")
    run = launch_distil(store, run_id, student="small_cnn", temperature=2.0, alpha=0.7, epochs=1)
    assert (run.kind, run.parent_run_id) == ("distil", run_id)
    assert (run.config["model"], run.config["distil_from"], run.config["init_from"]) == ("small_cnn", run_id, None)
    assert (run.config["kd_temperature"], run.config["kd_alpha"], run.config["epochs"]) == (2.0, 0.7, 1)
    run = jobs.wait(store, run.id, timeout=300)
    assert run.status == "finished", run.error
    t = run.tags
    assert t["format"] == "torch" and t["method_label"] == "distillation of compact_cnn into small_cnn, T=2, alpha=0.7, 1 epoch"
    assert int(t["params"]) < 30_000 and int(t["macs"]) > 0
    assert 0 <= run.latest["test/agreement"] <= 1 and 0 <= run.latest["test/bal_acc"] <= 1
    assert sum(p.numel() for p in Predictor.for_run(run.id).model.parameters()) == int(t["params"])


def test_teacher_is_frozen_and_checked(ws):
    from engine.compress.distil import load_teacher
    from engine.data.datasets import prepare_data
    from engine.config import data_config_from_dict
    from engine import workspace
    store, run_id = ws
    ck = torch.load(workspace.best_checkpoint(run_id), weights_only=True)
    data = prepare_data(data_config_from_dict(ck["config"]["data"]))
    teacher = load_teacher(run_id, data)
    teacher.train()
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(teacher(x), teacher(x))
    with pytest.raises(ConfigError, match="no checkpoint"):
        load_teacher("no-such-run", data)
