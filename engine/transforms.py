"""The evaluation transform: one small, JSON-serialisable spec stored with every run, so the
Predict page, the CLI and the exported model preprocess exactly as evaluation did."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from engine.data.io import convert_mode


@dataclass(frozen=True)
class EvalSpec:
    size: int  # square model input side, pixels
    channels: int  # 1 (greyscale) or 3 (RGB)
    mean: tuple[float, ...]  # per channel, on the 0..1 scale
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalSpec":
        return cls(int(d["size"]), int(d["channels"]), tuple(d["mean"]), tuple(d["std"]))


class EvalTransform:
    """uint8 tensor (C, H, W) -> float tensor (C, size, size): antialiased resize (only when the
    image is not already size x size), scale to 0..1, normalise per channel.

    The same arithmetic as torchvision's ``v2.Compose([Resize, ToDtype(scale=True), Normalize])``
    (tested), without its per-call dispatch overhead (it runs once per image per epoch)."""

    def __init__(self, spec: EvalSpec) -> None:
        self.spec = spec
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        s = self.spec.size
        if img.shape[-2:] != (s, s):
            from torchvision.transforms.v2.functional import resize  # lazy: torchvision takes ~2 s to import
            img = resize(img, [s, s], antialias=True)
        return (img.to(torch.float32) / 255.0 - self.mean) / self.std


def eval_transform(spec: EvalSpec) -> EvalTransform:
    return EvalTransform(spec)


def pil_to_uint8_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    """Any PIL image -> uint8 tensor (channels, H, W) in the run's colour mode."""
    img = convert_mode(img, "L" if channels == 1 else "RGB")
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    return torch.from_numpy(arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1)))
