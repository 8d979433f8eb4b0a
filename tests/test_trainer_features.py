"""Trainer settings of issue 10 on real (tiny) training: early stopping, resume, fine-tuning
freezes, gradient clipping, optimizer groups, and the faults a user can cause."""
from __future__ import annotations

import errno

import pytest
import torch
from torch import nn

from engine.config import ConfigError, TrainConfig
from engine.models import create_model
from engine.train import (
    CancelFit, Callback, NonFiniteLoss, ResumeError, build_optimizer, fit, save_checkpoint, train_one_epoch,
)
from tests.conftest import tiny_config


class Record(Callback):
    def __init__(self) -> None:
        self.epochs, self.start = [], None

    def on_fit_start(self, state):
        self.start = {k: v.detach().clone() for k, v in state.model.state_dict().items()}

    def on_epoch_end(self, state, metrics):
        self.epochs.append((state.epoch, dict(metrics),
                            {k: v.detach().clone() for k, v in state.model.state_dict().items()}))


def test_early_stopping_stops_at_the_right_epoch(workspace):
    """The loop stops exactly where the rule (tested by hand in test_schedules) says for the
    validation values it saw: replaying them through EarlyStopping gives the same last epoch.
    A learning rate of ~0 keeps validation nearly flat, so patience 2 stops well before 6 epochs."""
    from engine.schedules import EarlyStopping

    rec = Record()
    res = fit(tiny_config(epochs=6, lr=1e-12, early_stop_patience=2, scheduler="constant"), [rec],
              checkpoint_dir=workspace / "ck")
    seen = [m["val/bal_acc"] for _, m, _ in rec.epochs]
    replay = EarlyStopping(2)
    expected = next(i + 1 for i, v in enumerate(seen) if replay.update(v, i))
    assert res.state.stopped_early == expected == len(seen) < 6
    assert expected - 2 == replay.best_epoch + 1  # two epochs without improvement after the best
    assert any(f"stopped early after epoch {expected}" in n for n in res.state.notes)


def test_resume_equals_uninterrupted_training(workspace):
    """Deterministic tiny run: 3 epochs straight, against 3 epochs cut after the second
    (cancelled: last.pt holds epoch 1) and resumed. Same weights, same metrics, no step twice."""
    cfg = tiny_config(epochs=3, deterministic=True, scheduler="cosine", warmup_epochs=0.5)
    straight = Record()
    fit(cfg, [straight], checkpoint_dir=workspace / "a")

    class CancelAfter2(Callback):
        def on_epoch_end(self, state, metrics):
            if state.epoch == 1:
                raise CancelFit()

    first = Record()
    with pytest.raises(CancelFit):
        fit(cfg, [first, CancelAfter2()], checkpoint_dir=workspace / "b")
    assert torch.load(workspace / "b" / "last.pt", weights_only=True)["epoch"] == 0

    steps = []

    class Steps(Callback):
        def on_step_end(self, state):
            steps.append(state.step)

    resumed = Record()
    res = fit(cfg, [resumed, Steps()], checkpoint_dir=workspace / "b", resume=True)
    assert [e for e, *_ in resumed.epochs] == [1, 2]
    assert steps[0] == res.state.steps_per_epoch + 1 and steps[-1] == 3 * res.state.steps_per_epoch
    for (_, m_a, w_a), (_, m_b, w_b) in zip(straight.epochs[1:], resumed.epochs):
        assert m_a == pytest.approx(m_b, rel=1e-5, abs=1e-6, nan_ok=True)
        for k in w_a:
            assert torch.allclose(w_a[k].float(), w_b[k].float(), atol=1e-5), k
    assert any("resumed after epoch 1" in n for n in res.state.notes)


def test_resume_refuses_a_corrupted_or_missing_checkpoint(workspace):
    folder = workspace / "ck"
    with pytest.raises(ResumeError, match="Nothing to resume from"):
        fit(tiny_config(epochs=1), checkpoint_dir=folder, resume=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "last.pt").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ResumeError, match="damaged"):
        fit(tiny_config(epochs=1), checkpoint_dir=folder, resume=True)


