"""The evaluation transform: one small, JSON-serialisable spec stored with every run, so the
Predict page, the CLI and the exported model preprocess exactly as evaluation did."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torchvision.transforms import v2

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


def eval_transform(spec: EvalSpec) -> v2.Compose:
    """uint8 tensor (C, H, W) -> float tensor (C, size, size), normalised. Resizes only when the
    image is not already ``size`` x ``size``."""
    return v2.Compose([
        v2.Resize((spec.size, spec.size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(spec.mean), list(spec.std)),
    ])


def pil_to_uint8_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    """Any PIL image -> uint8 tensor (channels, H, W) in the run's colour mode."""
    img = convert_mode(img, "L" if channels == 1 else "RGB")
    return v2.functional.pil_to_tensor(img)
