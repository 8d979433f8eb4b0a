"""One ResNet-32 epoch on 32 px long-tailed data: mixed precision + channels_last against fp32.

    python -m benchmarks.gpu_epoch                 # on a GPU machine: CIFAR-10-LT size (12,406 images)
    python -m benchmarks.gpu_epoch --images 1024   # anywhere, a tiny size (CPU: both paths are fp32)

Both runs use the trainer's own pieces (create_model, build_optimizer, the default long-tail loss,
ArrayBatches, train_one_epoch with autocast_dtype / GradScaler / channels_last exactly as fit sets
them) on the same random uint8 images with CIFAR-10-LT's class counts (ratio 100). Each is warmed
up, then timed over --repeats epochs. Prints a table, then `gpu_epoch_speedup` (fp32 time / mixed
time; target >= 2 on a GPU) and the device. On a CPU the mixed path is fp32 by design (fit only
autocasts on CUDA), so the speedup is ~1 and only says the benchmark runs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from engine.config import TrainConfig
from engine.imbalance import create_loss
from engine.models import create_model
from engine.train import ArrayBatches, autocast_dtype, build_optimizer, resolve_device, train_one_epoch
from engine.transforms import EvalSpec


def lt_counts(n_max: int = 5000, classes: int = 10, ratio: float = 100.0) -> list[int]:
    return [int(n_max * ratio ** (-i / (classes - 1))) for i in range(classes)]


def one(device: torch.device, *, mixed: bool, images: torch.Tensor, labels: torch.Tensor, counts: list[int],
        batch: int, repeats: int) -> tuple[float, str]:
    torch.manual_seed(0)
    precision = "auto" if mixed else "fp32"
    amp = autocast_dtype(precision, device)
    channels_last = mixed and device.type == "cuda"
    model = create_model("resnet32", num_classes=len(counts), in_channels=3, input_size=32).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(model="resnet32", optimizer="sgd", lr=0.1, weight_decay=5e-4, batch_size=batch, loss="logit_adjusted")
    opt = build_optimizer(cfg, model)
    crit = create_loss("logit_adjusted", class_counts=counts).to(device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    spec = EvalSpec(32, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x, y = images.to(device), labels.to(device)
    loader = ArrayBatches(x, y, spec, batch_size=batch, drop_last=True)
    loader.mean, loader.inv_std = loader.mean.to(device), loader.inv_std.to(device)
    kw = dict(amp_dtype=amp, scaler=scaler, channels_last=channels_last)
    times = []
    for _ in range(repeats + 1):  # the first epoch warms up (cuDNN autotuning, allocator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_one_epoch(model, crit, opt, loader, device, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    label = f"{'fp32' if amp is None else str(amp).replace('torch.', '')}{' + channels_last' if channels_last else ''}"
    return statistics.median(times[1:]), label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=None, help="cap on images (default: all 12,406)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    counts = lt_counts()
    labels = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    if args.images:
        labels = labels[: args.images]
    images = torch.randint(0, 256, (len(labels), 3, 32, 32), dtype=torch.uint8)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = [one(device, mixed=m, images=images, labels=labels, counts=counts, batch=args.batch_size,
                repeats=args.repeats) for m in (False, True)]
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{len(labels):,} images, batch {args.batch_size}")
    print(f"{'path':<28} {'epoch s':>8} {'images/s':>9}")
    for t, label in rows:
        print(f"{label:<28} {t:>8.2f} {len(labels) / t:>9.0f}")
    print(f"gpu_epoch_speedup: {rows[0][0] / rows[1][0]:.2f}")
    print(f"gpu_epoch_device: {device.type}")


if __name__ == "__main__":
    main()
