"""The textbook PyTorch script TailLab must beat: a 60-line ImageFolder classifier.

    python -m benchmarks.textbook FOLDER [--epochs 5] [--balanced-softmax]

Two 3x3 convs + a 128-unit FC layer (PyTorch's MNIST example), Adam 1e-3, batch 128, no
augmentation, every split decoded into tensors first. Prints one JSON line of test figures.
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
import torch.nn.functional as F


def load(split_dir: Path, classes: list[str]):
    xs, ys = [], []
    for y, c in enumerate(classes):
        for f in sorted((split_dir / c).iterdir()):
            xs.append(np.asarray(Image.open(f).convert("L"), dtype=np.uint8))
            ys.append(y)
    x = torch.from_numpy(np.stack(xs)).float().div_(255).unsqueeze(1)
    return (x - 0.1307) / 0.3081, torch.tensor(ys)


class Net(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
        self.fc1, self.fc2 = nn.LazyLinear(128), nn.Linear(128, n)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder", type=Path)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--balanced-softmax", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    classes = sorted(d.name for d in (a.folder / "train").iterdir())
    xtr, ytr = load(a.folder / "train", classes)
    xte, yte = load(a.folder / "test", classes)
    model = Net(len(classes))
    model(xtr[:1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    prior = torch.bincount(ytr, minlength=len(classes)).float().log()
    for _ in range(a.epochs):
        model.train()
        for idx in torch.randperm(len(ytr)).split(128):
            logits = model(xtr[idx])
            if a.balanced_softmax:
                logits = logits + prior
            loss = F.cross_entropy(logits, ytr[idx])
            opt.zero_grad(); loss.backward(); opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x).argmax(1) for x in xte.split(1000)])
    recall = [float((pred[yte == c] == c).float().mean()) for c in range(len(classes))]
    print(json.dumps({"acc": float((pred == yte).float().mean()), "bal_acc": float(np.mean(recall)),
                      "recall": recall, "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    sys.exit(main())
