"""Corrections of a finished run's head bias, each recorded as a child run of it.

* ``apply_posthoc(store, run_id, "logit_adjust")``: logits - tau * log(prior) (Menon et al.,
  ICLR 2021); no training, seconds.
* ``apply_posthoc(store, run_id, "tau_norm")``: classifier rows W_c / ||W_c||^tau (Kang et al.,
  ICLR 2020); no training, seconds.
* ``launch_crt(store, run_id)``: classifier re-training (cRT, Kang et al. 2020): the backbone is
  frozen, the last layer re-initialised and trained with class-balanced sampling. It is an
  ordinary training job (``engine.train.fit`` with ``init_from`` / ``train_scope``), live and
  cancellable like any run.

tau is chosen on the validation split for balanced accuracy and only then applied to test, so
the test numbers are not tuned on test. A post-hoc child run stores its test and validation
metrics, per-class results and the chosen tau (tag ``tau``); it has no checkpoint of its own.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine import imbalance
from engine.config import TrainConfig, data_config_from_dict, train_config_from_dict
from engine.data.datasets import ImageDataset, PreparedData, prepare_data
from engine.evaluate import per_class_counts, summarize
from engine.models import classifier, model_from_checkpoint
from engine.store import Run, RunStatus, Store
from engine.train import make_loader
from engine.workspace import best_checkpoint as checkpoint_path
from engine.transforms import EvalSpec, eval_transform

METHODS = {
    "logit_adjust": "Post-hoc logit adjustment: logits - tau * log(class prior) (Menon et al. 2021).",
    "tau_norm": "tau-normalisation: classifier rows W_c / ||W_c||^tau (Kang et al. 2020).",
}
CRT_EPOCHS = 5  # Kang et al. re-train for 10 of 90-200 epochs; a few suffice on the built-ins
METRIC_KEYS = ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc")


@dataclass
class RunOutputs:
    """A model's outputs on one split: logits (N, C), penultimate features (N, D), targets (N,)."""
    logits: np.ndarray
    features: np.ndarray
    targets: np.ndarray


@dataclass
class PosthocResult:
    run_id: str  # the child run
    parent_run_id: str
    method: str
    tau: float
    before: dict[str, dict[str, float]]  # split ("val", "test") -> metrics of the parent model
    after: dict[str, dict[str, float]]  # split -> metrics after the correction

    def to_dict(self) -> dict:
        clean = lambda m: {k: (None if math.isnan(v) else v) for k, v in m.items()}  # noqa: E731
        return {"run_id": self.run_id, "parent_run_id": self.parent_run_id, "method": self.method,
                "tau": self.tau,
                **{split: {"before": clean(self.before[split]), "after": clean(self.after[split])}
                   for split in ("val", "test")}}


@dataclass
class LoadedRun:
    """A finished run's best model, rebuilt from its checkpoint, with the data it was trained on."""
    model: nn.Module
    checkpoint: dict
    data: PreparedData
    spec: EvalSpec

    @property
    def train_counts(self) -> list[int]:
        return list(self.checkpoint["train_counts"])


def load_run(run_id: str, *, data: PreparedData | None = None, device: str = "cpu") -> LoadedRun:
    """The run's best.pt as a model in eval mode (as ``engine.infer.Predictor`` does) and its data:
    ``prepare_data`` of the checkpoint's DataConfig, unless ``data`` (the same, prepared) is given."""
    path = checkpoint_path(run_id)
    if not path.is_file():
        raise FileNotFoundError(f"Run {run_id} has no checkpoint at {path}: post-hoc methods need a "
                                "finished training run.")
    ck = torch.load(path, map_location=device, weights_only=True)
    data = data or prepare_data(data_config_from_dict(ck["config"]["data"]))
    if data.version_id != ck["dataset_version"]:
        raise ValueError(f"The data of run {run_id} changed since it trained (version "
                         f"{ck['dataset_version'][:12]}, now {data.version_id[:12]}); its "
                         "validation and test splits cannot be rebuilt.")
    spec = EvalSpec.from_dict(ck["eval_spec"])
    model = model_from_checkpoint(ck, device)  # pruned runs: the channel counts of their weights
    return LoadedRun(model, ck, data, spec)


