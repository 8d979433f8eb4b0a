"""Quantization with ONNX Runtime of a real finished run: static int8 (QDQ) agrees with the torch
model, calibration is class-balanced from the training split, and the refusals say why."""
import json
import shutil

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ws(trained_run, tmp_path_factory):
    """(store, parent run id) in a private copy of the trained run's workspace."""
    home, run_id = trained_run
    copy = tmp_path_factory.mktemp("quant-ws") / "ws"
    shutil.copytree(home, copy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAILLAB_HOME", str(copy))
        mp.delenv("TAILLAB_DB_URL", raising=False)
        from engine.store import open_store
        yield open_store(), run_id


@pytest.fixture(scope="module")
def int8(ws):
    from engine.compress.quantize import quantize_run
    store, run_id = ws
    return quantize_run(store, run_id, calibration=256, runs=5, batch_runs=2)


def test_static_int8_agrees_with_the_torch_model(ws, int8):
    import onnx
    from engine import workspace
    from engine.compress import measure
    store, run_id = ws
    assert (int8.kind, int8.parent_run_id, int8.status) == ("quantize", run_id, "finished")
    assert int8.tags["format"] == "onnx-int8"
    torch_logits, targets = measure.test_outputs(store, run_id)
    q_logits, _ = measure.test_outputs(store, int8.id)
    assert q_logits.shape == torch_logits.shape == (1000, 10)
    assert measure.agreement(torch_logits, q_logits) >= 0.95
    assert int8.latest["test/agreement"] == pytest.approx(measure.agreement(torch_logits, q_logits))
    assert int8.latest["test/bal_acc"] >= store.get_run(run_id).latest["test/bal_acc"] - 0.03
    cfg = int8.config["compress"]
    assert cfg["method"] == "int8-static" and cfg["format"] == "QDQ" and cfg["calibration_split"] == "train"
    assert cfg["types"] in ("U8S8", "S8S8") and int8.tags["quant_types"].startswith(cfg["types"])
    per_class = cfg["calibration_per_class"]
    assert sum(per_class) == 256 and max(per_class) - min(per_class) <= 1  # class-balanced
    assert "VNNI" in int8.tags["cpu_note"] and cfg["reduce_range"] == ("without VNNI" in int8.tags["cpu_note"])
    model = onnx.load(str(workspace.run_dir(int8.id) / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    best_pt = workspace.best_checkpoint(run_id).stat().st_size
    assert int(int8.tags["size_bytes"]) < 0.35 * best_pt  # int8 weights: about a quarter of fp32
    assert "flag" not in int8.tags


def test_onnx_variants_predict_like_the_torch_run(ws, int8):
    from engine.data.builtin import load_builtin
    from engine.infer import OnnxPredictor, Predictor, predictor_for_run
    from PIL import Image
    import io
    store, run_id = ws
    torch_p = Predictor.for_run(run_id)
    onnx_p = predictor_for_run(int8.id, store)
    assert isinstance(onnx_p, OnnxPredictor) and isinstance(predictor_for_run(run_id, store), Predictor)
    data = load_builtin("mnist")
    same = 0
    for i in range(20):
        buf = io.BytesIO()
        Image.fromarray(data.test_images[i]).save(buf, format="PNG")
        a, b = torch_p.predict(buf.getvalue(), k=3), onnx_p.predict(buf.getvalue(), k=3)
        assert len(b.labels) == 3 and abs(sum(onnx_p.probabilities(onnx_p.preprocess(buf.getvalue())[None])[0]) - 1) < 1e-4
        same += a.labels[0] == b.labels[0]
    assert same >= 19


def test_calibration_is_class_balanced_and_refuses_one_class_or_empty_sets():
    from engine.compress.quantize import QuantizeError, calibration_indices
    labels = np.array([0] * 300 + [1] * 5 + [2] * 100)
    idx = calibration_indices(labels, 30, seed=1)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts.sum() == 30 and counts[1] == 5 and abs(int(counts[0]) - int(counts[2])) <= 1
    assert len(set(idx.tolist())) == 30
    assert (calibration_indices(labels, 30, seed=1) == idx).all()  # seeded
    assert len(calibration_indices(labels[:310], 10_000)) == 310  # all there is
    with pytest.raises(QuantizeError, match="one class only"):
        calibration_indices(np.zeros(50, dtype=np.int64), 32)
    with pytest.raises(QuantizeError, match="empty"):
        calibration_indices(np.zeros(0, dtype=np.int64), 32)


def test_fp16_is_refused_with_the_reason(ws, capsys):
    from engine import cli
    from engine.compress.quantize import QuantizeError, quantize_run
    store, run_id = ws
    with pytest.raises(QuantizeError, match="CPU provider has no fp16 kernels"):
        quantize_run(store, run_id, method="fp16")
    assert cli.main(["compress", run_id, "--quantize", "fp16"]) == 2
    assert "no fp16 kernels" in capsys.readouterr().err
    with pytest.raises(QuantizeError, match="Valid choices: minmax, entropy, percentile"):
        quantize_run(store, run_id, calibration_method="kl")


def test_vnni_is_read_from_the_cpu_flags():
    from engine.compress.quantize import cpu_vnni
    assert cpu_vnni("processor: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")[0]
    assert cpu_vnni("flags : fpu avx2 avx_vnni\n")[0]
    has, note = cpu_vnni("flags : fpu sse avx2\n")
    assert not has and "reduce_range on" in note


def test_compress_cli_dynamic_int8_prints_the_child_run_id(ws, capsys):
    from engine import cli
    store, run_id = ws
    assert cli.main(["compress", run_id, "--quantize", "int8-dynamic", "--runs", "3", "--json"]) == 0
    child = store.get_run(json.loads(capsys.readouterr().out)["run_id"])
    assert (child.kind, child.parent_run_id, child.tags["format"]) == ("quantize", run_id, "onnx-int8-dynamic")
    assert child.latest["test/agreement"] >= 0.95 and "linear" in child.tags["compress_note"]
    assert cli.main(["compress", run_id]) == 2  # no method given
    assert "exactly one of" in capsys.readouterr().err
