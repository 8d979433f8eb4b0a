"""Multi-task learning (engine.multitask): a CSV manifest with a second label column trains a
second head next to the main one.

The data are real MNIST digits (the built-in arrays) saved as PNGs in tmp_path: the digit is the
label, its parity ("even" / "odd") the second label. One module-scoped fit (2 epochs, a few
seconds) serves the training tests."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import ConfigError, DataConfig, TrainConfig
from engine.data.datasets import plan_data
from engine.data.manifest import load_manifest, manifest_from_scan, save_manifest
from engine.data.scan import scan_listing
from engine.data.sources import DataError, read_csv_manifest
from engine.data.split import stratified_split

DIGITS = (0, 1, 2, 3)
PER_SPLIT = {"train": 60, "val": 15, "test": 25}  # images per digit


def parity(d: int) -> str:
    return "even" if d % 2 == 0 else "odd"


def write_digits(root) -> list[tuple[str, int, str]]:
    """PNGs of real MNIST digits 0-3 under root/img, (path, digit, split) per image."""
    from engine.data.builtin import load_builtin

    data = load_builtin("mnist")
    rows = []
    (root / "img").mkdir(parents=True, exist_ok=True)
    for d in DIGITS:
        pool = np.flatnonzero(data.train_labels == d)
        at = 0
        for split, n in PER_SPLIT.items():
            for i in pool[at:at + n]:
                rel = f"img/{d}_{i}.png"
                Image.fromarray(data.train_images[i]).save(root / rel)
                rows.append((rel, d, split))
            at += n
    return rows


def write_csv(path, rows, header="path,label,split,parity", aux=parity) -> str:
    lines = [header] if header else []
    for rel, d, split in rows:
        cells = [rel, str(d), split] + ([aux(d)] if aux is not None else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    return root, write_digits(root)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """(FitResult, checkpoint folder) of 2 epochs of compact_cnn on the two-label CSV."""
    from engine.train import fit

    root, rows = digits
    home = tmp_path_factory.mktemp("mt-ws")
    old = os.environ.get("TAILLAB_HOME")
    os.environ["TAILLAB_HOME"] = str(home)
    try:
        csv = write_csv(root / "two.csv", rows)
        cfg = TrainConfig(data=DataConfig(source=csv), model="compact_cnn", loss="ce", epochs=2,
                          batch_size=32, seed=0)
        ck = home / "ck"
        yield fit(cfg, checkpoint_dir=ck), ck
    finally:
        if old is None:
            os.environ.pop("TAILLAB_HOME", None)
        else:
            os.environ["TAILLAB_HOME"] = old


# --- reading the second label ---------------------------------------------------------------------

def test_header_names_the_second_label(digits):
    root, rows = digits
    listing = read_csv_manifest(write_csv(root / "read.csv", rows))
    assert listing.aux_name == "parity"
    assert len(listing.aux) == len(rows) == 400
    assert listing.aux["img/" + os.path.basename(rows[0][0])] == "even"  # digit 0
    assert sorted(set(listing.aux.values())) == ["even", "odd"]
    # columns found by name after the path column
    text = "path,parity,class,subset\n" + "\n".join(f"{p},{parity(d)},{d},{s}" for p, d, s in rows) + "\n"
    (root / "order2.csv").write_text(text)
    listing = read_csv_manifest(root / "order2.csv")
    assert listing.aux_name == "parity" and listing.classes == ["0", "1", "2", "3"]
    assert {e.split for e in listing.entries} == {"train", "val", "test"}
    (root / "pathonly.csv").write_text("path\n" + "\n".join(p for p, _, _ in rows[:4]) + "\n")
    with pytest.raises(DataError, match="names no label column"):
        read_csv_manifest(root / "pathonly.csv")


def test_no_header_means_no_second_label_and_a_warning_for_extra_cells(digits):
    root, rows = digits
    listing = read_csv_manifest(write_csv(root / "plain.csv", rows, header=""))
    assert listing.aux_name == "" and listing.aux == {}
    assert any("add a header row naming the columns" in w for w in listing.warnings)
    listing = read_csv_manifest(write_csv(root / "three.csv", rows, header="path,label,split", aux=None))
    assert listing.aux_name == "" and not listing.warnings


def test_bad_second_label_columns_are_refused_clearly(digits):
    root, rows = digits
    with pytest.raises(DataError, match=r"'parity' column holds only one value \('same'\).*at least two"):
        read_csv_manifest(write_csv(root / "one.csv", rows, aux=lambda d: "same"))
    missing = [(p, d, s) for p, d, s in rows]
    path = write_csv(root / "gap.csv", missing, aux=lambda d: "" if d == 3 else parity(d))
    with pytest.raises(DataError) as e:
        read_csv_manifest(path)
    msg = str(e.value)
    assert "100 row(s) without a value in the 'parity' column" in msg
    first3 = next(i for i, r in enumerate(rows) if r[1] == 3) + 2  # 1-based, after the header
    assert f"row {first3} ({rows[first3 - 2][0]})" in msg
    path = write_csv(root / "two_extra.csv", rows, header="path,label,split,parity,colour",
                     aux=lambda d: f"{parity(d)},red")
    with pytest.raises(DataError, match=r"names 2 columns TailLab does not know \('parity', 'colour'\)"):
        read_csv_manifest(path)


def test_training_split_with_one_value_of_the_second_label_is_refused(digits, workspace):
    root, rows = digits
    # every training image "even", val / test mixed: the head would have nothing to learn
    lines = ["path,label,split,parity"] + [f"{p},{d},{s},{'even' if s == 'train' else parity(d)}"
                                           for p, d, s in rows]
    (root / "trainone.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"training split holds only 1 value of the second label 'parity' \('even'\)"):
        plan_data(DataConfig(source=str(root / "trainone.csv")))


def test_manifest_hash_follows_the_second_label(digits, workspace):
    root, rows = digits

    def manifest(csv):
        listing = read_csv_manifest(csv)
        return manifest_from_scan(scan_listing(listing, workers=1), listing=listing)

    plain = manifest(write_csv(root / "h0.csv", rows, header="path,label,split", aux=None))
    two = manifest(write_csv(root / "h1.csv", rows))
    flipped = manifest(write_csv(root / "h2.csv", rows, aux=lambda d: parity(d + (d == 3))))  # 3s "even"
    renamed = manifest(write_csv(root / "h3.csv", rows, header="path,label,split,evenness"))
    assert plain.aux_name == "" and plain.aux == ()
    assert len({plain.hash, two.hash, flipped.hash, renamed.hash}) == 4
    assert plain.rows == two.rows  # same files, labels and splits: only the second label differs
    assert two.aux_classes == ["even", "odd"]
    # saved and loaded: the same second label, the same hash; a split keeps each file's label
    loaded = load_manifest(save_manifest(two))
    assert (loaded.hash, loaded.aux_name, loaded.aux) == (two.hash, "parity", two.aux)
    unsplit = manifest_from_scan(scan_listing(read_csv_manifest(write_csv(root / "h4.csv", rows, header="path,label,parity",
                                                                          aux=parity)), workers=1),
                                 listing=read_csv_manifest(root / "h4.csv"))
    split = stratified_split(unsplit, val=0.2, test=0.2, seed=0).manifest
    assert split.aux_name == "parity" and dict(split.aux) == dict(unsplit.aux)
    # a manifest without a second label hashes as before the feature (v1 format on disk)
    assert load_manifest(save_manifest(plain)).to_dict()["format_version"] == 1


# --- training both heads ---------------------------------------------------------------------------

def test_both_heads_learn_and_report(trained):
    res, _ = trained
    data = res.state.data
    assert (data.aux_name, data.aux_class_names) == ("parity", ["even", "odd"])
    # the second labels follow the digits in every split
    for s in ("train", "val", "test"):
        sp = data.splits[s]
        assert (sp.aux_labels == sp.labels % 2).all()
    # main: 4 classes (chance 0.25); second: 2 values (chance 0.5)
    assert res.test["bal_acc"] > 0.6, res.test
    assert res.test["aux_acc"] > 0.75 and res.test["aux_bal_acc"] > 0.75, res.test
    for h in res.state.history:
        assert 0.0 <= h["val/aux_acc"] <= 1.0 and 0.0 <= h["val/aux_bal_acc"] <= 1.0
    # the figures are the second head's own, recomputed by hand from its logits
    ev = res.test_eval
    preds = ev.aux_logits.argmax(1)
    assert ev.aux_logits.shape == (100, 2)
    assert res.test["aux_acc"] == pytest.approx(float((preds == ev.aux_targets).mean()))
    recall = [float((preds[ev.aux_targets == k] == k).mean()) for k in (0, 1)]
    assert res.test["aux_bal_acc"] == pytest.approx(sum(recall) / 2)
    # per-value results on FitResult
    rep = res.aux
    assert rep.task == "parity" and rep.class_names == ["even", "odd"] and rep.support == [50, 50]
    assert rep.recall == pytest.approx(recall)
    assert rep.acc == res.test["aux_acc"]
    assert any("second head learns 'parity'" in n for n in res.state.notes)


def test_checkpoint_keeps_the_second_head_apart(trained, digits):
    from engine.infer import Predictor
    from engine.models import create_model

    res, ck = trained
    best = torch.load(ck / "best.pt", map_location="cpu", weights_only=True)
    assert best["aux_name"] == "parity" and best["aux_class_names"] == ["even", "odd"]
    assert set(best["aux_head_state"]) == {"fc.weight", "fc.bias"}
    assert best["aux_head_state"]["fc.weight"].shape[0] == 2
    # model_state is the plain single-task model's: it loads strictly, and predicts
    plain = create_model("compact_cnn", num_classes=4, in_channels=1, input_size=best["eval_spec"]["size"])
    plain.load_state_dict(best["model_state"])
    root, rows = digits
    p = Predictor(ck / "best.pt")
    tested = [(rel, d) for rel, d, s in rows if s == "test"][::10]
    right = sum(p.predict(root / rel).labels[0] == str(d) for rel, d in tested)
    assert right >= len(tested) // 2


def test_default_path_has_no_second_head(workspace, tmp_path):
    """A CSV without a second label trains exactly as before: no aux keys, no aux head."""
    from engine.train import fit

    root = tmp_path / "plain"
    rows = write_digits(root)[::4]
    csv = write_csv(root / "plain.csv", rows, header="path,label,split", aux=None)
    res = fit(TrainConfig(data=DataConfig(source=csv), model="compact_cnn", loss="ce", epochs=1, batch_size=32))
    assert res.aux is None and res.state.aux is None and res.test_eval.aux_logits is None
    assert not any(k.startswith("aux") for k in res.test)
    assert not any("aux" in k for k in res.state.history[0])


def test_aux_summary_by_hand():
    from engine.multitask import aux_report, aux_summary

    logits = np.array([[2, 0], [2, 0], [0, 1], [3, 1], [0, 5]], np.float32)  # predicts 0 0 1 0 1
    targets = np.array([0, 0, 0, 1, 1])
    s = aux_summary(logits, targets)
    assert s["aux_acc"] == pytest.approx(3 / 5)  # rows 0, 1, 4
    assert s["aux_bal_acc"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    rep = aux_report("t", ["a", "b", "c"], np.c_[logits, np.zeros(5, np.float32) - 9], targets)
    assert rep.support == [3, 2, 0] and rep.correct == [2, 1, 0]
    assert rep.recall[:2] == pytest.approx([2 / 3, 1 / 2]) and math.isnan(rep.recall[2])
    assert math.isnan(aux_summary(np.zeros((0, 2), np.float32), np.zeros(0, np.int64))["aux_acc"])


def test_aux_loss_weight_setting():
    from types import SimpleNamespace

    from engine.multitask import aux_loss_weight

    assert aux_loss_weight(SimpleNamespace()) == 0.5  # before TrainConfig has the field
    assert aux_loss_weight(SimpleNamespace(aux_loss_weight=2)) == 2.0
    for bad in (-1, float("nan"), "x", True):
        with pytest.raises(ConfigError, match="aux_loss_weight must be a number >= 0"):
            aux_loss_weight(SimpleNamespace(aux_loss_weight=bad))


def test_worker_stores_the_second_heads_figures(digits, store):
    """Through the worker, with no change there: val/aux_* each epoch, test/aux_* at the end."""
    from engine import worker
    from engine.config import to_dict

    root, rows = digits
    csv = write_csv(root / "worker.csv", rows[::2])
    cfg = TrainConfig(data=DataConfig(source=csv), model="compact_cnn", loss="ce", epochs=2, batch_size=32)
    run = store.create_run(to_dict(cfg), name="multitask")
    assert worker.run(run.id, store) == "finished", store.get_run(run.id).error
    latest = store.get_run(run.id).latest
    for key in ("val/aux_acc", "val/aux_bal_acc", "test/aux_acc", "test/aux_bal_acc"):
        assert 0.0 <= latest[key] <= 1.0, key
    assert latest["test/aux_acc"] > 0.6  # 2 values, chance 0.5
    assert [p.epoch for p in store.metric_history(run.id, ["val/aux_acc"])] == [1, 2]


def test_mixup_with_a_second_label_is_refused(digits, workspace):
    from engine.train import fit

    root, rows = digits
    csv = write_csv(root / "mix.csv", rows[::4])
    cfg = TrainConfig(data=DataConfig(source=csv), model="compact_cnn", loss="ce", epochs=1, batch_size=16,
                      augment={"mixup_alpha": 0.2})
    with pytest.raises(ConfigError, match="MixUp / CutMix mix the images but not the second label"):
        fit(cfg)


def test_resume_restores_the_second_head(digits, workspace):
    """3 epochs straight against 2 epochs cut after the second (last.pt holds epoch 1) and resumed:
    the same main and second-head metrics and weights, so the head and its optimizer state resume."""
    from engine.train import CancelFit, Callback, fit

    root, rows = digits
    csv = write_csv(root / "resume.csv", rows[::2])
    cfg = TrainConfig(data=DataConfig(source=csv), model="compact_cnn", loss="ce", epochs=3, batch_size=32,
                      deterministic=True, scheduler="cosine", seed=1)

    class Record(Callback):
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, state, metrics):
            self.epochs.append((state.epoch, dict(metrics),
                                {k: v.clone() for k, v in state.aux.state_dict().items()}))

    class CancelAfter2(Callback):
        def on_epoch_end(self, state, metrics):
            if state.epoch == 1:
                raise CancelFit()

    straight = Record()
    fit(cfg, [straight], checkpoint_dir=workspace / "a")
    with pytest.raises(CancelFit):
        fit(cfg, [CancelAfter2()], checkpoint_dir=workspace / "b")
    resumed = Record()
    fit(cfg, [resumed], checkpoint_dir=workspace / "b", resume=True)
    assert [e for e, *_ in resumed.epochs] == [1, 2]
    for (_, m_a, w_a), (_, m_b, w_b) in zip(straight.epochs[1:], resumed.epochs):
        assert "val/aux_acc" in m_b
        assert m_a == pytest.approx(m_b, rel=1e-5, abs=1e-6, nan_ok=True)
        for k in w_a:
            assert torch.allclose(w_a[k], w_b[k], atol=1e-5), k


# --- the dashboard: the second head's figures of a finished run -----------------------------------

UI_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from dashboard.multitask_ui import aux_results
from engine.store import open_store
store = open_store()
shown = aux_results(store, store.get_run({run_id!r}))
import streamlit as st
st.caption(f"shown={{shown}}")
"""


