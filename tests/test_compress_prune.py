"""Structured and unstructured pruning (engine.compress.prune) on real models and the session's
real finished run (``trained_run``, an MNIST-LT compact CNN), each test in its own copy of its
workspace."""
import io
import json

import numpy as np
import pytest
import torch

from engine.config import ConfigError, TrainConfig
from engine.models import create_model, fit_to_state_dict, model_from_checkpoint
from engine.transforms import EvalSpec




def _spec(size, channels):
    return EvalSpec(size=size, channels=channels, mean=[0.5] * channels, std=[0.25] * channels)


def _reload(model, name, spec, tmp_path):
    """The model saved as a plain state dict, read back with weights_only=True into a fresh
    registry model resized to it."""
    path = tmp_path / f"{name}.pt"
    torch.save({"model_state": model.state_dict()}, path)
    state = torch.load(path, weights_only=True)["model_state"]
    fresh = create_model(name, num_classes=10, in_channels=spec.channels, input_size=spec.size)
    fit_to_state_dict(fresh, state)
    fresh.load_state_dict(state)
    return fresh.eval()


@pytest.mark.parametrize("name,size,channels", [("resnet20", 32, 3), ("mobilenet_v2", 32, 3)])
def test_structured_pruning_really_shrinks_and_reloads(name, size, channels, tmp_path):
    from engine.compress.prune import count_macs_params, structured_prune
    torch.manual_seed(0)
    spec = _spec(size, channels)
    model = create_model(name, num_classes=10, in_channels=channels, input_size=size)
    macs0, params0 = count_macs_params(model, spec)
    info = structured_prune(model, spec, amount=0.5)
    macs1, params1 = count_macs_params(model, spec)
    assert (info["macs_before"], info["macs_after"]) == (macs0, macs1)
    assert params1 < 0.8 * params0 and macs1 < 0.6 * macs0
    assert abs(info["removed"] - 0.5) <= 0.05, info
    # whole channels are gone: every BatchNorm matches its conv, depthwise convs stay depthwise
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert any(c.out_channels < 16 for c in convs) or sum(c.out_channels for c in convs) < 0.8 * info["params_before"]
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels
    x = torch.randn(3, channels, size, size)
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert out.shape == (3, 10) and torch.isfinite(out).all()
        assert torch.equal(_reload(model, name, spec, tmp_path)(x), out)
    if name == "resnet20":  # residual partners pruned together: the export graph is consistent
        import onnxruntime as ort
        f = io.BytesIO()
        torch.onnx.export(model, (x,), f, input_names=["input"], output_names=["logits"], dynamo=True)
        sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - out.numpy()).max() < 1e-4


def test_channel_target_and_round_to():
    from engine.compress.prune import _channels, structured_prune
    spec = _spec(28, 1)
    model = create_model("compact_cnn", num_classes=10, in_channels=1, input_size=28)
    before = _channels(model)
    info = structured_prune(model, spec, amount=0.5, target="channels", round_to=8)
    assert info["round_to"] == 8 and abs(_channels(model) / before - 0.5) <= 0.05
    head = model.fc
    assert head.out_features == 10  # the classifier layer keeps every class
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m is not model.features[0]:
            assert m.out_channels % 8 == 0 and m.in_channels % 8 == 0


@pytest.mark.parametrize("amount", [0, 1, 0.0, 1.0, -0.2, 1.5, "half"])
def test_pruning_nothing_or_everything_is_refused_with_the_range(amount):
    with pytest.raises(ConfigError, match=r"0 < amount < 1"):
        TrainConfig(init_from="abc", prune={"method": "structured", "amount": amount})


def test_bad_prune_settings():
    with pytest.raises(ConfigError, match="structured, unstructured"):
        TrainConfig(init_from="abc", prune={"method": "lottery", "amount": 0.5})
    with pytest.raises(ConfigError, match="macs, channels"):
        TrainConfig(init_from="abc", prune={"method": "structured", "amount": 0.5, "target": "flops"})
    with pytest.raises(ConfigError, match="Valid settings: method, amount, target, round_to"):
        TrainConfig(init_from="abc", prune={"amount": 0.5, "ratio": 2})
    with pytest.raises(ConfigError, match="init_from"):
        TrainConfig(prune={"method": "unstructured", "amount": 0.5})
    from engine.config import to_toml, train_config_from_toml
    cfg = TrainConfig(init_from="abc", prune={"method": "structured", "amount": 0.5, "target": "macs", "round_to": 8})
    assert train_config_from_toml(to_toml(cfg)) == cfg


def test_launch_refuses_0_and_100_percent_before_storing(ws):
    from engine.compress.prune import launch_prune
    store, run_id = ws
    n = len(store.list_runs())
    for amount in (0, 1):
        with pytest.raises(ConfigError, match=r"valid range: 0 < amount < 1"):
            launch_prune(store, run_id, method="structured", amount=amount, finetune_epochs=1)
    with pytest.raises(ConfigError, match="finetune_epochs"):
        launch_prune(store, run_id, method="structured", amount=0.5, finetune_epochs=0)
    assert len(store.list_runs()) == n


