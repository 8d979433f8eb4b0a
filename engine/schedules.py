"""Learning-rate schedules: pure functions of the step (plus one small state for reduce-on-plateau).

    lr = peak * factor(step)

Every schedule starts with an optional linear warm-up over ``warmup`` steps (from peak/warmup to
peak), then follows its own rule over the remaining steps. The rules, by name:

- ``constant``: peak.
- ``cosine``: 0.5 * peak * (1 + cos(pi * t)), t going 0 -> 1 from the end of warm-up to the last
  step (Loshchilov & Hutter, SGDR, 2017, without restarts).
- ``step``: peak * gamma ** floor(epoch / step_size).
- ``multistep``: peak * gamma ** (number of milestones <= epoch).
- ``onecycle``: Smith & Topin's one-cycle (2019), as torch.optim.lr_scheduler.OneCycleLR with its
  defaults: cosine from peak / 25 up to peak over the first 30% of the steps, then cosine down to
  peak / (25 * 1e4). It has its own warm-up, so ``warmup`` is ignored.
- ``plateau``: peak, multiplied by ``factor`` each time the watched validation metric has not
  improved for ``patience`` epochs (torch's ReduceLROnPlateau in "max" mode, threshold 1e-4 relative).

The schedule is a function of the step so that a resumed run continues exactly where it stopped:
only the plateau state (best value, bad epochs, reductions) is saved with the checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

SCHEDULES = ("cosine", "constant", "step", "multistep", "onecycle", "plateau")
SCHEDULE_LABELS = {
    "cosine": "Cosine decay (after warm-up)", "constant": "Constant (after warm-up)",
    "step": "Step: × gamma every N epochs", "multistep": "Multi-step: × gamma at chosen epochs",
    "onecycle": "One-cycle (its own warm-up)", "plateau": "Reduce on plateau (adaptive)",
}
ONECYCLE_PCT, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def _cos(start: float, end: float, t: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * t) + 1)


def lr_at(step: int, *, total: int, warmup: int, peak: float, schedule: str,
          steps_per_epoch: int = 1, step_size: int = 30, milestones: Sequence[int] = (),
          gamma: float = 0.1, plateau_scale: float = 1.0) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"Invalid schedule {schedule!r}. Valid choices: {', '.join(SCHEDULES)}.")
    if schedule == "onecycle":
        return _onecycle(step, total, peak)
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    epoch = step // max(1, steps_per_epoch)
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        return 0.5 * peak * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    if schedule == "step":
        return peak * gamma ** (epoch // max(1, step_size))
    if schedule == "multistep":
        return peak * gamma ** sum(1 for m in milestones if epoch >= m)
    return peak * plateau_scale  # plateau


def _onecycle(step: int, total: int, peak: float) -> float:
    """torch's OneCycleLR (anneal_strategy="cos", three_phase=False): phase ends at
    pct_start * total - 1 and total - 1."""
    initial, minimum = peak / ONECYCLE_DIV, peak / ONECYCLE_DIV / ONECYCLE_FINAL_DIV
    up_end = float(ONECYCLE_PCT * total) - 1
    down_end = float(total - 1)
    if step <= up_end:
        return _cos(initial, peak, step / up_end if up_end > 0 else 1.0)
    return _cos(peak, minimum, min(1.0, (step - up_end) / max(down_end - up_end, 1e-12)))


@dataclass
class Plateau:
    """Reduce-on-plateau state, updated once per epoch with the watched metric (higher is
    better). ``scale`` multiplies the peak learning rate."""
    patience: int = 2
    factor: float = 0.1
    threshold: float = 1e-4  # relative improvement that counts
    best: float = -math.inf
    bad_epochs: int = 0
    scale: float = 1.0
    reductions: list[int] = field(default_factory=list)  # epochs after which the rate was cut

    def update(self, value: float | None, epoch: int) -> bool:
        """Record one epoch's metric; True when the learning rate was just reduced. A missing or
        NaN value counts as no improvement."""
        if value is not None and not math.isnan(value) and value > self.best * (1 + self.threshold):
            self.best, self.bad_epochs = value, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0
            self.reductions.append(epoch)
            return True
        return False

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "Plateau":
        return cls(**state)


@dataclass
class EarlyStopping:
    """Stop when ``metric`` (higher is better) has not improved for ``patience`` epochs. The best
    checkpoint is kept by the Checkpointer; this only decides when to stop."""
    patience: int
    min_delta: float = 0.0
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, value: float | None, epoch: int) -> bool:
        """Record one epoch; True when training should stop now."""
        if value is not None and not math.isnan(value) and value > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "EarlyStopping":
        return cls(**state)
