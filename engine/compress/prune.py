"""Pruning a finished run into a smaller one: a child run (kind "prune") that fine-tunes.

``launch_prune(store, run_id, method=..., amount=..., finetune_epochs=...)`` starts an ordinary
training job (``engine.train.fit``, live and cancellable like any run) whose TrainConfig is the
parent's resolved config with ``init_from`` = the parent and ``prune`` = the settings. ``fit``
loads the parent's weights, calls ``apply_pruning`` before the optimizer is built, and fine-tunes
with the parent's recipe for ``finetune_epochs``.

* **structured**: whole channels are removed with everything coupled to them (the BatchNorm
  after a conv, the other convs of a residual sum, the inputs of the next layer) by Torch-Pruning's
  ``DependencyGraph`` through ``BasePruner`` with ``GroupMagnitudeImportance`` (L2 norm of each
  coupled group), the same share in every layer, channel counts rounded to multiples of
  ``round_to`` (8: CPU kernels like channel counts in multiples of their vector width), the
  classifier layer kept. ``amount`` is the share of MACs (default) or of channels removed; the
  per-layer ratio that comes closest is found by bisection on copies. The network really shrinks:
  its checkpoint holds smaller tensors, and ``engine.models.fit_to_state_dict`` rebuilds it from
  them (loaded with ``weights_only=True``, no pickled code).
* **unstructured**: global magnitude pruning (``torch.nn.utils.prune.global_unstructured``, L1)
  over the conv / linear weights but the classifier's; the masks stay fixed during fine-tuning
  (re-applied after every optimizer step) and the weights are saved as plain tensors. Zeros
  alone make the model neither smaller on disk nor faster; the run says so (tag compress_note).

After the run, ``VariantRecorder`` records the contract's tags (format, params, MACs, sparsity,
size_bytes, method_label, compress_note), test/agreement with the parent (top-1 on the test
split), test/ece, and ``test_outputs.npz`` in the run's folder.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from engine.config import ConfigError, TrainConfig, train_config_from_dict
from engine.models import classifier
from engine.train import Callback, FitResult, FitState
from engine.transforms import EvalSpec

METHODS = ("structured", "unstructured")
DEFAULT_ROUND_TO = 8
FINETUNE_EPOCHS = 3  # when the caller gives none (taillab compress without --finetune-epochs)
ROUND_TO_SLACK = 0.05  # fall back to a finer rounding when the target is missed by more than this
UNSTRUCTURED_NOTE = ("zeros alone make the model neither smaller on disk nor faster: the weights "
                     "are still stored and multiplied densely (sparse kernels or compression of "
                     "the file would be needed to gain from them)")

if TYPE_CHECKING:
    from engine.store import Run


# --- counting ------------------------------------------------------------------------------

def example_input(spec: EvalSpec, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.zeros(1, spec.channels, spec.size, spec.size, device=device)


def _eval_mode(model: nn.Module):
    """Context: the model in eval mode (BatchNorm statistics untouched by tracing), then back."""
    class _Ctx:
        def __enter__(self):
            self.was = model.training
            model.eval()

        def __exit__(self, *exc):
            model.train(self.was)
    return _Ctx()


def count_macs_params(model: nn.Module, spec: EvalSpec) -> tuple[int, int]:
    """(multiply-adds per image at the eval size, parameters): engine.compress.measure's
    counters, the ones the comparison table uses for every row."""
    from engine.compress import measure

    return measure.count_macs(model, spec.size, spec.channels), measure.count_params(model)


def prunable_weights(model: nn.Module, *, include_classifier: bool = True) -> list[nn.Module]:
    head = classifier(model)
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
            and (include_classifier or m is not head)]


def sparsity(model: nn.Module, *, include_classifier: bool = True) -> float:
    """Share of exactly-zero weights over the conv / linear weight tensors."""
    mods = prunable_weights(model, include_classifier=include_classifier)
    total = sum(m.weight.numel() for m in mods)
    zeros = sum(int((m.weight == 0).sum()) for m in mods)
    return zeros / max(total, 1)


def _channels(model: nn.Module) -> int:
    head = classifier(model)
    return sum(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not head)


# --- structured ----------------------------------------------------------------------------

def _prune_structured_once(model: nn.Module, example: torch.Tensor, ratio: float,
                           round_to: int | None) -> nn.Module:
    import torch_pruning as tp

    with _eval_mode(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Torch-Pruning warns about layers it leaves alone
        pruner = tp.pruner.BasePruner(
            model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio, ignored_layers=[classifier(model)], round_to=round_to)
        pruner.step()
    return model


def structured_prune(model: nn.Module, spec: EvalSpec, *, amount: float, target: str = "macs",
                     round_to: int | None = DEFAULT_ROUND_TO, steps: int = 8) -> dict:
    """Remove ``amount`` of the MACs (or channels) of ``model``, in place. The per-layer ratio is
    found by bisection on copies; with a coarse ``round_to`` on narrow layers (16 channels can
    only become 8 or 16 at round_to 8) the target may be unreachable: then finer roundings are
    tried (round_to / 2, ..., none) until one lands within ROUND_TO_SLACK. Returns what was done:
    {"ratio", "round_to", "removed" (share of the target measure actually removed), "macs_before",
    "macs_after", "params_before", "params_after"}."""
    from engine.imbalance import NormedLinear

    if not 0 < amount < 1:
        raise ConfigError(f"Pruning amount must be strictly between 0 and 1 (valid range: 0 < amount < 1), got {amount}.")
    if isinstance(classifier(model), NormedLinear):
        raise ConfigError("Structured pruning of a run with LDAM's cosine classifier is not supported; "
                          "use unstructured pruning, or prune a run trained with another loss.")
    device = next(model.parameters()).device
    example = example_input(spec, device)
    macs0, params0 = count_macs_params(model, spec)
    ch0 = _channels(model)

    def removed(m: nn.Module) -> float:
        if target == "channels":
            return 1 - _channels(m) / ch0
        return 1 - count_macs_params(m, spec)[0] / macs0

    roundings: list[int | None] = []
    r = round_to
    while r and r > 1:
        roundings.append(r)
        r //= 2
    roundings.append(None)
    best: tuple[float, float, int | None] | None = None  # (miss, ratio, round_to)
    for rt in roundings:
        lo, hi, seen = 0.0, 0.95, []
        for _ in range(steps):
            mid = (lo + hi) / 2
            got = removed(_prune_structured_once(copy.deepcopy(model), example, mid, rt))
            seen.append((abs(got - amount), mid))
            lo, hi = (mid, hi) if got < amount else (lo, mid)
        miss, ratio = min(seen)
        if best is None or miss < best[0]:
            best = (miss, ratio, rt)
        if miss <= ROUND_TO_SLACK:
            break
    _, ratio, rt = best
    _prune_structured_once(model, example, ratio, rt)
    macs1, params1 = count_macs_params(model, spec)
    return {"ratio": ratio, "round_to": rt, "removed": removed(model), "target": target,
            "macs_before": macs0, "macs_after": macs1, "params_before": params0, "params_after": params1}


# --- unstructured --------------------------------------------------------------------------

class MaskKeeper(Callback):
    """Re-applies fixed pruning masks after every optimizer step, so fine-tuning cannot regrow
    pruned weights and the sparsity stays at the target (the state dict stays plain tensors)."""

    def __init__(self, masks: list[tuple[nn.Module, torch.Tensor]]) -> None:
        self.masks = masks

    @torch.no_grad()
    def apply(self) -> None:
        for module, mask in self.masks:
            module.weight.mul_(mask)

    def on_step_end(self, state: FitState) -> None:
        self.apply()


def unstructured_prune(model: nn.Module, *, amount: float) -> MaskKeeper:
    """Global L1 magnitude pruning of ``amount`` of the conv / linear weights (classifier kept),
    in place, made permanent (``prune.remove``). Returns the keeper of the masks."""
    from torch.nn.utils import prune

    if not 0 < amount < 1:
        raise ConfigError(f"Pruning amount must be strictly between 0 and 1 (valid range: 0 < amount < 1), got {amount}.")
    mods = prunable_weights(model, include_classifier=False)
    prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured,
                              amount=float(amount))
    masks = [(m, m.weight_mask.detach().clone()) for m in mods]
    for m in mods:
        prune.remove(m, "weight")
    return MaskKeeper(masks)


def apply_pruning(model: nn.Module, settings: dict, spec: EvalSpec,
                  device: torch.device | str = "cpu") -> list[Callback]:
    """What ``fit`` calls on the parent's weights before building the optimizer. Returns the
    callbacks fine-tuning needs (the mask keeper for unstructured pruning). What was done is
    left on ``model.taillab_pruning`` (a dict) for the run's tags."""
    method = settings.get("method", "structured")
    amount = float(settings["amount"])
    if method == "structured":
        info = structured_prune(model, spec, amount=amount, target=settings.get("target", "macs"),
                                round_to=settings.get("round_to", DEFAULT_ROUND_TO))
        callbacks: list[Callback] = []
    elif method == "unstructured":
        keeper = unstructured_prune(model, amount=amount)
        info = {"sparsity": sparsity(model, include_classifier=False)}
        callbacks = [keeper]
    else:
        raise ConfigError(f"Invalid prune method {method!r}. Valid choices: {', '.join(METHODS)}.")
    model.taillab_pruning = {"method": method, "amount": amount, **info}
    print(f"pruning: {json.dumps(model.taillab_pruning)}", flush=True)
    return callbacks


