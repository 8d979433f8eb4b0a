"""Quantization of a finished run with ONNX Runtime, recorded as a child run (kind "quantize").

* ``int8-static`` (default): the fp32 ONNX export (verified against torch), then
  ``quant_pre_process`` (shape inference + graph optimisation), then ``quantize_static`` in QDQ
  format with activations and weights calibrated on images drawn class-balanced from the
  **training** split (``calibration`` images, 256 by default; MinMax, Entropy or Percentile;
  per-tensor or per-channel weights). U8S8 (unsigned int8 activations, signed int8 weights)
  first: on ONNX Runtime 1.32 with an x86 CPU, S8S8 left 12 of ResNet-18's 20 convolutions (15 of
  MobileNet V2's 52) in fp32 between dequantize and quantize nodes, while U8S8 turned every one
  into an int8 kernel (ResNet-18: 0.22x the fp32 latency against 0.70x with S8S8;
  ``benchmarks.compression``). When a candidate loses more than ``FALLBACK_DROP`` of balanced
  accuracy against the parent, the next is tried: per-channel weights (depthwise convolutions
  need them: MobileNet V2 per-tensor lost 20 points, per-channel none), then S8S8; the first
  within the bound is kept, else the most accurate (the run's ``quant_types`` tag says which
  and why). ``reduce_range`` (7-bit
  weights) is used on CPUs without VNNI (``avx512_vnni`` / ``avx_vnni`` in /proc/cpuinfo), where
  8-bit products can saturate; the ``cpu_note`` tag says which applied.
* ``int8-dynamic``: weights of the linear layers (MatMul / Gemm) to int8, activations quantized
  on the fly; convolutions stay fp32 (dynamic int8 convolutions are slower than fp32 on CPU).
  For linear-heavy models.
* ``fp16`` is refused: ONNX Runtime's CPU provider has no fp16 kernels, so an fp16 model there
  is cast back to fp32 around every operator and only gets slower.

A quantized model whose accuracy collapses (balanced accuracy down by more than
``COLLAPSE_DROP``) is still recorded, with a ``flag`` tag ("accuracy collapsed: ...").
"""
from __future__ import annotations

import contextlib
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from engine.compress import measure
from engine.compress.export import ExportError, record_onnx_variant, torch_parent, verified_export

METHODS = ("int8-static", "int8-dynamic", "fp16")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION = 256
FALLBACK_DROP = 0.01  # balanced accuracy (0..1) a candidate may lose before the next is tried
TYPES = {"U8S8": ("QUInt8", "QInt8"), "S8S8": ("QInt8", "QInt8"), "U8U8": ("QUInt8", "QUInt8")}  # act, weight
COLLAPSE_DROP = 0.10  # balanced accuracy lost that flags the variant
FP16_REFUSAL = ("fp16 is not offered: ONNX Runtime's CPU provider has no fp16 kernels, so an fp16 "
                "model on CPU is cast back to fp32 around every operator and runs slower than the "
                "fp32 one (fp16 pays on a GPU provider: CUDA, TensorRT, DirectML). For a smaller, "
                "faster CPU model use int8-static.")


class QuantizeError(ValueError):
    pass


