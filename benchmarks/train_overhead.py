"""Our ``fit`` (with its real callbacks: store logging to SQLite, cancel checks, schedule) against a
bare PyTorch loop on the same model, data and batches.

    python -m benchmarks.train_overhead [--repeats 3] [--n-max 2000]

Timed: the training steps of one epoch (fit: from on_fit_start to the last step; bare loop:
the loop itself). Evaluation is outside both windows. The two alternate, several repeats; the
figure is the ratio of median images/s (ours / bare). Target >= 0.95.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import nn

from engine.config import DataConfig, TrainConfig, to_dict
from engine.data.datasets import ImageDataset
from engine.models import create_model
from engine.train import Callback, build_optimizer, fit, make_loader, resolve_for_data, seed_everything
from engine.transforms import eval_transform


class Timer(Callback):
    def on_fit_start(self, state):
        self.t0, self.n = time.perf_counter(), 0

    def on_step_end(self, state):
        self.t1 = time.perf_counter()
        self.n = state.step


def run_ours(cfg: TrainConfig, data, store) -> float:
    from engine.worker import CancelCheck, StoreLogger
    run = store.create_run(to_dict(cfg), name="bench")
    timer = Timer()
    fit(cfg, [timer, StoreLogger(store, run.id, cfg.log_every), CancelCheck(store, run.id)], data=data)
    return timer.n * cfg.batch_size / (timer.t1 - timer.t0)


def run_bare(cfg: TrainConfig, data) -> float:
    seed_everything(cfg.seed)
    spec = data.eval_spec
    t = eval_transform(spec)
    ds = ImageDataset(data.splits["train"], spec.channels, t)
    loader = make_loader(ds, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    model = create_model(cfg.model, num_classes=data.num_classes, in_channels=spec.channels, input_size=spec.size)
    opt = build_optimizer(cfg, model)
    crit = nn.CrossEntropyLoss()
    model.train()
    t0, n = time.perf_counter(), 0
    for x, y in loader:  # the textbook loop
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        n += 1
    return n * cfg.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-max", type=int, default=2000, help="largest class of MNIST-LT (sets the steps)")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    from engine.store import open_store
    tmp = tempfile.mkdtemp(prefix="taillab-bench-")
    store = open_store(f"sqlite:///{tmp}/bench.db")
    threads = max(1, (os.cpu_count() or 2) - 1)  # fit's default; the bare loop gets the same
    cfg = TrainConfig(data=DataConfig(n_max=args.n_max, val_per_class=10, test_per_class=10),
                      epochs=1, batch_size=args.batch_size, lr=0.05, scheduler="constant",
                      threads=threads)
    cfg, data, _ = resolve_for_data(cfg, None)  # the automatic settings, as a new user gets them
    steps = -(-len(data.splits["train"]) // cfg.batch_size)
    torch.set_num_threads(threads)
    run_bare(cfg, data)  # warm-up (allocator, kernels)
    ours, bare = [], []
    for i in range(args.repeats):
        bare.append(run_bare(cfg, data))
        ours.append(run_ours(cfg, data, store))
    print(f"model {cfg.model}, {len(data.splits['train'])} images (MNIST-LT), batch {cfg.batch_size}, "
          f"{steps} steps, {torch.get_num_threads()} threads")
    print(f"{'repeat':>6}  {'bare img/s':>11}  {'fit img/s':>10}  {'ratio':>6}")
    for i, (b, o) in enumerate(zip(bare, ours)):
        print(f"{i:>6}  {b:>11.0f}  {o:>10.0f}  {o / b:>6.3f}")
    mb, mo = statistics.median(bare), statistics.median(ours)
    print(f"{'median':>6}  {mb:>11.0f}  {mo:>10.0f}  {mo / mb:>6.3f}")
    print(f"train_overhead_ratio: {mo / mb:.3f}")


if __name__ == "__main__":
    main()
