"""Prediction with a run's model, preprocessing exactly as its evaluation did.

* ``Predictor``: a run's best checkpoint in torch (any run trained by ``engine.train.fit``,
  structurally pruned ones included).
* ``OnnxPredictor``: an exported or quantized run's ``model.onnx`` on ONNX Runtime (CPU).
* ``PackagePredictor``: a deploy package written by ``taillab export`` (one zip), with no
  workspace and no torch model code: ONNX Runtime, numpy and Pillow.
* ``PosthocPredictor``: a post-hoc child run (``engine.posthoc``): its parent's checkpoint plus
  the correction the child records (logit adjustment or tau-normalisation at its tau).
* ``predictor_for_run(run_id)``: whichever of these fits the run (its kind and ``format`` tag).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from engine.data.io import open_image
from engine.transforms import EvalSpec, eval_transform, pil_to_uint8_tensor


@dataclass(frozen=True)
class Prediction:
    name: str  # file name (or "uploaded file")
    labels: list[str]  # top-k, most probable first
    probs: list[float]

    def to_dict(self) -> dict:
        return {"image": self.name, "top": [{"label": l, "prob": round(p, 6)}
                                            for l, p in zip(self.labels, self.probs)]}


def model_from_checkpoint(ck: dict) -> torch.nn.Module:
    """The model a checkpoint written by ``engine.train`` describes, with its weights, in eval
    mode (structurally pruned ones included: engine.models.model_from_checkpoint)."""
    from engine import models

    return models.model_from_checkpoint(ck).eval()


class Predictor:
    """Loads ``best.pt`` (or any checkpoint written by engine.train) once; predicts many."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "cpu") -> None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"No checkpoint at {path}: the run has not saved one (is it finished?).")
        ck = torch.load(path, map_location=device, weights_only=True)
        self.class_names: list[str] = list(ck["class_names"])
        self.spec = EvalSpec.from_dict(ck["eval_spec"])
        self.model = model_from_checkpoint(ck)
        self.model.eval().to(device)
        self.device = device
        self.transform = eval_transform(self.spec)
        self.config = ck.get("config", {})
        self.train_counts: list[int] = list(ck.get("train_counts") or [])

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


class PosthocPredictor(Predictor):
    """A post-hoc child run's model: the parent's ``best.pt`` with the child's correction applied
    to every prediction by ``engine.posthoc.corrected_logits`` (the function its metrics came from):
    ``logit_adjust``: logits - tau * log(prior); ``tau_norm``: classifier rows W_c / ||W_c||^tau."""

    def __init__(self, checkpoint: str | os.PathLike, method: str, tau: float, device: str = "cpu") -> None:
        from engine import posthoc

        posthoc._check_method(method)
        super().__init__(checkpoint, device)
        if not self.train_counts:
            raise ValueError(f"The checkpoint {checkpoint} records no train_counts; post-hoc "
                             "corrections need the class prior.")
        self.method, self.tau = method, float(tau)
        # corrected_logits reads the model (tau_norm: its linear head) and the train counts only
        self._run = posthoc.LoadedRun(self.model, {"train_counts": self.train_counts}, None, self.spec)
        if method == "tau_norm":
            posthoc._linear_head(self.model)  # a cosine head: say so now, not at the first image

    @classmethod
    def for_run(cls, run_id: str, store=None, device: str = "cpu") -> "PosthocPredictor":  # type: ignore[override]
        """A ``kind == "posthoc"`` run: its parent's checkpoint, its ``posthoc_method`` and ``tau`` tags."""
        from engine import workspace
        from engine.store import open_store

        run = (store or open_store()).get_run(run_id)
        if run.kind != "posthoc":
            raise ValueError(f"Run {run_id} is a {run.kind} run, not a post-hoc one.")
        conf = (run.config or {}).get("posthoc", {})
        parent = run.parent_run_id or conf.get("parent_run_id")
        method = run.tags.get("posthoc_method") or conf.get("method")
        if not parent or not method or "tau" not in run.tags:
            raise ValueError(f"Post-hoc run {run_id} does not record its parent, method and tau.")
        path = workspace.best_checkpoint(parent)
        if not path.is_file():
            raise FileNotFoundError(f"Post-hoc run {run_id} reuses the model of run {parent}, which has "
                                    f"no checkpoint at {path} (was its folder deleted?).")
        return cls(path, method, float(run.tags["tau"]), device)

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """The corrected logits (float64, (N, C)) of a preprocessed batch."""
        from engine import posthoc
        from engine.models import classifier

        feats: list[torch.Tensor] = []
        hook = classifier(self.model).register_forward_hook(
            lambda m, inp, out: feats.append(inp[0].float().cpu()))
        try:
            z = self.model(batch.to(self.device)).float().cpu()
        finally:
            hook.remove()
        out = posthoc.RunOutputs(z.numpy(), torch.cat(feats).numpy(), np.empty(0, np.int64))
        return np.asarray(posthoc.corrected_logits(self._run, out, self.method, self.tau), np.float64)

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        z = self.logits(batch)
        e = np.exp(z - z.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)