def cpu_vnni(cpuinfo: str | None = None) -> tuple[bool, str]:
    """(has VNNI, a sentence saying so) from /proc/cpuinfo's flags."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False, "CPU flags unreadable (no /proc/cpuinfo): assumed without VNNI, reduce_range on"
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    found = sorted(flags & {"avx512_vnni", "avx_vnni"})
    if found:
        return True, f"CPU has VNNI ({', '.join(found)}): full 8-bit weights (reduce_range off)"
    return False, "CPU without VNNI (no avx512_vnni / avx_vnni): 7-bit weights (reduce_range on)"


def calibration_indices(labels: np.ndarray, n: int = DEFAULT_CALIBRATION, seed: int = 0) -> np.ndarray:
    """Up to ``n`` indices drawn class-balanced from ``labels`` (seeded): as many per class as the
    classes allow, the share of a class too small to fill it going to the others. Refuses an
    empty or one-class set (calibration would fit the ranges of one class only)."""
    labels = np.asarray(labels)
    if n < 1:
        raise QuantizeError(f"The calibration set needs at least 1 image (got {n}).")
    if len(labels) == 0:
        raise QuantizeError("The calibration set is empty: the training split has no images.")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise QuantizeError(f"The calibration set has one class only ({classes[0]}): int8 ranges "
                            "calibrated on one class do not fit the others. It needs images of at "
                            "least 2 classes.")
    rng = np.random.default_rng(seed)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = {c: 0 for c in classes}
    left = min(n, len(labels))
    while left > 0:  # water-filling: one more per class with images left, round-robin
        open_ = [c for c in classes if quota[c] < len(pools[c])]
        for c in open_[:left] if left < len(open_) else open_:
            quota[c] += 1
            left -= 1
    return np.sort(np.concatenate([pools[c][:quota[c]] for c in classes]))


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over preprocessed calibration batches."""

    def __init__(self, batches: list[np.ndarray], input_name: str = "input") -> None:
        self.batches, self.input_name, self.i = batches, input_name, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.input_name: self.batches[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def _calibration_batches(data, spec, n: int, seed: int, batch: int = 32) -> tuple[list[np.ndarray], np.ndarray]:
    idx = calibration_indices(data.splits["train"].labels, n, seed)
    xs = [x for x, _ in measure.batches(data, spec, "train", indices=idx, batch_size=batch)]
    return xs, data.splits["train"].labels[idx]


def _static(pre: Path, out: Path, batches: list[np.ndarray], *, method: str, per_channel: bool,
            reduce_range: bool, types: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_Reader, CalibrationDataReader):
        pass

    act, weight = (getattr(QuantType, t) for t in TYPES[types])
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    with contextlib.redirect_stdout(sys.stderr):  # the calibrators print progress: keep --json clean
        quantize_static(str(pre), str(out), Reader(batches), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, reduce_range=reduce_range, activation_type=act,
                        weight_type=weight, calibrate_method=calib,
                        extra_options={"CalibMovingAverage": False} if method == "minmax" else None)


def _check(method: str, calibration_method: str) -> None:
    if method == "fp16":
        raise QuantizeError(FP16_REFUSAL)
    if method not in METHODS:
        raise QuantizeError(f"Invalid quantization {method!r}. Valid choices: int8-static, int8-dynamic.")
    if calibration_method not in CALIBRATION_METHODS:
        raise QuantizeError(f"Invalid calibration method {calibration_method!r}. Valid choices: "
                            f"{', '.join(CALIBRATION_METHODS)}.")


def quantize_run(store, run_id: str, *, method: str = "int8-static", calibration: int = DEFAULT_CALIBRATION,
                 calibration_method: str = "minmax", per_channel: bool = False,
                 reduce_range: bool | None = None, seed: int = 0, runs: int = measure.RUNS,
                 batch_runs: int = measure.BATCH_RUNS, threads: int | None = None):
    """Quantize a finished torch run; returns the child run (kind "quantize", format
    "onnx-int8" or "onnx-int8-dynamic"). ``reduce_range=None``: on when the CPU lacks VNNI."""
    _check(method, calibration_method)
    parent = torch_parent(store, run_id, "Quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from engine.transforms import EvalSpec

    model, ck, data = measure.load_torch(run_id)
    spec = EvalSpec.from_dict(ck["eval_spec"])
    torch_logits, targets = measure.test_outputs(store, run_id, data=data)
    groups = data.groups()
    C = data.num_classes
    parent_bal = measure.summarize(torch_logits.argmax(1), targets, C, groups)["bal_acc"]
    if parent.tags.get("params") is None:
        store.set_tags(run_id, {"params": str(measure.count_params(model)),
                                "macs": str(measure.count_macs(model, spec.size, spec.channels))})
        parent = store.get_run(run_id)
    vnni, cpu_note = cpu_vnni()
    rr = (not vnni) if reduce_range is None else bool(reduce_range)
    if reduce_range is not None:
        cpu_note += f"; reduce_range {'on' if rr else 'off'} as asked"
    with tempfile.TemporaryDirectory(prefix="taillab-quant-") as tmp:
        tmp = Path(tmp)
        fp32, p, _ = verified_export(model, spec, data, torch_logits, tmp / "fp32")
        pre = tmp / "pre" / "model.onnx"
        pre.parent.mkdir()
        with contextlib.redirect_stdout(sys.stderr):
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
        out_dir = tmp / "out"
        out_dir.mkdir()
        tags: dict[str, str] = {"cpu_note": cpu_note}
        if method == "int8-static":
            batches, calib_labels = _calibration_batches(data, spec, calibration, seed)
            per_class = np.bincount(calib_labels, minlength=C)
            candidates = [("U8S8", per_channel)] + ([("U8S8", True)] if not per_channel else []) + [("S8S8", True)]
            tried = {}
            for types, pc in candidates:
                path = out_dir / f"{types}-{'pc' if pc else 'pt'}" / "model.onnx"
                path.parent.mkdir()
                _static(pre, path, batches, method=calibration_method, per_channel=pc,
                        reduce_range=rr, types=types)
                logits, _ = measure.onnx_logits(path, data, spec)
                bal = measure.summarize(logits.argmax(1), targets, C, groups)["bal_acc"]
                tried[(types, pc)] = (path, logits, bal)
                if parent_bal - bal <= FALLBACK_DROP:
                    break
            order = list(tried)
            chosen = next((k for k in order if parent_bal - tried[k][2] <= FALLBACK_DROP),
                          max(order, key=lambda k: tried[k][2]))
            path, logits, bal = tried[chosen]
            best, per_channel = chosen
            name = lambda k: f"{k[0]} {'per-channel' if k[1] else 'per-tensor'}"  # noqa: E731
            tags["quant_types"] = f"{name(chosen)} (unsigned int8 activations, signed int8 weights)" \
                if best == "U8S8" else name(chosen)
            if len(tried) > 1:
                tags["quant_types"] += "; tried " + ", ".join(
                    f"{name(k)}: {100 * (parent_bal - tried[k][2]):.1f} points lost" for k in order) + \
                    f" (bound {100 * FALLBACK_DROP:g})"
            compress = {"method": "int8-static", "format": "QDQ", "types": best,
                        "calibration": int(len(calib_labels)), "calibration_requested": int(calibration),
                        "calibration_method": calibration_method, "calibration_split": "train",
                        "calibration_per_class": per_class.tolist(), "per_channel": bool(per_channel),
                        "reduce_range": rr, "seed": int(seed)}
            label = (f"int8 static (QDQ {best}, {calibration_method} on {len(calib_labels)} balanced "
                     f"training images, {'per-channel' if per_channel else 'per-tensor'}"
                     f"{', reduce_range' if rr else ''})")
            fmt = "onnx-int8"
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            path = out_dir / "model.onnx"
            with contextlib.redirect_stdout(sys.stderr):
                quantize_dynamic(str(pre), str(path), op_types_to_quantize=["MatMul", "Gemm"],
                                 per_channel=per_channel, reduce_range=rr, weight_type=QuantType.QInt8)
            logits, _ = measure.onnx_logits(path, data, spec)
            bal = measure.summarize(logits.argmax(1), targets, C, groups)["bal_acc"]
            compress = {"method": "int8-dynamic", "ops": ["MatMul", "Gemm"], "per_channel": bool(per_channel),
                        "reduce_range": rr}
            label = "int8 dynamic (linear layers' weights; convolutions stay fp32)"
            tags["compress_note"] = ("dynamic int8 quantizes the linear layers only; it pays on "
                                     "linear-heavy models and is slower than static int8 for CNNs")
            fmt = "onnx-int8-dynamic"
        drop = parent_bal - bal
        if not math.isnan(drop) and drop > COLLAPSE_DROP:
            tags["flag"] = (f"accuracy collapsed: balanced accuracy {bal:.1%} against {parent_bal:.1%} for "
                            f"the parent ({100 * drop:.1f} points lost)")
        diff = float(np.abs(logits.astype(np.float64) - torch_logits).max()) if len(logits) else 0.0
        return record_onnx_variant(
            store, parent, kind="quantize", name=f"{parent.name}-{method}", compress=compress,
            files=measure.onnx_files(path), logits=logits, targets=targets, parent_logits=torch_logits,
            data=data, ck=ck, runs=runs, batch_runs=batch_runs, threads=threads,
            tags={"format": fmt, "method_label": label, **tags,
                  "parity_top1": f"{measure.agreement(torch_logits, logits):.6f}",
                  "max_logit_diff": f"{diff:.6g}", "fp32_parity_top1": f"{p.agreement:.6f}"})


__all__ = ["quantize_run", "calibration_indices", "cpu_vnni", "QuantizeError", "FP16_REFUSAL",
           "METHODS", "CALIBRATION_METHODS", "ExportError"]