@torch.no_grad()
def outputs(run: LoadedRun, split: str) -> RunOutputs:
    """Logits and penultimate features on ``split``, batched exactly like ``fit``'s evaluation
    (so the logits are bit-identical to the ones the run's test metrics came from)."""
    feats: list[torch.Tensor] = []
    hook = classifier(run.model).register_forward_hook(lambda m, inp, out: feats.append(inp[0].float().cpu()))
    ds = ImageDataset(run.data.splits[split], run.spec.channels, eval_transform(run.spec))
    loader = make_loader(ds, batch_size=max(run.checkpoint["config"]["batch_size"], 256), shuffle=False)
    device = next(run.model.parameters()).device
    logits, targets = [], []
    try:
        run.model.eval()
        for images, y in loader:
            logits.append(run.model(images.to(device)).float().cpu())
            targets.append(y)
    finally:
        hook.remove()
    if not logits:
        raise ValueError(f"The {split} split is empty: post-hoc methods tune tau on validation data.")
    return RunOutputs(torch.cat(logits).numpy(), torch.cat(feats).numpy(), torch.cat(targets).numpy())


def _linear_head(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    head = classifier(model)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"tau-normalisation needs a linear classifier; this run's is "
                         f"{type(head).__name__} (LDAM's cosine head has unit-norm rows already).")
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    return head.weight.detach().double().cpu().numpy(), bias.detach().double().cpu().numpy()


def tau_norm_logits(features: np.ndarray, weight: np.ndarray, bias: np.ndarray, tau: float) -> np.ndarray:
    return features.astype(np.float64) @ imbalance.tau_normalize(weight, tau).T + bias


def corrected_logits(run: LoadedRun, out: RunOutputs, method: str, tau: float) -> np.ndarray:
    """The logits of ``method`` at ``tau``; tau = 0 gives the model's own logits back."""
    if method == "logit_adjust":
        return imbalance.posthoc_logit_adjust(out.logits.astype(np.float64), run.train_counts, tau)
    weight, bias = _linear_head(run.model)
    return tau_norm_logits(out.features, weight, bias, tau)


def tune(run: LoadedRun, val: RunOutputs, method: str, taus=imbalance.DEFAULT_TAUS) -> float:
    """The tau with the best validation balanced accuracy (ties: the smallest correction)."""
    if method == "logit_adjust":
        return imbalance.tune_posthoc_tau(val.logits, val.targets, run.train_counts, taus)[0]
    weight, bias = _linear_head(run.model)
    return imbalance.tune_tau_normalization(val.features, val.targets, weight, bias, taus)[0]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"Invalid post-hoc method {method!r}. Valid choices: {', '.join(METHODS)}.")


def apply_posthoc(store: Store, run_id: str, method: str, *, taus=imbalance.DEFAULT_TAUS,
                  data: PreparedData | None = None, device: str = "cpu") -> PosthocResult:
    """Tune ``method``'s tau on validation, apply it to test, record a finished child run."""
    _check_method(method)
    parent = store.get_run(run_id)
    if parent.status != RunStatus.FINISHED:
        raise ValueError(f"Run {run_id} is {parent.status}; post-hoc methods need a finished run.")
    run = load_run(run_id, data=data, device=device)
    taus = np.asarray(taus, dtype=np.float64).ravel()
    d, groups = run.data, run.data.groups()
    outs = {split: outputs(run, split) for split in ("val", "test")}
    tau = tune(run, outs["val"], method, taus)
    before, after, preds = {}, {}, {}
    for split, out in outs.items():
        before[split] = summarize(out.logits.argmax(1), out.targets, d.num_classes, groups)
        preds[split] = corrected_logits(run, out, method, tau).argmax(1)
        after[split] = summarize(preds[split], out.targets, d.num_classes, groups)

    config = {"posthoc": {"method": method, "parent_run_id": run_id, "taus": taus.tolist(),
                          "selection": "val/bal_acc"},
              "data": run.checkpoint["config"]["data"], "model": run.checkpoint["model"],
              "loss": run.checkpoint["config"].get("loss")}
    child = store.create_run(config, name=f"{parent.name}-{method}", kind="posthoc",
                             parent_run_id=run_id, dataset_version_id=parent.dataset_version_id)
    store.mark_running(child.id)
    try:
        store.log_metrics(child.id, {f"{split}/{k}": v for split in ("val", "test")
                                     for k, v in after[split].items()}, step=0)
        store.set_tags(child.id, {
            "tau": f"{tau:g}", "posthoc_method": method,
            "val_bal_acc_before": f"{before['val']['bal_acc']:.6f}",
            "class_names": json.dumps(d.class_names), "train_counts": json.dumps(run.train_counts),
            "eval_spec": json.dumps(run.checkpoint["eval_spec"])})
        store.set_best(child.id, after["val"]["bal_acc"])
        for split, out in outs.items():
            support, correct = per_class_counts(preds[split], out.targets, d.num_classes)
            store.log_class_results(child.id, split, class_names=d.class_names,
                                    train_counts=run.train_counts, support=support.tolist(),
                                    correct=correct.tolist(),
                                    many_threshold=d.config.many_threshold,
                                    few_threshold=d.config.few_threshold)
    except BaseException as e:
        store.end_run(child.id, RunStatus.FAILED, f"{type(e).__name__}: {e}")
        raise
    store.end_run(child.id, RunStatus.FINISHED)
    return PosthocResult(child.id, run_id, method, tau, before, after)


