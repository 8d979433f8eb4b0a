"""The torch side of the data: a split's images as uint8 tensors for a DataLoader.

Kept apart from engine.data.datasets so that planning a dataset and drawing its long tail (the
Data page) never imports torch; ``from engine.data.datasets import ImageDataset`` still works.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset

from engine.data.datasets import Split
from engine.data.io import ImageReadError, open_image
from engine.data.sources import DatasetError
from engine.transforms import pil_to_uint8_tensor


class ImageDataset(Dataset):
    """Yields (transform(uint8 tensor (C, H, W)[, label]), label), plus the second label when
    ``with_aux`` and the split has one (multi-task)."""

    def __init__(self, split: Split, channels: int, transform: Callable | None,
                 pass_label: bool = False, with_aux: bool = False) -> None:
        self.split, self.channels, self.transform, self.pass_label = split, channels, transform, pass_label
        self.with_aux = with_aux and split.aux_labels is not None

    def __len__(self) -> int:
        return len(self.split)

    def raw(self, i: int) -> torch.Tensor:
        s = self.split
        if s.images is not None:
            img = torch.from_numpy(s.images[i])
            img = img[None] if img.ndim == 2 else img.permute(2, 0, 1)
            if img.shape[0] != self.channels:
                img = img.expand(3, -1, -1) if self.channels == 3 else img.float().mean(0, keepdim=True).round().to(torch.uint8)
            return img.contiguous()
        try:
            pil = open_image(s.root / s.paths[i])
        except ImageReadError as e:
            raise DatasetError(f"Cannot read training image: {e}") from e
        return pil_to_uint8_tensor(pil, self.channels)

    def __getitem__(self, i: int):
        label = int(self.split.labels[i])
        img = self.raw(i)
        if self.transform is not None:
            img = self.transform(img, label) if self.pass_label else self.transform(img)
        if self.with_aux:  # multi-task: the second label rides along
            return img, label, int(self.split.aux_labels[i])
        return img, label