# --- the child run -------------------------------------------------------------------------

def method_label(cfg: TrainConfig, *, removed: float | None = None) -> str:
    p = cfg.prune
    pct = f"{p['amount']:.0%}"
    epochs = f"{cfg.epochs} fine-tuning epoch{'s' if cfg.epochs != 1 else ''}"
    if p.get("method", "structured") == "unstructured":
        return f"unstructured magnitude pruning, {pct} of weights, {epochs}"
    what = "MACs" if p.get("target", "macs") == "macs" else "channels"
    got = f" ({removed:.0%} removed)" if removed is not None and abs(removed - p["amount"]) >= 0.005 else ""
    return f"structured pruning, {pct} of {what}{got}, {epochs}"


def prune_config(parent, *, method: str, amount: float, finetune_epochs: int, target: str = "macs",
                 round_to: int | None = DEFAULT_ROUND_TO) -> TrainConfig:
    """The parent's resolved settings, initialised from its weights, pruned, fine-tuned."""
    base = train_config_from_dict(parent.config)
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 1:
        raise ConfigError(f"finetune_epochs must be a whole number >= 1, got {finetune_epochs!r}.")
    settings = {"method": method, "amount": amount}
    if method == "structured":
        settings.update(target=target, round_to=round_to)
    tag = f"{method[:5]}{round(100 * amount) if isinstance(amount, (int, float)) else amount}"
    return dataclasses.replace(base, name=f"{parent.name}-prune-{tag}", init_from=parent.id,
                               train_scope="all", prune=settings, epochs=finetune_epochs,
                               warmup_epochs=0.0, pretrained=False, distil_from=None,
                               threads=None, num_workers=None)  # from where it is launched


