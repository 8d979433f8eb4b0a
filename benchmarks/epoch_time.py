"""Seconds for one training epoch of a model on MNIST-LT (ratio 100, all it can have: 13,201 images).

    python -m benchmarks.epoch_time [--model small_cnn] [--batch-size 128] [--repeats 2]

Timed: the training steps of the epoch (data loading + forward + backward + step + logging
callbacks), and separately the validation pass (1,000 images). Prints a table, then
`epoch_time_<model>_mnist_lt100_s: X` (median of the repeats).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from engine.config import DataConfig, TrainConfig
from engine.data.datasets import prepare_data
from engine.train import Callback, fit


class Phases(Callback):
    def on_fit_start(self, state):
        self.t0 = time.perf_counter()

    def on_step_end(self, state):
        self.t_train = time.perf_counter() - self.t0
        self.t_last = time.perf_counter()

    def on_epoch_end(self, state, metrics):
        self.t_val = time.perf_counter() - self.t_last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    cfg = TrainConfig(data=DataConfig(imbalance_ratio=100, test_per_class=10), model=args.model,
                      epochs=1, batch_size=args.batch_size)
    data = prepare_data(cfg.data)
    rows = []
    for _ in range(args.repeats):
        p = Phases()
        fit(cfg, [p], data=data)
        rows.append((p.t_train, p.t_val))
    print(f"{args.model}, MNIST-LT ratio 100: {len(data.splits['train'])} training images, batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads")
    print(f"{'repeat':>6}  {'train s':>8}  {'val s':>6}  {'img/s':>7}")
    for i, (t, v) in enumerate(rows):
        print(f"{i:>6}  {t:>8.2f}  {v:>6.2f}  {len(data.splits['train']) / t:>7.0f}")
    med = statistics.median(t for t, _ in rows)
    print(f"epoch_time_{args.model}_mnist_lt100_s: {med:.2f}")


if __name__ == "__main__":
    main()
