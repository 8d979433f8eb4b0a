"""Learning-rate schedules against hand values and against torch's own schedulers."""
from __future__ import annotations

import math

import pytest
import torch

from engine.schedules import EarlyStopping, Plateau, lr_at


def _torch_lrs(make, steps: int, peak: float = 0.1) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_hand_values():
    # warm-up 4 steps to 0.1: 0.025, 0.05, 0.075, 0.1
    assert [lr_at(s, total=20, warmup=4, peak=0.1, schedule="cosine") for s in range(4)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1])
    # cosine: half way through the post-warm-up steps is peak / 2, the last step approaches 0
    assert lr_at(12, total=20, warmup=4, peak=0.1, schedule="cosine") == pytest.approx(0.05)
    assert lr_at(20, total=20, warmup=4, peak=0.1, schedule="cosine") == pytest.approx(0.0)
    # step: 10 steps per epoch, x0.1 every 3 epochs -> epochs 0-2: 0.1, 3-5: 0.01, 6: 0.001
    assert [lr_at(s, total=70, warmup=0, peak=0.1, schedule="step", steps_per_epoch=10, step_size=3,
                  gamma=0.1) for s in (0, 29, 30, 59, 60)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    # multistep at epochs 2 and 5, gamma 0.5
    assert [lr_at(s, total=70, warmup=0, peak=0.2, schedule="multistep", steps_per_epoch=10,
                  milestones=(2, 5), gamma=0.5) for s in (19, 20, 49, 50)] == pytest.approx([0.2, 0.1, 0.1, 0.05])
    assert lr_at(3, total=10, warmup=0, peak=0.3, schedule="plateau", plateau_scale=0.01) == pytest.approx(0.003)
    with pytest.raises(ValueError, match="Valid choices"):
        lr_at(0, total=1, warmup=0, peak=1, schedule="exp")


def test_same_as_torch_step_multistep_onecycle():
    n, spe = 60, 6
    ours = [lr_at(s, total=n, warmup=0, peak=0.1, schedule="step", steps_per_epoch=spe, step_size=3, gamma=0.5)
            for s in range(n)]
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3 * spe, gamma=0.5), n)
    assert ours == pytest.approx(ref)
    ours = [lr_at(s, total=n, warmup=0, peak=0.1, schedule="multistep", steps_per_epoch=spe, milestones=(2, 7),
                  gamma=0.1) for s in range(n)]
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2 * spe, 7 * spe], gamma=0.1), n)
    assert ours == pytest.approx(ref)
    for total in (1, 7, 100):
        ours = [lr_at(s, total=total, warmup=0, peak=0.1, schedule="onecycle") for s in range(total)]
        ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=total), total)
        assert ours == pytest.approx(ref, rel=1e-6, abs=1e-12)


def test_plateau_same_as_torch():
    vals = [0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, math.nan, 0.7, 0.71, 0.71, 0.71, 0.71]
    p = Plateau(patience=2, factor=0.1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=2)
    for epoch, v in enumerate(vals):
        p.update(v, epoch)
        ref.step(-math.inf if math.isnan(v) else v)
        assert p.scale == pytest.approx(opt.param_groups[0]["lr"]), epoch
    assert p.reductions == [4, 8, 13]
    assert Plateau.from_state(p.state_dict()) == p


def test_early_stopping_stops_at_the_right_epoch():
    """Patience 3: best at epoch 2 (0.8); epochs 3, 4, 5 do not improve -> stop after epoch 5."""
    es = EarlyStopping(patience=3)
    stops = [es.update(v, e) for e, v in enumerate([0.5, 0.7, 0.8, 0.79, math.nan, 0.8])]
    assert stops == [False, False, False, False, False, True]
    assert (es.best, es.best_epoch) == (0.8, 2)
    assert EarlyStopping.from_state(es.state_dict()) == es
