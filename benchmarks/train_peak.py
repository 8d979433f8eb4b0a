"""How close the trainer gets to the machine's peak: ResNet-32 at 32x32, batch 128, on CPU.

    python -m benchmarks.train_peak [--batches 12] [--threads N]

Ceiling: the GFLOP/s of one large 3x3 convolution (oneDNN's best case: 64 -> 64 channels on
64 x 56 x 56 maps), measured in the same run with the same thread count, divided by the FLOPs
one training image costs, 6 x the model's forward multiply-adds (forward 2 FLOPs per MAC,
backward twice the forward). Ours: images per second of engine.train.train_one_epoch (the loop fit
uses) with the default settings for 32 px colour images: AdamW, logit-adjusted cross-entropy,
batches straight from uint8 arrays (ArrayBatches). Prints a table, then `train_peak_ratio`
(target >= 0.5) and `train_images_per_s`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from engine.config import TrainConfig
from engine.imbalance import create_loss
from engine.models import MODELS, count_macs, create_model
from engine.train import ArrayBatches, build_optimizer, train_one_epoch
from engine.transforms import EvalSpec


def conv_gflops(threads: int, repeats: int = 5) -> float:
    torch.set_num_threads(threads)
    x = torch.randn(64, 64, 56, 56)
    w = torch.randn(64, 64, 3, 3)
    macs = 64 * 64 * 56 * 56 * 64 * 9
    F.conv2d(x, w, padding=1)  # warm-up: oneDNN picks its kernel
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        F.conv2d(x, w, padding=1)
        times.append(time.perf_counter() - t0)
    return 2 * macs / min(times) / 1e9


def train_rate(threads: int, batches: int, batch_size: int = 128) -> tuple[float, int]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    C, n = 10, batch_size * batches
    counts = [max(1, int(1000 * 0.01 ** (i / (C - 1)))) for i in range(C)]
    spec = EvalSpec(size=32, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, C, (n,))
    model = create_model("resnet32", num_classes=C, in_channels=3, input_size=32)
    cfg = TrainConfig(model="resnet32", optimizer="adamw", lr=2e-3, weight_decay=0.05, batch_size=batch_size,
                      loss="logit_adjusted")
    opt = build_optimizer(cfg, model)
    crit = create_loss("logit_adjusted", class_counts=counts)
    warm = ArrayBatches(images[:2 * batch_size], labels[:2 * batch_size], spec, batch_size=batch_size)
    train_one_epoch(model, crit, opt, warm, torch.device("cpu"))
    loader = ArrayBatches(images, labels, spec, batch_size=batch_size)
    t0 = time.perf_counter()
    train_one_epoch(model, crit, opt, loader, torch.device("cpu"))
    return n / (time.perf_counter() - t0), count_macs(model, 32, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="default: fit's own default, one core left free")
    args = ap.parse_args()
    rows = []
    for _ in range(args.repeats):
        g = conv_gflops(args.threads)
        rate, macs = train_rate(args.threads, args.batches)
        ceiling = g * 1e9 / (6 * macs)
        rows.append((g, ceiling, rate, rate / ceiling))
    print(f"ResNet-32 at 32 px: {MODELS['resnet32'].macs_m:.0f} M MACs forward; threads {args.threads}")
    print(f"{'conv GFLOP/s':>12}  {'ceiling img/s':>13}  {'ours img/s':>10}  {'ratio':>6}")
    for g, c, r, q in rows:
        print(f"{g:>12.1f}  {c:>13.0f}  {r:>10.0f}  {q:>6.2f}")
    print(f"train_peak_ratio: {statistics.median(q for *_, q in rows):.3f}")
    print(f"train_images_per_s: {statistics.median(r for _, _, r, _ in rows):.0f}")


if __name__ == "__main__":
    main()
