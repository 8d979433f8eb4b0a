"""Measuring runs and variants: ECE against a hand-computed value, MACs of the compact CNN by
hand, sparsity, a pruned checkpoint loading, the comparison rows and what a variant forgot."""
import shutil

import numpy as np
import pytest
import torch

CONTRACT_KEYS = {"run_id", "name", "method", "size_bytes", "params", "macs", "sparsity", "latency_ms_p50",
                 "latency_ms_p95", "throughput", "threads", "acc", "bal_acc", "many_acc", "medium_acc",
                 "few_acc", "ece", "agreement", "format", "status"}


def test_ece_against_a_hand_computed_value():
    from engine.compress.measure import ece
    probs = np.array([[0.90, 0.10],   # conf 0.90, correct  -> bin (0.867, 0.933]
                      [0.88, 0.12],   # conf 0.88, wrong    -> same bin
                      [0.30, 0.70],   # conf 0.70, correct  -> bin (0.667, 0.733]
                      [0.45, 0.55]])  # conf 0.55, correct  -> bin (0.533, 0.600]
    targets = np.array([0, 1, 1, 1])
    # 2/4 * |0.5 - 0.89| + 1/4 * |1 - 0.7| + 1/4 * |1 - 0.55| = 0.195 + 0.075 + 0.1125
    assert ece(probs, targets) == pytest.approx(0.3825)
    assert ece(np.eye(3), np.arange(3)) == pytest.approx(0.0)  # confident and right
    assert ece(np.eye(3), np.array([1, 2, 0])) == pytest.approx(1.0)  # confident and wrong


def test_macs_params_and_sparsity_of_the_compact_cnn():
    from engine.compress.measure import count_macs, count_params, sparsity
    from engine.models import create_model
    model = create_model("compact_cnn", num_classes=10, in_channels=1, input_size=28)
    # conv 1->32 at 28x28, conv 32->64 at 14x14, linear 64*7*7 -> 128, linear 128 -> 10
    hand = 28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 3136 * 128 + 128 * 10
    assert count_macs(model, 28, 1) == hand == 4_241_152
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    assert sparsity(model) == 0.0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.view(-1)[: m.weight.numel() // 2] = 0
    assert sparsity(model) == pytest.approx(0.5, abs=1e-3)


def test_a_structurally_pruned_checkpoint_loads_with_fewer_channels():
    import torch_pruning as tp
    from engine.infer import model_from_checkpoint
    from engine.compress.measure import count_macs, count_params
    from engine.models import create_model
    model = create_model("compact_cnn", num_classes=10, in_channels=1, input_size=28).eval()
    x = torch.randn(4, 1, 28, 28)
    pruner = tp.pruner.BasePruner(model, x[:1], importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=0.5, ignored_layers=[model.fc])
    pruner.step()
    ck = {"model": "compact_cnn", "num_classes": 10, "normed_head": False, "model_state": model.state_dict(),
          "eval_spec": {"size": 28, "channels": 1, "mean": [0.1], "std": [0.3]}}
    loaded = model_from_checkpoint(ck)
    assert count_params(loaded) == count_params(model) < 421_738
    assert count_macs(loaded, 28, 1) < 4_241_152
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


@pytest.fixture(scope="module")
def family(trained_run, tmp_path_factory):
    """(store, parent id, export child, int8 child) in a private copy of the trained workspace."""
    home, run_id = trained_run
    copy = tmp_path_factory.mktemp("measure-ws") / "ws"
    shutil.copytree(home, copy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAILLAB_HOME", str(copy))
        mp.delenv("TAILLAB_DB_URL", raising=False)
        from engine.compress import export_run, quantize_run
        from engine.store import open_store
        store = open_store()
        yield (store, run_id, export_run(store, run_id, runs=3, batch_runs=1),
               quantize_run(store, run_id, runs=3, batch_runs=1))


def test_compare_rows_has_the_parent_and_each_variant(family, capsys):
    from engine import cli
    from engine.compress.measure import compare_rows, outputs_path
    store, run_id, exp, q = family
    rows = compare_rows(store, q.id, runs=3, batch_runs=1)  # a variant's id finds the family too
    assert [r["run_id"] for r in rows] == [run_id, exp.id, q.id]
    for r in rows:
        assert CONTRACT_KEYS <= set(r)
        assert r["status"] == "finished" and r["threads"] >= 1 and r["size_bytes"] > 0
        assert r["params"] > 0 and r["macs"] == 4_241_152 and 0 <= r["ece"] <= 1
        assert r["latency_ms_p50"] is not None and r["throughput"] is not None
    assert [r["format"] for r in rows] == ["torch", "onnx-fp32", "onnx-int8"]
    assert rows[0]["method"] == "original" and rows[0]["agreement"] == 1.0
    assert rows[2]["size_bytes"] < rows[1]["size_bytes"] / 2
    assert rows[0]["bal_acc"] == pytest.approx(store.get_run(run_id).latest["test/bal_acc"])
    parent = store.get_run(run_id)  # the parent's figures are cached in its tags
    assert {"latency_ms_p50", "throughput", "threads", "size_bytes", "macs"} <= set(parent.tags)
    assert outputs_path(run_id).is_file()
    assert cli.main(["compare", run_id, "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in out] == [run_id, exp.id, q.id]
    assert cli.main(["compare", run_id]) == 0
    text = capsys.readouterr().out
    assert "original" in text and "int8 static" in text and "thread" in text


def test_damage_lists_classes_by_training_count_and_the_flipped_images(family):
    from engine.compress.measure import agreement, damage, test_outputs
    store, run_id, _, q = family
    d = damage(store, run_id, q.id)
    counts = [c["train_count"] for c in d["classes"]]
    assert counts == sorted(counts, reverse=True) and len(counts) == 10
    assert set(d["groups"]) == {"many", "medium", "few"}
    p, targets = test_outputs(store, run_id)
    c, _ = test_outputs(store, q.id)
    assert len(d["flipped"]) == int(round((1 - agreement(p, c)) * len(targets)))
    for f in d["flipped"]:
        assert f["parent_pred"] == p[f["index"]].argmax() and f["child_pred"] == c[f["index"]].argmax()
    changes = [x["change"] for x in d["classes"]]
    assert d["worst_class_drop_points"] == pytest.approx(max(0.0, -min(changes)) * 100)
    for x in d["classes"]:
        assert x["change"] == pytest.approx(x["child_recall"] - x["parent_recall"])
    many = [x for x in d["classes"] if x["group"] == "many"]
    assert d["groups"]["many"]["change"] == pytest.approx(np.mean([x["change"] for x in many]))
