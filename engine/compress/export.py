"""ONNX export of a finished run, checked against the torch model on the whole test split.

``export_run(store, run_id)`` writes ``model.onnx`` (and ``model.onnx.data``: torch's exporter
keeps the weights in that side file; the two always travel together) with a dynamic batch axis,
input ``input`` (float32 N x C x H x W, preprocessed as ``preprocessing.json`` of a package
says) and output ``logits`` (N x classes). It runs the ONNX model with ONNX Runtime's CPU
provider on every test image and compares it with the torch model:

* top-1 agreement must be at least ``PARITY_MIN_AGREEMENT`` (0.999), and
* the largest absolute logit difference at most ``PARITY_REL_TOL`` (1e-3) times the logit scale
  (the largest absolute torch logit, at least 1), e.g. 0.012 for logits up to 12.

An export failing either is refused with the numbers (no run is recorded). A good one is
recorded as a child run (kind "export", format "onnx-fp32") with its measured figures.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.compress import measure
from engine.store import Run, RunStatus

PARITY_MIN_AGREEMENT = 0.999
PARITY_REL_TOL = 1e-3
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ExportError(ValueError):
    """An export that cannot be made or that disagrees with the torch model."""


@dataclass
class Parity:
    agreement: float  # top-1 agreement, 0..1
    max_abs_diff: float  # largest |onnx - torch| logit
    scale: float  # max(1, largest |torch logit|)
    n: int  # test images compared

    @property
    def tolerance(self) -> float:
        return PARITY_REL_TOL * self.scale

    @property
    def ok(self) -> bool:
        return self.agreement >= PARITY_MIN_AGREEMENT and self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        return (f"top-1 agreement {self.agreement:.4%} on {self.n:,} test images (needs >= "
                f"{PARITY_MIN_AGREEMENT:.1%}), largest logit difference {self.max_abs_diff:.3g} "
                f"(allowed {self.tolerance:.3g} = {PARITY_REL_TOL:g} x logit scale {self.scale:.3g})")


def parity(torch_logits: np.ndarray, onnx_logits: np.ndarray) -> Parity:
    if torch_logits.shape != onnx_logits.shape:
        raise ExportError(f"The ONNX model gives logits of shape {onnx_logits.shape}, torch "
                          f"{torch_logits.shape}.")
    n = len(torch_logits)
    diff = float(np.abs(onnx_logits.astype(np.float64) - torch_logits).max()) if n else 0.0
    scale = max(1.0, float(np.abs(torch_logits).max())) if n else 1.0
    return Parity(measure.agreement(torch_logits, onnx_logits) if n else 1.0, diff, scale, n)


def require_finished(run: Run, what: str = "Export") -> None:
    if run.status != RunStatus.FINISHED:
        why = {RunStatus.FAILED: f"it failed ({run.error})" if run.error else "it failed",
               RunStatus.CANCELLED: "it was cancelled", RunStatus.RUNNING: "it is still running",
               RunStatus.QUEUED: "it has not started yet (queued)"}.get(run.status, f"it is {run.status}")
        raise ExportError(f"{what} needs a finished run; run {run.id} ({run.name}) cannot be used: "
                          f"{why}.")


def _operator(msg: str) -> str | None:
    for pat in (r"OpOverload\(op='([^']+)'", r"target=torch\.ops\.([\w.]+)",
                r"operator '([^']+)'", r"aten::(\w+)", r"(aten\.\w+)"):
        m = re.search(pat, msg)
        if m:
            op = m.group(1)
            return re.sub(r"\.default$", "", op)
    return None


def export_model(model: torch.nn.Module, size: int, channels: int, path: Path,
                 *, opset: int | None = None) -> list[Path]:
    """torch.onnx.export (the dynamo exporter) with a dynamic batch axis; returns the files
    written (model.onnx and model.onnx.data). An operator ONNX has no translation for is named."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    x = torch.zeros(2, channels, size, size)
    arg = next(iter(__import__("inspect").signature(model.forward).parameters))
    kw = {"opset_version": opset} if opset else {}
    try:
        # the exporter prints its progress on stdout: keep stdout clean for --json
        with contextlib.redirect_stdout(sys.stderr), torch.no_grad():
            torch.onnx.export(model, (x,), str(path), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME],
                              dynamic_shapes={arg: {0: torch.export.Dim("batch", min=1, max=65536)}},
                              dynamo=True, verbose=False, **kw)
    except Exception as e:  # the exporter's errors are many and deep: name the operator
        msg = str(e)
        op = _operator(msg)
        lines = [ln.strip() for ln in msg.splitlines() if ln.strip().startswith("<class")]
        detail = lines[0] if lines else msg.splitlines()[0] if msg else type(e).__name__
        raise ExportError((f"ONNX cannot export the operator {op} of this model"
                           if op else "ONNX export failed") + f" ({detail[:300]}).") from e
    return measure.onnx_files(path)


