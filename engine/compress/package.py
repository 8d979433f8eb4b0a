"""The deploy package: one zip that runs a run's model anywhere ONNX Runtime does.

    model.onnx (+ model.onnx.data)   the network (fp32 export or int8 quantized), input "input"
    labels.json                      class names in output order
    preprocessing.json               input_name, size [height, width], channels, mean, std, resize
    model_card.md                    dataset version, metrics per head / medium / tail group,
                                     compression applied, parity with the torch model
    example.py                       ~20 lines: onnxruntime + numpy + Pillow only
    manifest.json                    format, format_version, files (with sha256), run ids

``build_package(store, run_id, int8=...)`` writes it (exporting or quantizing first, or reusing
an earlier good variant); ``read_package(path)`` checks it (format version, files present and
intact) for ``engine.infer.PackagePredictor`` / ``taillab predict --package``.
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engine.infer import PackageError

FORMAT = "taillab-deploy-package"
FORMAT_VERSION = 1
REQUIRED = ("manifest.json", "model.onnx", "labels.json", "preprocessing.json", "model_card.md", "example.py")

EXAMPLE = '''"""Classify images with this package: python example.py IMAGE...  (onnxruntime, numpy, Pillow)."""
import json, os, sys
import numpy as np, onnxruntime as ort
from PIL import Image, ImageOps

here = os.path.dirname(os.path.abspath(__file__))
pre, labels = (json.load(open(os.path.join(here, f))) for f in ("preprocessing.json", "labels.json"))
session = ort.InferenceSession(os.path.join(here, "model.onnx"), providers=["CPUExecutionProvider"])
mean, std = (np.array(pre[k], np.float32)[:, None, None] for k in ("mean", "std"))
def load(path):  # as TailLab reads images: upright, 16-bit scaled to 8-bit, transparency on black
    img = ImageOps.exif_transpose(Image.open(path))
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
        a = np.asarray(img, np.float32)
        img = Image.fromarray(np.clip(a / (257.0 if a.max() > 255 else 1.0) + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "P"):
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img.convert("RGBA"))
    return img.convert(pre["colour_mode"]).resize(pre["size"][::-1], Image.Resampling.BILINEAR)  # antialiased
for path in sys.argv[1:]:
    x = np.asarray(load(path), np.float32) / 255.0
    x = ((x[None] if x.ndim == 2 else x.transpose(2, 0, 1)) - mean) / std
    logits = session.run(None, {pre["input_name"]: x[None].astype(np.float32)})[0][0]
    p = np.exp(logits - logits.max()); p /= p.sum()
    print(path + ": " + ", ".join(f"{labels[i]} {p[i]:.3f}" for i in np.argsort(-p)[:5]))
'''


def preprocessing(spec) -> dict:
    """What ``engine.transforms.EvalTransform`` does, for someone without TailLab."""
    s = spec.size
    return {
        "input_name": "input", "output_name": "logits",
        "layout": "NCHW float32; the batch axis is dynamic",
        "size": [s, s], "channels": spec.channels,
        "colour_mode": "L" if spec.channels == 1 else "RGB",
        "mean": list(spec.mean), "std": list(spec.std),
        "resize": (f"antialiased bilinear resize of the whole image to {s} x {s} (Pillow "
                   "Image.resize(..., BILINEAR), which torchvision's antialiased resize of uint8 "
                   f"images reproduces), no crop and no aspect ratio kept; skipped when the image is "
                   f"already {s} x {s}"),
        "scale": "pixel values / 255, to 0..1",
        "normalise": "(x - mean) / std per channel",
        "colour": ("decoded upright (EXIF orientation applied), converted to "
                   + ("greyscale 'L'" if spec.channels == 1 else "RGB")
                   + "; TailLab composites transparent pixels on black and brings 16-bit images to 8 bits"),
        "output": "logits, one per class in labels.json order (softmax gives probabilities)",
    }


def _fmt_pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else f"{100 * v:.1f}%"


def model_card(store, variant, parent) -> str:
    from engine.compress.measure import _num

    t, lat = variant.tags, variant.latest
    m = {k: _num(lat.get(f"test/{k}")) for k in ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc",
                                                 "ece", "agreement")}
    pm = {k: _num(parent.latest.get(f"test/{k}")) for k in ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc")}
    rows = store.class_results(variant.id, "test")
    groups = {g: sum(1 for r in rows if r.group == g) for g in ("many", "medium", "few")}
    data = variant.config.get("data", {})
    lines = [
        f"# Model card: {parent.name} ({t.get('format')})", "",
        f"- Run: `{variant.id}` ({variant.kind}), from the trained run `{parent.id}` ({parent.name})",
        f"- Architecture: {variant.config.get('model') or parent.config.get('model')}, "
        f"{t.get('params', '?')} parameters, {t.get('macs', '?')} multiply-adds per image",
        f"- Dataset: {data.get('source')}, version `{parent.dataset_version_id or variant.dataset_version_id}`",
        f"- Classes: {len(rows)} ({groups['many']} head, {groups['medium']} medium, {groups['few']} tail: "
        f"more than {data.get('many_threshold', 100)} / fewer than {data.get('few_threshold', 20)} training images)",
        f"- Compression applied: {t.get('method_label', variant.kind)}",
        *([f"- Note: {t['compress_note']}"] if t.get("compress_note") else []),
        *([f"- **Flag: {t['flag']}**"] if t.get("flag") else []),
        f"- Agreement with the torch model on the test split: {_fmt_pct(m['agreement'])} top-1; "
        f"largest logit difference {t.get('max_logit_diff', '?')}",
        f"- Size {t.get('size_bytes', '?')} bytes; CPU latency (ONNX Runtime, batch 1, {t.get('threads', '?')} "
        f"threads) p50 {t.get('latency_ms_p50', '?')} ms, p95 {t.get('latency_ms_p95', '?')} ms; "
        f"batch 32: {t.get('throughput', '?')} images/s (on the machine that exported it)",
        "", "## Test metrics", "",
        "| | overall | balanced | head (many) | medium | tail (few) |", "| --- | --- | --- | --- | --- | --- |",
        "| this model | " + " | ".join(_fmt_pct(m[k]) for k in ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc")) + " |",
        "| torch original | " + " | ".join(_fmt_pct(pm[k]) for k in ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc")) + " |",
        "", f"Expected calibration error (15 bins): {m['ece']:.4f}" if m["ece"] is not None else "",
        "", "## Per class (test recall)", "", "| class | group | training images | recall |", "| --- | --- | --- | --- |",
        *[f"| {r.class_name} | {r.group} | {r.train_count} | {_fmt_pct(r.accuracy)} |"
          for r in sorted(rows, key=lambda r: (-r.train_count, r.class_name))],
        "", "## Use", "", "`python example.py IMAGE...` (needs onnxruntime, numpy and Pillow), or "
        "`taillab predict --package THIS.zip IMAGE...`. Preprocessing: preprocessing.json.", ""]
    return "\n".join(lines)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _variant(store, run_id: str, int8: bool, **quant_kw):
    """The ONNX run to package: ``run_id`` itself when it is one, else its fp32 export or int8
    quantization (an earlier good one reused)."""
    from engine.compress import export, quantize

    run = store.get_run(run_id)
    export.require_finished(run, "Export")
    fmt = run.tags.get("format", "torch")
    if fmt.startswith("onnx"):
        if int8 and not fmt.startswith("onnx-int8"):
            run_id = run.parent_run_id  # quantize the torch run this export came from
        else:
            return run, store.get_run(run.parent_run_id)
    parent = store.get_run(run_id)
    if int8:
        v = export.existing_variant(store, run_id, "quantize", "onnx-int8") if not quant_kw else None
        v = v or quantize.quantize_run(store, run_id, **quant_kw)
    else:
        v = export.export_run(store, run_id)
    return v, parent


def build_package(store, run_id: str, *, int8: bool = False, out_dir: str | Path | None = None,
                  **quant_kw) -> dict:
    """Write the zip; returns {"package", "run_id" (the ONNX variant), "parent_run_id", "format",
    "parity_top1", "max_logit_diff", "acc", "bal_acc", "size_bytes", "flag"}."""
    from engine import workspace

    variant, parent = _variant(store, run_id, int8, **quant_kw)
    folder = workspace.run_dir(variant.id)
    model = folder / "model.onnx"
    if not model.is_file():
        raise PackageError(f"Run {variant.id} has no model.onnx at {model}.")
    from engine.compress.measure import onnx_files
    from engine.transforms import EvalSpec

    spec = EvalSpec.from_dict(json.loads(variant.tags["eval_spec"]))
    fmt = variant.tags.get("format")
    out_dir = Path(out_dir) if out_dir else folder
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", parent.name).strip("-") or parent.id[:8]
    path = out_dir / f"{safe}-{fmt}.zip"
    texts = {"labels.json": json.dumps(json.loads(variant.tags["class_names"]), indent=1),
             "preprocessing.json": json.dumps(preprocessing(spec), indent=1),
             "model_card.md": model_card(store, variant, parent), "example.py": EXAMPLE}
    files = {f.name: f for f in onnx_files(model)}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_format": fmt,
                "run_id": variant.id, "parent_run_id": parent.id,
                "dataset_version": parent.dataset_version_id,
                "files": {**{n: {"sha256": _sha256(p), "bytes": p.stat().st_size} for n, p in files.items()},
                          **{n: {"sha256": hashlib.sha256(t.encode()).hexdigest(), "bytes": len(t.encode())}
                             for n, t in texts.items()}}}
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        for name, p in files.items():
            z.write(p, name)
        for name, text in texts.items():
            z.writestr(name, text)
    tmp.replace(path)
    from engine.compress.measure import _num
    return {"package": str(path.resolve()), "run_id": variant.id, "parent_run_id": parent.id, "format": fmt,
            "parity_top1": _num(variant.tags.get("parity_top1")),
            "max_logit_diff": _num(variant.tags.get("max_logit_diff")),
            "acc": _num(variant.latest.get("test/acc")), "bal_acc": _num(variant.latest.get("test/bal_acc")),
            "size_bytes": _num(variant.tags.get("size_bytes"), int), "flag": variant.tags.get("flag")}


@dataclass
class PackageInfo:
    path: Path
    manifest: dict
    labels: list[str]
    preprocessing: dict

    def extract_model(self, folder: str | Path) -> Path:
        """model.onnx and its data file into ``folder`` (side by side, as ONNX Runtime needs)."""
        with zipfile.ZipFile(self.path) as z:
            for name in self.manifest["files"]:
                if name.startswith("model.onnx"):
                    z.extract(name, folder)
        return Path(folder) / "model.onnx"


def read_package(path: str | Path) -> PackageInfo:
    """Open and check a package: a zip, written in a format version this TailLab reads, with every
    file its manifest lists, each intact (sha256)."""
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"No package at {path}.")
    if not zipfile.is_zipfile(path):
        raise PackageError(f"{path} is not a zip file: a TailLab package is the zip `taillab export` writes.")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if "manifest.json" not in names:
            raise PackageError(f"{path.name} has no manifest.json: it is not a TailLab package, or it is "
                               f"incomplete (a package holds {', '.join(REQUIRED)}).")
        try:
            manifest = json.loads(z.read("manifest.json"))
        except ValueError as e:
            raise PackageError(f"{path.name}: manifest.json is not valid JSON ({e}).") from None
        if manifest.get("format") != FORMAT:
            raise PackageError(f"{path.name} is not a TailLab deploy package (format "
                               f"{manifest.get('format')!r}, expected {FORMAT!r}).")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise PackageError(f"{path.name} was written in package format version {version} by a newer "
                               f"TailLab; this TailLab reads versions up to {FORMAT_VERSION}. Upgrade "
                               "TailLab to use it.")
        listed = set(manifest.get("files", {})) | set(REQUIRED) - {"manifest.json"}
        missing = sorted(n for n in listed if n not in names)
        if missing:
            raise PackageError(f"{path.name} is incomplete: {', '.join(missing)} "
                               f"{'is' if len(missing) == 1 else 'are'} missing (a package holds "
                               f"{', '.join(REQUIRED)}{' and model.onnx.data' if 'model.onnx.data' in listed else ''}). "
                               "Export it again with taillab export.")
        for name, meta in manifest.get("files", {}).items():
            if hashlib.sha256(z.read(name)).hexdigest() != meta.get("sha256"):
                raise PackageError(f"{path.name}: {name} does not match its checksum in manifest.json "
                                   "(the file was changed or damaged).")
        labels = json.loads(z.read("labels.json"))
        pre = json.loads(z.read("preprocessing.json"))
    for key in ("size", "channels", "mean", "std"):
        if key not in pre:
            raise PackageError(f"{path.name}: preprocessing.json has no {key!r}.")
    return PackageInfo(path, manifest, list(labels), pre)
