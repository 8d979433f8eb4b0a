"""Long-tail methods against cross-entropy on MNIST-LT and Animal-MNIST-LT (imbalance ratio 100).

    python -m benchmarks.longtail [--datasets mnist,animal_mnist] [--seeds 3] [--epochs 10]
                                  [--n-max 1000] [--crt-epochs 5] [--threads 1]
                                  [--model auto --optimizer auto --lr auto --batch-size auto]

Every trained method gets the same budget (model, epochs, batch size, learning rate, schedule);
by default the automatic settings a new user gets (engine.defaults: the compact CNN, AdamW lr
0.002, weight decay 0.05, cosine decay, batch 32 on these small training splits), only the loss
differs.
``--model small_cnn --optimizer sgd --lr 0.05 --batch-size 64`` reproduces the first table.
seed s draws the long-tailed subset with data seed s and trains with seed s, so the spread covers
both. The test split is balanced and the same for every seed. Post-hoc logit adjustment,
tau-normalisation and cRT start from the CE run of the same seed (tau tuned on validation).

Runs are kept in the workspace ($TAILLAB_HOME, default ./taillab-workspace) as
``bench-<dataset>-<method>-s<seed>``, recorded exactly as a worker records them, so the Runs page
can compare them. Prints a table per dataset (test accuracy, mean ± std over seeds), then one
``name: value`` line per headline figure.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from engine import posthoc, worker
from engine.config import DataConfig, TrainConfig, to_dict
from engine.data.datasets import prepare_data
from engine.store import RunStatus, open_store

# name -> TrainConfig overrides; every method trains with the same budget otherwise.
TRAINED = {
    "ce": dict(loss="ce"),
    "weighted_ce": dict(loss="weighted_ce"),
    "focal": dict(loss="focal"),
    "cb_focal": dict(loss="cb_focal"),
    "ldam_drw": dict(loss="ldam"),  # drw_epoch set from the budget below
    "balanced_softmax": dict(loss="balanced_softmax"),
    "logit_adjusted": dict(loss="logit_adjusted"),
}
DERIVED = ("posthoc_la", "tau_norm", "crt")  # from the CE run of the same seed
METHODS = (*TRAINED, *DERIVED)
COLUMNS = (("overall", "acc"), ("balanced", "bal_acc"), ("many", "many_acc"),
           ("medium", "medium_acc"), ("few", "few_acc"))


def data_config(dataset: str, seed: int, n_max: int | None, test_per_class: int) -> DataConfig:
    # Animal-MNIST gives at most 700 images per class once validation is held out.
    return DataConfig(source=f"builtin:{dataset}", imbalance_ratio=100.0,
                      n_max=n_max if dataset == "mnist" else None, seed=seed,
                      val_per_class=100, test_per_class=test_per_class)


def test_metrics(store, run_id: str) -> dict[str, float]:
    run = store.get_run(run_id)
    if run.status != RunStatus.FINISHED:
        raise RuntimeError(f"benchmark run {run.name} ended {run.status}: {run.error}")
    return {k: run.latest[f"test/{k}"] for _, k in COLUMNS}


def run_seed(store, dataset: str, seed: int, args) -> dict[str, dict[str, float]]:
    dcfg = data_config(dataset, seed, args.n_max, args.test_per_class)
    data = prepare_data(dcfg)
    budget = dict(data=dcfg, model=args.model, optimizer=args.optimizer, epochs=args.epochs,
                  batch_size=None if args.batch_size == "auto" else int(args.batch_size),
                  lr=None if args.lr == "auto" else float(args.lr),
                  seed=seed, log_every=20, threads=args.threads)
    out, ids = {}, {}
    for method, overrides in TRAINED.items():
        extra = {"drw_epoch": args.epochs * 2 // 3} if method == "ldam_drw" else {}
        cfg = TrainConfig(name=f"bench-{dataset}-{method}-s{seed}", **budget, **overrides, **extra)
        run = store.create_run(to_dict(cfg), name=cfg.name)
        t0 = time.perf_counter()
        worker.run(run.id, store, data=data)
        ids[method], out[method] = run.id, test_metrics(store, run.id)
        print(f"  {dataset} s{seed} {method:17} bal {out[method]['bal_acc']:.3f} "
              f"few {out[method]['few_acc']:.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    ce = ids["ce"]
    for method, name in (("posthoc_la", "logit_adjust"), ("tau_norm", "tau_norm")):
        res = posthoc.apply_posthoc(store, ce, name, data=data)
        out[method] = res.after["test"]
        print(f"  {dataset} s{seed} {method:17} bal {out[method]['bal_acc']:.3f} "
              f"few {out[method]['few_acc']:.3f}  (tau {res.tau:g})", flush=True)
    cfg = posthoc.crt_config(store.get_run(ce), epochs=args.crt_epochs,
                             name=f"bench-{dataset}-crt-s{seed}")
    run = store.create_run(to_dict(cfg), name=cfg.name, kind="crt", parent_run_id=ce)
    worker.run(run.id, store, data=data)
    out["crt"] = test_metrics(store, run.id)
    print(f"  {dataset} s{seed} {'crt':17} bal {out['crt']['bal_acc']:.3f} "
          f"few {out['crt']['few_acc']:.3f}", flush=True)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]  # the store gives None for NaN
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="mnist,animal_mnist")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--crt-epochs", type=int, default=posthoc.CRT_EPOCHS)
    p.add_argument("--n-max", type=int, default=1000, help="largest MNIST-LT class (tail: n_max / 100)")
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--batch-size", default="auto", help="a number, or auto")
    p.add_argument("--model", default="auto")
    p.add_argument("--optimizer", default="auto")
    p.add_argument("--lr", default="auto", help="a number, or auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads; on 2 shared cores 2 threads ran 5x slower than 1 "
                        "(OpenMP threads spinning against other processes)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    store = open_store()
    t0 = time.perf_counter()
    results: dict[str, dict[str, list[dict]]] = {}
    for ds in datasets:
        results[ds] = {m: [] for m in METHODS}
        for seed in range(args.seeds):
            for method, metrics in run_seed(store, ds, seed, args).items():
                results[ds][method].append(metrics)
    elapsed = time.perf_counter() - t0

    figures: list[tuple[str, float]] = []
    for ds in datasets:
        print(f"\n{ds}-LT, ratio 100, model {args.model}, optimizer {args.optimizer}, lr {args.lr}, "
              f"{args.epochs} epochs, {args.seeds} seeds: "
              "test accuracy % (mean ± std)")
        print(f"{'method':18}" + "".join(f"{label:>16}" for label, _ in COLUMNS))
        summary = {}
        for method in METHODS:
            stats = {k: mean_std([r[k] for r in results[ds][method]]) for _, k in COLUMNS}
            summary[method] = stats
            print(f"{method:18}" + "".join(f"{stats[k][0] * 100:9.1f} ± {stats[k][1] * 100:4.1f}"
                                           for _, k in COLUMNS))
        for method in METHODS:
            figures.append((f"longtail_{ds}_{method}_bal_acc", summary[method]["bal_acc"][0]))
            figures.append((f"longtail_{ds}_{method}_few_acc", summary[method]["few_acc"][0]))
        best = max(METHODS, key=lambda m: summary[m]["bal_acc"][0])
        print(f"best balanced accuracy: {best}")
        figures.append((f"longtail_{ds}_ce_bal_acc_std", summary["ce"]["bal_acc"][1]))
        figures.append((f"longtail_{ds}_best_minus_ce_bal_acc",
                        summary[best]["bal_acc"][0] - summary["ce"]["bal_acc"][0]))
    figures.append(("longtail_seconds", elapsed))
    print()
    for name, value in figures:
        print(f"{name}: {value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