def ws_checkpoint(run_id):
    from engine import workspace
    return workspace.best_checkpoint(run_id)


def test_unstructured_pruning_keeps_its_sparsity_through_fine_tuning(ws, tmp_path):
    from engine.compress.prune import prunable_weights, prune_config, sparsity
    from engine.train import Callback, fit
    store, run_id = ws
    seen = []

    class Watch(Callback):
        def on_step_end(self, state):
            if state.step % 20 == 0:
                seen.append(sparsity(state.model, include_classifier=False))

    cfg = prune_config(store.get_run(run_id), method="unstructured", amount=0.7, finetune_epochs=1)
    result = fit(cfg, [Watch()], checkpoint_dir=tmp_path / "ck")
    assert seen and all(s == pytest.approx(0.7, abs=1e-3) for s in seen)
    assert sparsity(result.state.model, include_classifier=False) == pytest.approx(0.7, abs=1e-3)
    ck = torch.load(tmp_path / "ck" / "best.pt", weights_only=True)
    assert not any(k.endswith(("_orig", "_mask")) for k in ck["model_state"])  # made permanent
    model = model_from_checkpoint(ck)
    assert sparsity(model, include_classifier=False) == pytest.approx(0.7, abs=1e-3)
    head = model.fc.weight
    assert int((head == 0).sum()) == 0  # the classifier is kept whole
    assert len(prunable_weights(model)) == len(prunable_weights(model, include_classifier=False)) + 1
    assert result.test["bal_acc"] > 0.8, result.test


def test_pruned_child_run_fine_tunes_records_the_contract_and_reloads_to_identical_logits(ws):
    """launch_prune -> worker -> fit: the parent's weights pruned to half the MACs, fine-tuned;
    its best.pt (plain tensors, read with weights_only=True) rebuilds the same network: the
    logits fit computed on the test split with the model in memory come back; it exports."""
    from engine import jobs, workspace
    from engine.compress.prune import UNSTRUCTURED_NOTE, launch_prune
    from engine.infer import Predictor
    from engine.posthoc import load_run, outputs
    store, run_id = ws
    run = launch_prune(store, run_id, method="structured", amount=0.5, finetune_epochs=1)
    assert (run.kind, run.parent_run_id) == ("prune", run_id)
    run = jobs.wait(store, run.id, timeout=300)
    assert run.status == "finished", run.error
    assert run.config["init_from"] == run_id and run.config["prune"]["method"] == "structured"
    parent = store.get_run(run_id)
    t = run.tags
    assert t["format"] == "torch" and int(t["params"]) < 0.6 * int(parent.tags["num_params"])
    assert int(t["macs"]) > 0 and float(t["sparsity"]) == 0 and int(t["size_bytes"]) > 0
    assert t["method_label"].startswith("structured pruning, 50% of MACs") and "1 fine-tuning epoch" in t["method_label"]
    assert 0.8 <= run.latest["test/agreement"] <= 1 and 0 <= run.latest["test/ece"] <= 1
    with np.load(workspace.run_dir(run.id) / "test_outputs.npz") as z:
        assert z["logits"].shape == (1000, 10) and z["logits"].dtype == np.float32 and z["targets"].dtype == np.int64
        agree = float((z["logits"].argmax(1) == np.load(workspace.run_dir(run_id) / "test_outputs.npz")["logits"].argmax(1)).mean())
    assert agree == pytest.approx(run.latest["test/agreement"])
    assert len(store.class_results(run.id, "test")) == 10
    p = Predictor.for_run(run.id)  # the torch predictor rebuilds the pruned network
    assert sum(q.numel() for q in p.model.parameters()) == int(t["params"])
    assert json.loads(t["prune"])["round_to"] in (8, 4, 2, None)
    assert run.latest["test/bal_acc"] > 0.8  # the parent is ~0.9: one epoch of fine-tuning recovers
    ck = torch.load(workspace.best_checkpoint(run.id), weights_only=True)
    assert ck["config"]["prune"]["amount"] == 0.5
    reloaded = load_run(run.id)  # model_from_checkpoint: registry model resized to the weights
    out = outputs(reloaded, "test")
    with np.load(workspace.run_dir(run.id) / "test_outputs.npz") as z:
        assert np.array_equal(out.targets, z["targets"])
        assert np.abs(out.logits - z["logits"]).max() < 1e-5
    # BatchNorm statistics follow the pruned channels: the ONNX graph is consistent
    import onnxruntime as ort
    spec = reloaded.spec
    x = torch.randn(5, spec.channels, spec.size, spec.size)
    f = io.BytesIO()
    torch.onnx.export(reloaded.model, (x,), f, input_names=["input"], output_names=["logits"], dynamo=True)
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert np.abs(sess.run(None, {"input": x.numpy()})[0] - reloaded.model(x).numpy()).max() < 1e-4
    assert "neither smaller on disk nor faster" in UNSTRUCTURED_NOTE