def verified_export(model, spec, data, torch_logits: np.ndarray, folder: Path) -> tuple[Path, Parity, np.ndarray]:
    """Export into ``folder``, run ONNX Runtime on the whole test split, compare with
    ``torch_logits``; raises ExportError with the numbers when they disagree."""
    path = Path(folder) / "model.onnx"
    export_model(model, spec.size, spec.channels, path)
    onnx_logits, _ = measure.onnx_logits(path, data, spec)
    p = parity(torch_logits, onnx_logits)
    if not p.ok:
        raise ExportError(f"The ONNX export disagrees with the torch model: {p.describe()}. "
                          "It was not kept.")
    return path, p, onnx_logits


def base_tags(ck: dict, parent: Run) -> dict[str, str]:
    """class_names, train_counts, eval_spec: what the Predict page and the tables read."""
    return {"class_names": parent.tags.get("class_names") or json.dumps(list(ck["class_names"])),
            "train_counts": parent.tags.get("train_counts") or json.dumps(list(ck["train_counts"])),
            "eval_spec": parent.tags.get("eval_spec") or json.dumps(ck["eval_spec"])}


def record_onnx_variant(store, parent: Run, *, kind: str, name: str, compress: dict, files: list[Path],
                        logits: np.ndarray, targets: np.ndarray, parent_logits: np.ndarray, data, ck: dict,
                        tags: dict[str, str], runs: int = measure.RUNS,
                        batch_runs: int = measure.BATCH_RUNS, threads: int | None = None) -> Run:
    """A finished child run (kind "export" / "quantize") holding ``files`` (moved into its run
    folder), its test outputs, metrics, per-class results and measured figures."""
    from engine import workspace
    from engine.transforms import EvalSpec

    spec = EvalSpec.from_dict(ck["eval_spec"])
    config = {"compress": compress, "parent_run_id": parent.id, "data": ck["config"]["data"],
              "model": ck["model"]}
    child = store.create_run(config, name=name, kind=kind, parent_run_id=parent.id,
                             dataset_version_id=parent.dataset_version_id)
    store.mark_running(child.id)
    try:
        folder = workspace.run_dir(child.id)
        moved = []
        for f in files:
            dest = folder / Path(f).name
            shutil.move(str(f), dest)
            moved.append(dest)
        model_path = folder / "model.onnx"
        timing = measure.time_onnx(model_path, spec.size, spec.channels, runs=runs,
                                   batch_runs=batch_runs, threads=threads)
        stats = measure.onnx_weight_stats(model_path)
        metrics = measure.test_metrics(logits, targets, data.groups(), parent_logits)
        measure.save_test_outputs(child.id, logits, targets)
        measure.log_test_results(store, child.id, metrics, logits, targets, data, ck["train_counts"],
                                 step=int(ck.get("step") or 0))
        parent_params = parent.tags.get("params") or parent.tags.get("num_params")
        store.set_tags(child.id, {
            **base_tags(ck, parent),
            "size_bytes": str(measure.file_size(moved)),
            "params": parent_params or str(stats["params"]),
            "macs": parent.tags.get("macs") or "",
            "sparsity": f"{stats['sparsity']:.6f}", **timing.tags(), **tags})
        if not parent.tags.get("macs"):
            from engine.infer import model_from_checkpoint
            store.set_tags(child.id, {"macs": str(measure.count_macs(model_from_checkpoint(ck),
                                                                      spec.size, spec.channels))})
        for f in moved:
            store.log_artifact(child.id, f.name, str(f), "onnx" if f.suffix == ".onnx" else "onnx-data")
    except BaseException as e:
        store.end_run(child.id, RunStatus.FAILED, f"{type(e).__name__}: {e}")
        raise
    store.end_run(child.id, RunStatus.FINISHED)
    return store.get_run(child.id)