def ui(tmp_path, run_id):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    script = tmp_path / f"ui_{run_id[:8]}.py"
    script.write_text(UI_SCRIPT.format(root=str(Path(__file__).resolve().parent.parent), run_id=run_id))
    at = AppTest.from_file(str(script), default_timeout=30).run()
    assert not at.exception, at.exception
    return at


def test_aux_results_shows_the_second_head(store, tmp_path):
    from engine.multitask import AUX_SPLIT, AUX_TAG

    run = store.create_run({"model": "compact_cnn"}, name="mt")
    store.mark_running(run.id)
    store.log_metrics(run.id, {"val/aux_acc": 0.8, "val/aux_bal_acc": 0.75}, step=10, epoch=1)
    store.log_metrics(run.id, {"test/acc": 0.9, "test/aux_acc": 0.84, "test/aux_bal_acc": 0.8125}, step=10)
    store.set_tags(run.id, {AUX_TAG: "parity"})
    store.log_class_results(run.id, AUX_SPLIT, class_names=["even", "odd"], train_counts=[120, 30],
                            support=[50, 50], correct=[48, 33], many_threshold=100, few_threshold=20)
    store.end_run(run.id, "finished")
    at = ui(tmp_path, run.id)
    assert "Second head: parity" in at.markdown[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Test accuracy": "84.0%", "Test balanced accuracy": "81.2%",
                       "Validation balanced accuracy": "75.0%"}
    table = at.dataframe[0].value
    assert table["value"].tolist() == ["even", "odd"]
    assert table["recall"].tolist() == pytest.approx([96.0, 66.0])  # 48 / 50, 33 / 50
    assert any("Weakest value: **odd**, 66.0% of its 50 test images (30 training images)" in c.value
               for c in at.caption)

    plain = store.create_run({"model": "compact_cnn"}, name="single")
    store.log_metrics(plain.id, {"test/acc": 0.9}, step=1)
    store.end_run(plain.id, "finished")
    at = ui(tmp_path, plain.id)
    assert not at.metric and not at.dataframe and at.caption[-1].value == "shown=False"