# --- cRT: an ordinary training run with a frozen backbone -------------------------------------

def crt_config(parent: Run, *, epochs: int = CRT_EPOCHS, **overrides) -> TrainConfig:
    """The parent's settings, re-training only a fresh classifier with class-balanced sampling and
    plain cross-entropy (no augmentation, no re-weighting: the sampler does the balancing)."""
    base = train_config_from_dict(parent.config)
    return dataclasses.replace(base, **{
        "name": f"{parent.name}-crt", "init_from": parent.id, "train_scope": "classifier",
        "sampler": "class_balanced", "loss": "ce", "loss_params": {}, "drw_epoch": None,
        "augment": {}, "epochs": int(epochs), "warmup_epochs": 0.0, "pretrained": False,
        "threads": None, "num_workers": None,  # from where it is launched
        **overrides})


def launch_crt(store: Store, run_id: str, *, epochs: int = CRT_EPOCHS, dashboard: bool = False,
               **overrides) -> Run:
    """Start cRT on a finished run as a worker process (kind "crt", a child of ``run_id``)."""
    from engine import jobs

    parent = store.get_run(run_id)
    if parent.status != RunStatus.FINISHED or not checkpoint_path(run_id).is_file():
        raise ValueError(f"Run {run_id} is {parent.status} without a best checkpoint; cRT needs a "
                         "finished training run.")
    return jobs.launch(crt_config(parent, epochs=epochs, **overrides), store, kind="crt",
                       parent_run_id=run_id, dashboard=dashboard)


FAMILY_KINDS = ("posthoc", "crt")  # the children this module makes (compression variants: engine.compress)


def family(store: Store, run_id: str) -> tuple[Run, list[Run]]:
    """(root, its post-hoc and cRT children oldest first): the root is ``run_id`` if it has such
    children, else its parent (so a post-hoc or cRT run is shown beside its siblings)."""
    runs = store.list_runs()
    by_id = {r.id: r for r in runs}
    root = by_id.get(run_id) or store.get_run(run_id)

    def children(rid: str) -> list[Run]:
        return sorted((r for r in runs if r.parent_run_id == rid and r.kind in FAMILY_KINDS),
                      key=lambda r: r.created_at)

    if not children(root.id) and root.parent_run_id in by_id:
        root = by_id[root.parent_run_id]
    return root, children(root.id)


def comparison_rows(root: Run, children: list[Run]) -> list[dict]:
    """One row per run: test accuracy overall / balanced / head / medium / tail, and the change in
    balanced accuracy against the root (None where a run has no test result yet)."""
    def metric(r: Run, k: str):
        v = r.latest.get(f"test/{k}")
        return None if v is None or math.isnan(v) else float(v)

    base = metric(root, "bal_acc")
    rows = []
    for r in [root, *children]:
        method = {"posthoc": r.tags.get("posthoc_method", "post-hoc"), "crt": "cRT"}.get(r.kind, "original")
        bal = metric(r, "bal_acc")
        rows.append({"run": r.name, "method": method, "status": r.status, "tau": r.tags.get("tau"),
                     **{k: metric(r, k) for k in METRIC_KEYS},
                     "delta_bal_acc": None if bal is None or base is None or r is root else bal - base,
                     "id": r.id})
    return rows