def test_freeze_backbone_then_train_it(workspace):
    """freeze_backbone_epochs=1: after epoch 1 only the head moved; after epoch 2 the backbone too."""
    rec = Record()
    fit(tiny_config(epochs=2, freeze_backbone_epochs=1), [rec], checkpoint_dir=workspace / "ck")
    conv = "features.0.weight"
    (_, _, w1), (_, _, w2) = rec.epochs
    assert torch.equal(w1[conv], rec.start[conv]) and not torch.equal(w1["fc.weight"], rec.start["fc.weight"])
    assert torch.equal(w1["features.1.running_mean"], rec.start["features.1.running_mean"])  # BN frozen too
    assert not torch.equal(w2[conv], w1[conv])


def test_backbone_lr_multiplier_groups():
    model = create_model("compact_cnn", num_classes=3, in_channels=1, input_size=28)
    cfg = TrainConfig(model="compact_cnn", optimizer="sgd", lr=0.1, weight_decay=1e-4, batch_size=8,
                      loss="ce", backbone_lr_mult=0.1)
    opt = build_optimizer(cfg, model)
    head = {id(p) for p in model.fc.parameters()}
    for g in opt.param_groups:
        is_head = all(id(p) in head for p in g["params"])
        assert g["lr_mult"] == (1.0 if is_head else 0.1)
        assert g["lr"] == pytest.approx(0.1 * g["lr_mult"])
        assert g["weight_decay"] == (1e-4 if g["params"][0].ndim > 1 else 0.0)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert opt.param_groups[0]["nesterov"] is True
    adam = build_optimizer(TrainConfig(model="compact_cnn", optimizer="adam", lr=1e-3, weight_decay=0.0,
                                       batch_size=8, loss="ce"), model)
    assert isinstance(adam, torch.optim.Adam) and not isinstance(adam, torch.optim.AdamW)


def test_gradient_clipping_bounds_the_step():
    """SGD without momentum, lr 1, clip 1e-3: the parameters move by at most 1e-3 (L2) per step;
    unclipped, the same batch moves them by far more."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28) * 50, torch.randint(0, 3, (16,))

    def moved(clip):
        torch.manual_seed(1)
        model = create_model("compact_cnn", num_classes=3, in_channels=1, input_size=28)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        train_one_epoch(model, nn.CrossEntropyLoss(), opt, [(x, y)], torch.device("cpu"), grad_clip=clip)
        return float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())

    assert moved(1e-3) <= 1e-3 * (1 + 1e-4)
    assert moved(None) > 0.01


def test_label_smoothing_reaches_the_loss(workspace):
    res = fit(tiny_config(epochs=1, label_smoothing=0.2, loss="logit_adjusted"))
    assert res.test["acc"] > 0.3
    with pytest.raises(ConfigError, match="cross-entropy family"):
        tiny_config(label_smoothing=0.2, loss="focal")


def test_diverging_learning_rate_names_the_step(workspace):
    with pytest.raises(NonFiniteLoss, match=r"Step [\d,]+ \(epoch 1\).*lower it"):
        fit(tiny_config(epochs=1, loss="ldam", loss_params={"scale": 1e39}))


def test_batch_larger_than_the_training_set(workspace):
    res = fit(tiny_config(epochs=1, batch_size=100_000))
    assert res.state.steps_per_epoch == 1
    assert any("larger than the training split" in n for n in res.state.notes)


def test_disk_full_keeps_the_previous_checkpoint(workspace, monkeypatch):
    """torch.save failing half way (ENOSPC) leaves last.pt as it was and no temp file behind."""
    class Keep(Callback):
        def on_fit_end(self, state, result):
            self.state = state

    keep = Keep()
    fit(tiny_config(epochs=1), [keep], checkpoint_dir=workspace / "ck")
    last = workspace / "ck" / "last.pt"
    good = last.read_bytes()

    def full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(last, keep.state, metrics={}, resumable=True)
    assert last.read_bytes() == good
    assert [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")] == []