def launch_prune(store, run_id: str, *, method: str, amount: float,
                 finetune_epochs: int = FINETUNE_EPOCHS, target: str = "macs", dashboard: bool = False) -> Run:
    """Start pruning + fine-tuning of a finished run as a worker process (kind "prune", a child
    of ``run_id``). Bad settings (amount 0 or 1, unknown method) raise ConfigError before
    anything is stored."""
    from engine import jobs, workspace
    from engine.store import RunStatus

    parent = store.get_run(run_id)
    if method not in METHODS:
        raise ConfigError(f"Invalid prune method {method!r}. Valid choices: {', '.join(METHODS)}.")
    from engine.imbalance import list_losses, loss_info
    loss = parent.config.get("loss")
    if method == "structured" and loss in {i.name for i in list_losses()} and loss_info(loss).cosine_head:
        # refused before anything is stored
        raise ConfigError("Structured pruning of a run with LDAM's cosine classifier is not supported; "
                          "use unstructured pruning, or prune a run trained with another loss.")
    cfg = prune_config(parent, method=method, amount=amount, finetune_epochs=finetune_epochs, target=target)
    if parent.status != RunStatus.FINISHED or not workspace.best_checkpoint(run_id).is_file():
        raise ValueError(f"Run {run_id} is {parent.status} without a best checkpoint; pruning needs "
                         "a finished training run.")
    return jobs.launch(cfg, store, kind="prune", parent_run_id=run_id, dashboard=dashboard)


