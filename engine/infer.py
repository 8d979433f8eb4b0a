"""Prediction with a run's best checkpoint, preprocessing exactly as its evaluation did."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from engine.data.io import open_image
from engine.models import create_model
from engine.transforms import EvalSpec, eval_transform, pil_to_uint8_tensor


@dataclass(frozen=True)
class Prediction:
    name: str  # file name (or "uploaded file")
    labels: list[str]  # top-k, most probable first
    probs: list[float]

    def to_dict(self) -> dict:
        return {"image": self.name, "top": [{"label": l, "prob": round(p, 6)}
                                            for l, p in zip(self.labels, self.probs)]}


class Predictor:
    """Loads ``best.pt`` (or any checkpoint written by engine.train) once; predicts many."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "cpu") -> None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"No checkpoint at {path}: the run has not saved one (is it finished?).")
        ck = torch.load(path, map_location=device, weights_only=False)
        self.class_names: list[str] = list(ck["class_names"])
        self.spec = EvalSpec.from_dict(ck["eval_spec"])
        self.model = create_model(ck["model"], num_classes=ck["num_classes"],
                                  in_channels=self.spec.channels, input_size=self.spec.size,
                                  normed_head=ck.get("normed_head", False))
        self.model.load_state_dict(ck["model_state"])
        self.model.eval().to(device)
        self.device = device
        self.transform = eval_transform(self.spec)
        self.config = ck.get("config", {})

    @classmethod
    def for_run(cls, run_id: str, device: str = "cpu") -> "Predictor":
        from engine import workspace
        return cls(workspace.best_checkpoint(run_id), device)

    def preprocess(self, src: str | os.PathLike | bytes | BinaryIO) -> torch.Tensor:
        """Raises engine.data.io.ImageReadError with a readable reason for bad files."""
        img = open_image(src)
        return self.transform(pil_to_uint8_tensor(img, self.spec.channels))

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        return torch.softmax(self.model(batch.to(self.device)), dim=1).cpu().numpy()

    def predict(self, src, *, name: str | None = None, k: int = 5) -> Prediction:
        probs = self.probabilities(self.preprocess(src)[None])[0]
        k = min(k, len(probs))
        top = np.argsort(-probs)[:k]
        return Prediction(name or (str(src) if isinstance(src, (str, os.PathLike)) else "uploaded file"),
                          [self.class_names[i] for i in top], [float(probs[i]) for i in top])
