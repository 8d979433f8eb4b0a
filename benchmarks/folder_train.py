"""A new user's first run against a textbook PyTorch script, on the same folder, in the same run.

    python -m benchmarks.folder_train [--folder DIR] [--epochs 5] [--builtins]

1. Writes MNIST-LT (ratio 100, CIFAR-LT construction, largest class = the smallest full class:
   4,506 ... 45 training images) as PNGs in ``train/``, ``val/``, ``test/`` class folders
   (benchmarks/mnist_folder.py).
2. Runs ``taillab train --dataset FOLDER --epochs 5`` as a subprocess with nothing else set, in a
   new workspace (so the scan and the decoding are part of the time), and times it wall to wall
   (process start to exit: imports, scan, decoding, training, evaluation, the worker process).
3. Runs benchmarks/textbook.py (two convs + FC, Adam 1e-3, cross-entropy, tensors preloaded),
   plain and with balanced softmax; its time is its own load + train + test time (without
   Python's start and imports), the stricter yardstick.
4. With ``--builtins``, adds ``taillab train --dataset mnist|animal_mnist --epochs 5`` rows.

Prints a table of overall, balanced, many / medium / few-shot test accuracy and seconds, then
``folder_train_balanced_acc: X`` (ours) and ``folder_train_time_ratio: Y`` (our wall time over the
textbook script's). Targets: X >= 0.965 and Y <= 2.0.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.mnist_folder import write_mnist_lt_folder
from engine.data.stats import shot_group

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc")


def _timed(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True)
    return out, time.perf_counter() - t0


def run_taillab(dataset: str, epochs: int, home: Path) -> dict:
    env = dict(os.environ, TAILLAB_HOME=str(home))
    env.pop("TAILLAB_DB_URL", None)
    env.pop("TAILLAB_CACHE_DIR", None)
    out, seconds = _timed([sys.executable, "-m", "engine.cli", "train", "--dataset", dataset,
                           "--epochs", str(epochs)], env)
    if out.returncode != 0:
        raise RuntimeError(f"taillab train failed:\n{out.stdout}\n{out.stderr}")
    runs = json.loads(subprocess.run([sys.executable, "-m", "engine.cli", "runs", "list", "--json"],
                                     env=env, cwd=str(ROOT), capture_output=True, text=True).stdout)
    show = json.loads(subprocess.run([sys.executable, "-m", "engine.cli", "runs", "show", runs[0]["id"], "--json"],
                                     env=env, cwd=str(ROOT), capture_output=True, text=True).stdout)
    row = {k: show["latest"].get(f"test/{k}") for k in KEYS}
    auto = next((ln[len("auto: "):] for ln in out.stdout.splitlines() if ln.startswith("auto: ")), "")
    return row | {"seconds": seconds, "auto": auto}


def run_textbook(folder: Path, epochs: int, counts: list[int], balanced_softmax: bool) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.textbook", str(folder), "--epochs", str(epochs)]
    out, seconds = _timed(cmd + (["--balanced-softmax"] if balanced_softmax else []), dict(os.environ))
    if out.returncode != 0:
        raise RuntimeError(f"textbook script failed:\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    groups = [shot_group(n) for n in counts]
    # "seconds": the script's own load + train + test time (its imports excluded), the yardstick
    row = {"acc": r["acc"], "bal_acc": r["bal_acc"], "seconds": r["seconds"], "wall": seconds}
    for g in ("many", "medium", "few"):
        rec = [v for v, gg in zip(r["recall"], groups) if gg == g]
        row[f"{g}_acc"] = sum(rec) / len(rec) if rec else None
    return row


def _fmt(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "taillab-mnist-lt-folder")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--builtins", action="store_true", help="also the built-in MNIST-LT and Animal-MNIST-LT")
    a = p.parse_args()
    counts = write_mnist_lt_folder(a.folder)
    print(f"folder {a.folder}: train {sum(counts['train']):,} images ({counts['train'][0]} ... "
          f"{counts['train'][-1]}), val {sum(counts['val']):,}, test {sum(counts['test']):,}", flush=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["taillab train --dataset FOLDER"] = run_taillab(str(a.folder), a.epochs, Path(tmp) / "ws")
        rows["textbook script (CE)"] = run_textbook(a.folder, a.epochs, counts["train"], False)
        rows["textbook script (balanced softmax)"] = run_textbook(a.folder, a.epochs, counts["train"], True)
        if a.builtins:
            for name in ("mnist", "animal_mnist"):
                rows[f"taillab train --dataset {name}"] = run_taillab(name, a.epochs, Path(tmp) / f"ws-{name}")
    print(f"\n{'':40} {'overall':>8} {'balanced':>8} {'many':>6} {'medium':>6} {'few':>6} {'seconds':>8}")
    for name, r in rows.items():
        print(f"{name:40} {_fmt(r['acc']):>8} {_fmt(r['bal_acc']):>8} {_fmt(r['many_acc']):>6} "
              f"{_fmt(r['medium_acc']):>6} {_fmt(r['few_acc']):>6} {r['seconds']:8.1f}")
    for name, r in rows.items():
        if r.get("auto"):
            print(f"auto ({name}): {r['auto']}")
    ours, base = rows["taillab train --dataset FOLDER"], rows["textbook script (CE)"]
    print(f"\nfolder_train_balanced_acc: {ours['bal_acc']:.4f}")
    print(f"folder_train_time_ratio: {ours['seconds'] / base['seconds']:.3f}")
    print(f"folder_train_textbook_balanced_acc: {base['bal_acc']:.4f}")
    print(f"folder_train_seconds: {ours['seconds']:.1f}")
    print(f"folder_train_textbook_seconds: {base['seconds']:.1f}  (wall, with imports: {base['wall']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