def torch_parent(store, run_id: str, what: str = "Export") -> Run:
    """The finished torch run ``run_id`` (refused: unfinished runs, ONNX variants)."""
    run = store.get_run(run_id)
    require_finished(run, what)
    fmt = run.tags.get("format", "torch")
    if fmt.startswith("onnx"):
        raise ExportError(f"Run {run_id} is already an ONNX model ({fmt}); {what.lower()} works on "
                          f"the torch run it came from ({run.parent_run_id}).")
    return run


def existing_variant(store, run_id: str, kind: str, fmt: str) -> Run | None:
    """The newest finished child of ``run_id`` of this kind and format whose files still exist."""
    from engine import workspace

    kids = [r for r in store.list_runs(kind=kind) if r.parent_run_id == run_id
            and r.status == RunStatus.FINISHED and r.tags.get("format") == fmt
            and (workspace.run_dir(r.id) / "model.onnx").is_file()]
    return kids[0] if kids else None


def export_run(store, run_id: str, *, reuse: bool = True, runs: int = measure.RUNS,
               batch_runs: int = measure.BATCH_RUNS, threads: int | None = None) -> Run:
    """Export a finished run to ONNX (fp32), verified on its whole test split; a child run of
    kind "export". With ``reuse``, an earlier good export of the same run is returned instead."""
    parent = torch_parent(store, run_id, "Export")
    if reuse and (old := existing_variant(store, run_id, "export", "onnx-fp32")) is not None:
        return old
    model, ck, data = measure.load_torch(run_id)
    from engine.transforms import EvalSpec
    spec = EvalSpec.from_dict(ck["eval_spec"])
    torch_logits, targets = measure.test_outputs(store, run_id, data=data)
    if parent.tags.get("params") is None:
        store.set_tags(run_id, {"params": str(measure.count_params(model)),
                                "macs": str(measure.count_macs(model, spec.size, spec.channels))})
        parent = store.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="taillab-export-") as tmp:
        path, p, onnx_logits = verified_export(model, spec, data, torch_logits, Path(tmp))
        opset = _opset(path)
        return record_onnx_variant(
            store, parent, kind="export", name=f"{parent.name}-onnx",
            compress={"method": "onnx", "precision": "fp32", "opset": opset, "dynamic_batch": True,
                      "parity_min_agreement": PARITY_MIN_AGREEMENT, "parity_rel_tol": PARITY_REL_TOL},
            files=measure.onnx_files(path), logits=onnx_logits, targets=targets,
            parent_logits=torch_logits, data=data, ck=ck, runs=runs, batch_runs=batch_runs,
            threads=threads,
            tags={"format": "onnx-fp32", "method_label": f"ONNX export, fp32 (opset {opset}, dynamic batch)",
                  "parity_top1": f"{p.agreement:.6f}", "max_logit_diff": f"{p.max_abs_diff:.6g}",
                  "onnx_opset": str(opset)})


def _opset(path: Path) -> int:
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    return int(next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0))