# --- ONNX Runtime --------------------------------------------------------------------------------

def _top_k(name: str, logits: np.ndarray, class_names: list[str], k: int) -> Prediction:
    z = logits.astype(np.float64) - logits.max()
    probs = np.exp(z) / np.exp(z).sum()
    k = min(k, len(probs))
    top = np.argsort(-probs, kind="stable")[:k]
    return Prediction(name, [class_names[i] for i in top], [float(probs[i]) for i in top])


def preprocess_numpy(img, spec: EvalSpec) -> np.ndarray:
    """PIL image -> float32 (channels, size, size), the evaluation transform without torch:
    colour mode as the run's, antialiased bilinear resize to size x size (Pillow's, which
    torchvision's antialiased uint8 resize reproduces), scale to 0..1, normalise per channel."""
    from PIL import Image

    from engine.data.io import convert_mode

    img = convert_mode(img, "L" if spec.channels == 1 else "RGB")
    if img.size != (spec.size, spec.size):
        img = img.resize((spec.size, spec.size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((arr - mean) / std, dtype=np.float32)


def ort_session(model_path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session (``threads`` intra-op threads, sequential execution)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


class OnnxPredictor:
    """An ONNX model (input ``input``, output ``logits``) on ONNX Runtime's CPU provider, with the
    same ``predict`` / ``probabilities`` as ``Predictor``; preprocessing with numpy and Pillow."""

    def __init__(self, model_path: str | os.PathLike, class_names: list[str], spec: EvalSpec, *,
                 threads: int | None = None, input_name: str = "input") -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"No ONNX model at {path}.")
        self.session = ort_session(path, threads)
        self.class_names, self.spec = list(class_names), spec
        self.input_name = input_name or self.session.get_inputs()[0].name

    @classmethod
    def for_run(cls, run_id: str, store=None, **kw) -> "OnnxPredictor":
        """An exported / quantized run's ``model.onnx`` (class names and eval spec from its tags)."""
        import json

        from engine import workspace
        from engine.store import open_store

        run = (store or open_store()).get_run(run_id)
        if not run.tags.get("format", "").startswith("onnx"):
            raise ValueError(f"Run {run_id} is not an ONNX variant (format "
                             f"{run.tags.get('format', 'torch')}); use Predictor for torch runs.")
        return cls(workspace.run_dir(run_id) / "model.onnx", json.loads(run.tags["class_names"]),
                   EvalSpec.from_dict(json.loads(run.tags["eval_spec"])), **kw)

    def preprocess(self, src) -> np.ndarray:
        """Raises engine.data.io.ImageReadError with a readable reason for bad files."""
        return preprocess_numpy(open_image(src), self.spec)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(batch, np.float32)})[0]

    def probabilities(self, batch) -> np.ndarray:
        z = self.logits(batch.numpy() if isinstance(batch, torch.Tensor) else batch).astype(np.float64)
        e = np.exp(z - z.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    def predict(self, src, *, name: str | None = None, k: int = 5) -> Prediction:
        logits = self.logits(self.preprocess(src)[None])[0]
        return _top_k(name or (str(src) if isinstance(src, (str, os.PathLike)) else "uploaded file"),
                      logits, self.class_names, k)


class PackageError(ValueError):
    """A deploy package that cannot be used (missing file, newer format, not a package)."""


class PackagePredictor(OnnxPredictor):
    """A deploy package (``taillab export``: one zip) read on its own: no workspace, no store."""

    def __init__(self, package: str | os.PathLike, *, threads: int | None = None) -> None:
        import tempfile

        from engine.compress.package import read_package  # checks format version and files

        info = read_package(package)
        with tempfile.TemporaryDirectory(prefix="taillab-pkg-") as tmp:
            info.extract_model(tmp)  # model.onnx (+ model.onnx.data) side by side
            pre = info.preprocessing
            spec = EvalSpec(int(pre["size"][0]), int(pre["channels"]), tuple(pre["mean"]),
                            tuple(pre["std"]))
            super().__init__(Path(tmp) / "model.onnx", info.labels, spec, threads=threads,
                             input_name=pre.get("input_name", "input"))
        self.manifest = info.manifest
        self.package = Path(package)


def predictor_for_run(run_id: str, store=None, **kw):
    """``Predictor`` for a torch run (its best.pt), ``OnnxPredictor`` for an exported / quantized
    one (its ``format`` tag says ONNX), ``PosthocPredictor`` for a post-hoc child (no checkpoint of
    its own: its parent's, corrected)."""
    from engine import workspace

    if workspace.best_checkpoint(run_id).is_file():
        return Predictor.for_run(run_id)
    from engine.store import open_store
    from engine.store.api import RunNotFound

    try:
        run = (store or open_store()).get_run(run_id)
    except RunNotFound:
        return Predictor.for_run(run_id)  # says: no checkpoint
    if run.kind == "posthoc":
        return PosthocPredictor.for_run(run_id, store)
    if run.tags.get("format", "torch").startswith("onnx"):
        return OnnxPredictor.for_run(run_id, store, **kw)
    return Predictor.for_run(run_id)