# --- what a finished variant records -------------------------------------------------------

class VariantRecorder(Callback):
    """After a prune or distil run: the contract's tags and metrics (see the module docstring)."""

    def __init__(self, store, run_id: str) -> None:
        self.store, self.run_id = store, run_id

    def on_fit_end(self, state: FitState, result: FitResult) -> None:
        from engine import workspace
        from engine.compress import measure
        from engine.models import model_from_checkpoint

        cfg, model, spec = state.cfg, state.model, state.data.eval_spec
        parent_id = self.store.get_run(self.run_id).parent_run_id or cfg.init_from or cfg.distil_from
        logits, targets = result.test_eval.logits, result.test_eval.targets  # test-split order
        measure.save_test_outputs(self.run_id, logits, targets)
        macs, params = count_macs_params(model, spec)
        tags = {"format": "torch", "params": str(params), "macs": str(macs),
                "sparsity": f"{measure.sparsity(model):.6f}"}
        best = workspace.run_dir(self.run_id) / "best.pt"
        if best.is_file():
            tags["size_bytes"] = str(measure.file_size([best]))
        metrics = {"test/ece": measure.ece(measure.softmax(logits), targets)}
        if parent_id:
            p_logits, p_targets = measure.test_outputs(self.store, parent_id, data=state.data)
            if len(p_targets) == len(targets) and np.array_equal(p_targets, targets):
                metrics["test/agreement"] = measure.agreement(logits, p_logits)
        if cfg.prune:
            info = getattr(model, "taillab_pruning", {})
            removed = None
            if parent_id and cfg.prune.get("method", "structured") == "structured":
                ck = torch.load(workspace.best_checkpoint(parent_id), map_location="cpu", weights_only=True)
                pm = model_from_checkpoint(ck)
                if cfg.prune.get("target", "macs") == "macs":
                    removed = 1 - macs / max(count_macs_params(pm, spec)[0], 1)
                else:
                    removed = 1 - _channels(model) / max(_channels(pm), 1)
            tags["method_label"] = method_label(cfg, removed=removed)
            tags["prune"] = json.dumps({**info, **({"removed": removed} if removed is not None else {})})
            if cfg.prune.get("method") == "unstructured":
                tags["compress_note"] = UNSTRUCTURED_NOTE
        if cfg.distil_from:
            from engine.compress.distil import method_label as distil_label
            teacher = torch.load(workspace.best_checkpoint(cfg.distil_from), map_location="cpu",
                                 weights_only=True)["model"]
            label = distil_label(cfg, teacher=teacher)
            tags["method_label"] = f"{tags['method_label']}; {label}" if cfg.prune else label
        self.store.set_tags(self.run_id, tags)
        self.store.log_metrics(self.run_id, metrics, step=state.step, epoch=cfg.epochs)
