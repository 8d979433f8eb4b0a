"""ONNX export of a real finished run (the session's ``trained_run``): parity with torch on the
whole test split, refusals, and the deploy package predicting like the run in a fresh process
without the workspace."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ws(trained_run, tmp_path_factory):
    """(store, parent run id, exported child run) in a private copy of the trained workspace."""
    home, run_id = trained_run
    copy = tmp_path_factory.mktemp("export-ws") / "ws"
    shutil.copytree(home, copy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAILLAB_HOME", str(copy))
        mp.delenv("TAILLAB_DB_URL", raising=False)
        from engine.compress.export import export_run
        from engine.store import open_store
        store = open_store()
        child = export_run(store, run_id, runs=5, batch_runs=2)
        yield store, run_id, child


def test_export_matches_torch_on_the_whole_test_split(ws):
    import onnxruntime as ort
    from engine import workspace
    from engine.compress import measure
    from engine.compress.export import export_run
    store, run_id, child = ws
    assert (child.kind, child.parent_run_id, child.status) == ("export", run_id, "finished")
    assert child.tags["format"] == "onnx-fp32"
    assert child.config["compress"]["method"] == "onnx" and child.config["parent_run_id"] == run_id
    folder = workspace.run_dir(child.id)
    files = measure.onnx_files(folder / "model.onnx")
    assert (folder / "model.onnx.data").is_file() and len(files) == 2  # weights beside the graph
    assert int(child.tags["size_bytes"]) == sum(f.stat().st_size for f in files)
    torch_logits, targets = measure.test_outputs(store, run_id)
    onnx_logits, onnx_targets = measure.test_outputs(store, child.id)
    assert onnx_logits.shape == torch_logits.shape == (1000, 10) and (targets == onnx_targets).all()
    assert float(child.tags["parity_top1"]) >= 0.999 and child.latest["test/agreement"] >= 0.999
    assert float(child.tags["max_logit_diff"]) == pytest.approx(np.abs(onnx_logits - torch_logits).max(), rel=1e-3)
    assert float(child.tags["max_logit_diff"]) < 1e-3 * max(1.0, np.abs(torch_logits).max())
    assert child.latest["test/bal_acc"] == pytest.approx(store.get_run(run_id).latest["test/bal_acc"], abs=2e-3)
    # input "input" with a dynamic batch axis, output "logits"
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == "input" and sess.get_outputs()[0].name == "logits"
    assert isinstance(sess.get_inputs()[0].shape[0], str)
    for n in (1, 7):
        assert sess.run(None, {"input": np.zeros((n, 1, 28, 28), np.float32)})[0].shape == (n, 10)
    # a second export of the same run reuses the good one
    assert export_run(store, run_id).id == child.id
    assert {a.name for a in store.artifacts(child.id)} == {"model.onnx", "model.onnx.data"}


def test_unfinished_runs_are_refused(ws):
    from engine.compress.export import ExportError, export_run
    from engine.store import RunStatus
    store, run_id, _ = ws
    parent = store.get_run(run_id)
    queued = store.create_run(parent.config, name="waiting")
    with pytest.raises(ExportError, match="queued"):
        export_run(store, queued.id)
    failed = store.create_run(parent.config, name="broken")
    store.end_run(failed.id, RunStatus.FAILED, "Loss became NaN at step 3")
    with pytest.raises(ExportError, match="failed.*NaN"):
        export_run(store, failed.id)
    cancelled = store.create_run(parent.config, name="stopped")
    store.end_run(cancelled.id, RunStatus.CANCELLED)
    with pytest.raises(ExportError, match="cancelled"):
        export_run(store, cancelled.id)
    running = store.create_run(parent.config, name="busy")
    store.mark_running(running.id)
    with pytest.raises(ExportError, match="still running"):
        export_run(store, running.id)


def test_an_operator_onnx_cannot_export_is_named(tmp_path):
    from engine.compress.export import ExportError, export_model

    class Svd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return torch.linalg.svdvals(self.conv(x).flatten(1).view(x.shape[0], 4, -1))

    with pytest.raises(ExportError, match="operator aten._linalg_svd"):
        export_model(Svd(), 8, 1, tmp_path / "m.onnx")


def test_an_export_that_disagrees_is_refused_with_the_numbers(ws, tmp_path):
    from engine.compress import measure
    from engine.compress.export import ExportError, verified_export
    from engine.transforms import EvalSpec
    store, run_id, _ = ws
    model, ck, data = measure.load_torch(run_id)
    torch_logits, _ = measure.test_outputs(store, run_id)
    wrong = torch_logits.copy()
    wrong[:, 0] += 0.05  # a small shift: the same top-1 mostly, but logits 0.05 apart
    with pytest.raises(ExportError, match=r"largest logit difference 0\.05.*allowed") as e:
        verified_export(model, EvalSpec.from_dict(ck["eval_spec"]), data, wrong, tmp_path)
    assert "agreement" in str(e.value)


def _digits(folder: Path, n: int = 20) -> list[str]:
    from engine.data.builtin import load_builtin
    data = load_builtin("mnist")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"digit{i}.png"
        Image.fromarray(data.test_images[i * 37]).save(p)
        paths.append(str(p))
    return paths


def test_package_predicts_like_the_run_in_a_fresh_process(ws, tmp_path, capsys):
    from engine import cli
    store, run_id, child = ws
    assert cli.main(["export", run_id, "--out", str(tmp_path / "out"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    pkg = Path(res["package"])
    assert pkg.is_file() and res["run_id"] == child.id and res["format"] == "onnx-fp32"
    assert res["parity_top1"] >= 0.999 and res["max_logit_diff"] < 1e-3
    with zipfile.ZipFile(pkg) as z:
        names = set(z.namelist())
        pre = json.loads(z.read("preprocessing.json"))
        labels = json.loads(z.read("labels.json"))
        card = z.read("model_card.md").decode()
        manifest = json.loads(z.read("manifest.json"))
    assert names == {"manifest.json", "model.onnx", "model.onnx.data", "labels.json",
                     "preprocessing.json", "model_card.md", "example.py"}
    assert pre["input_name"] == "input" and pre["size"] == [28, 28] and pre["channels"] == 1
    assert len(pre["mean"]) == len(pre["std"]) == 1 and "bilinear" in pre["resize"]
    assert labels == json.loads(store.get_run(run_id).tags["class_names"])
    assert manifest["format_version"] == 1 and "many" in card and "version" in card

    images = _digits(tmp_path / "img")
    assert cli.main(["predict", "--run", run_id, *images, "--json"]) == 0
    by_run = [r["top"][0]["label"] for r in json.loads(capsys.readouterr().out)]

    nowhere = tmp_path / "no-workspace"  # the fresh process must not need (or make) one
    env = {**os.environ, "TAILLAB_HOME": str(nowhere), "PYTHONPATH": str(ROOT)}
    env.pop("TAILLAB_DB_URL", None)
    out = subprocess.run([sys.executable, "-m", "engine.cli", "predict", "--package", str(pkg), *images,
                          "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    by_package = [r["top"][0]["label"] for r in json.loads(out.stdout)]
    assert by_package == by_run
    assert not nowhere.exists()

    # the package's own example: onnxruntime + numpy + Pillow, from another folder
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(pkg).extractall(unpacked)
    out = subprocess.run([sys.executable, str(unpacked / "example.py"), *images], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [line.split(": ", 1)[1].split()[0] for line in out.stdout.splitlines()] == by_run
    example = (unpacked / "example.py").read_text()
    assert "import torch" not in example and len(example.splitlines()) <= 25


def _rewrite(src: Path, dest: Path, *, drop: str | None = None, manifest_update: dict | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for item in zin.infolist():
            if item.filename == drop:
                continue
            data = zin.read(item.filename)
            if item.filename == "manifest.json" and manifest_update:
                data = json.dumps({**json.loads(data), **manifest_update}).encode()
            zout.writestr(item, data)
    return dest


def test_broken_packages_get_clear_messages(ws, tmp_path, capsys):
    from engine import cli
    from engine.compress.package import build_package
    from engine.infer import PackageError, PackagePredictor
    store, run_id, _ = ws
    pkg = Path(build_package(store, run_id, out_dir=tmp_path)["package"])
    img = _digits(tmp_path / "img", 1)
    with pytest.raises(PackageError, match="incomplete: labels.json is missing"):
        PackagePredictor(_rewrite(pkg, tmp_path / "a.zip", drop="labels.json"))
    with pytest.raises(PackageError, match="model.onnx.data is missing"):
        PackagePredictor(_rewrite(pkg, tmp_path / "b.zip", drop="model.onnx.data"))
    newer = _rewrite(pkg, tmp_path / "c.zip", manifest_update={"format_version": 2})
    assert cli.main(["predict", "--package", str(newer), *img]) == 2
    err = capsys.readouterr().err
    assert "format version 2 by a newer TailLab" in err and "up to 1" in err
    with pytest.raises(PackageError, match="not a zip"):
        PackagePredictor(img[0])
    assert cli.main(["predict", *img]) == 2  # neither --run nor --package
    assert "--package" in capsys.readouterr().err


def test_a_structurally_pruned_model_exports_with_matching_batchnorm(tmp_path):
    """Channels removed with their BatchNorm partners: the ONNX model must still match torch."""
    import onnxruntime as ort
    import torch_pruning as tp
    from engine.compress.export import export_model, parity
    from engine.models import create_model
    torch.manual_seed(0)
    model = create_model("compact_cnn", num_classes=10, in_channels=1, input_size=28).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(64, 1, 28, 28)
    tp.pruner.BasePruner(model, x[:1], importance=tp.importance.GroupMagnitudeImportance(p=2),
                         pruning_ratio=0.5, ignored_layers=[model.fc]).step()
    assert model.features[1].num_features == model.features[0].out_channels < 32
    files = export_model(model, 28, 1, tmp_path / "model.onnx")
    sess = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        p = parity(model(x).numpy(), sess.run(None, {"input": x.numpy()})[0])
    assert p.ok, p.describe()