def test_worker_records_the_task_and_per_value_results(trained, store):
    """engine.multitask.log_aux_results (what the worker calls at the end) on a real fit."""
    from engine.multitask import AUX_SPLIT, AUX_TAG, log_aux_results

    res, _ = trained
    run = store.create_run({"model": "compact_cnn"}, name="mt")
    log_aux_results(store, run.id, res.state, res)
    assert store.get_run(run.id).tags[AUX_TAG] == "parity"
    rows = store.class_results(run.id, AUX_SPLIT)
    assert [r.class_name for r in rows] == ["even", "odd"]
    assert [r.train_count for r in rows] == [120, 120] and [r.support for r in rows] == [50, 50]
    assert [r.correct for r in rows] == res.aux.correct


@pytest.mark.parametrize("name", ["compact_cnn", "resnet20", "resnet18", "mobilenet_v3_small",
                                  "efficientnet_b0", "convnext_tiny", "vit_b_16"])
def test_second_head_fits_every_kind_of_model(name):
    """The head finds the classifier's features on each family (fc, classifier[-1], heads.head),
    and the summed loss sends gradients into both heads and the shared stem."""
    from torch import nn

    from engine.models import MODELS, classifier, create_model
    from engine.multitask import AuxHead, MultiTaskLoss

    torch.manual_seed(0)
    info = MODELS[name]
    side = max(info.min_input, 32 if info.multiple_of > 1 else 28)
    model = create_model(name, num_classes=5, in_channels=3, input_size=side)
    aux = AuxHead(model, 3)
    x, y, a = torch.randn(2, 3, side, side), torch.tensor([0, 4]), torch.tensor([2, 1])
    logits = model(x)
    assert logits.shape == (2, 5) and aux.logits.shape == (2, 3)
    loss = MultiTaskLoss(nn.CrossEntropyLoss(), aux, 0.5)(logits, y, aux_targets=a)
    expected = nn.functional.cross_entropy(logits, y) + 0.5 * nn.functional.cross_entropy(aux.logits, a)
    assert float(loss) == pytest.approx(float(expected))
    loss.backward()
    assert aux.fc.weight.grad.abs().sum() > 0 and classifier(model).weight.grad.abs().sum() > 0
    stem = next(p for p in model.parameters() if p.dim() == 4)
    assert stem.grad.abs().sum() > 0
    aux.detach_hook()
    aux.logits = None
    model(x)
    assert aux.logits is None  # detached: the model runs single-task again
