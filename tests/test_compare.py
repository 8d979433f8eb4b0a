"""engine.compare and `taillab runs compare` against hand-computed values (real SQLite store)."""
from __future__ import annotations

import json
import math

import pytest

from engine.compare import (CompareError, band, best_runs, compare, ema, mean_std, numeric_settings,
                            settings_diff)


def make_run(store, name, *, metrics=None, classes=None, curve=None, status="finished", **config):
    """A run written straight into the store: config, final test metrics, per-class test results
    (name -> (train count, support, correct)) and a val/bal_acc curve (one value per epoch)."""
    cfg = {"model": "compact_cnn", "loss": "ce", "lr": 0.1, "seed": 0, "threads": 2,
           "data": {"source": "builtin:mnist", "seed": 0, "imbalance_ratio": 10.0}}
    data = config.pop("data", {})
    cfg.update(config)
    cfg["data"] = {**cfg["data"], **data}
    run = store.create_run(dict(cfg, name=name), name=name)
    for epoch, v in enumerate(curve or [], start=1):
        store.log_metrics(run.id, {"val/bal_acc": v}, step=epoch * 10, epoch=epoch)
    if metrics:
        store.log_metrics(run.id, metrics, step=999, epoch=len(curve or []) or 1)
    if classes:
        names = list(classes)
        store.log_class_results(run.id, "test", class_names=names,
                                train_counts=[classes[n][0] for n in names],
                                support=[classes[n][1] for n in names],
                                correct=[classes[n][2] for n in names],
                                many_threshold=60, few_threshold=20)
    store.end_run(run.id, status)
    return store.get_run(run.id)


def three_runs(store):
    """A and B differ only in seed (one group); C uses another loss and lacks class 'dog' but
    has 'bird'; C's tail accuracy is NaN and it logged no macro-F1."""
    a = make_run(store, "a", seed=0, curve=[0.5, 0.6, 0.7],
                 metrics={"test/acc": 0.80, "test/bal_acc": 0.60, "test/many_acc": 0.9,
                          "test/medium_acc": 0.5, "test/few_acc": 0.2, "test/macro_f1": 0.55,
                          "test/ece": 0.05},
                 classes={"cat": (100, 10, 8), "dog": (50, 10, 5)})
    b = make_run(store, "b", seed=1, curve=[0.7, 0.8, 0.9],
                 metrics={"test/acc": 0.90, "test/bal_acc": 0.70, "test/many_acc": 0.9,
                          "test/medium_acc": 0.6, "test/few_acc": 0.4, "test/macro_f1": 0.65,
                          "test/ece": 0.03},
                 classes={"cat": (100, 10, 9), "dog": (50, 10, 6)})
    c = make_run(store, "c", loss="focal", curve=[0.4, 0.5],
                 metrics={"test/acc": 0.70, "test/bal_acc": 0.75, "test/many_acc": 0.8,
                          "test/medium_acc": 0.7, "test/few_acc": float("nan"), "test/ece": 0.10},
                 classes={"cat": (100, 10, 7), "bird": (5, 4, 1)})
    return a, b, c


def test_metrics_best_and_seed_group(store):
    a, b, c = three_runs(store)
    cmp = compare(store, [a.id, b.id, c.id])
    assert cmp.ids == [a.id, b.id, c.id] and cmp.baseline == a.id
    assert cmp.metrics[c.id]["tail"] is None and cmp.metrics[c.id]["macro-F1"] is None  # NaN, missing
    assert cmp.metrics[b.id]["overall"] == pytest.approx(0.90)
    assert cmp.best["overall"] == [b.id] and cmp.best["balanced"] == [c.id]
    assert cmp.best["ECE"] == [b.id]  # lower is better
    assert cmp.best["head"] == [a.id, b.id]  # a tie marks both
    assert cmp.best["tail"] == [b.id] and cmp.best["macro-F1"] == [b.id]
    # a and b differ only in seed: one group of two; c alone
    assert [g.run_ids for g in cmp.groups] == [(a.id, b.id), (c.id,)]
    assert cmp.groups[0].seeds == ("0", "1") and cmp.groups[0].label == "a × 2 seeds"
    overall = cmp.group_metrics[0]["overall"]
    assert overall.mean == pytest.approx(0.85) and overall.n == 2
    assert overall.std == pytest.approx(math.sqrt(2 * 0.05 ** 2 / 1))  # sample std: 0.0707
    assert 1 not in cmp.group_metrics  # no "mean ± std" for a group of one
    assert cmp.warnings == [] and not cmp.mixed_datasets


def test_per_class_matched_by_name_with_gaps_and_deltas(store):
    a, b, c = three_runs(store)
    cmp = compare(store, [a.id, b.id, c.id])
    assert [r.name for r in cmp.classes] == ["cat", "dog", "bird"]  # training count, largest first
    cat, dog, bird = cmp.classes
    assert cat.recall == {a.id: 0.8, b.id: 0.9, c.id: 0.7}
    assert cat.delta[a.id] == 0 and cat.delta[b.id] == pytest.approx(10.0)
    assert cat.delta[c.id] == pytest.approx(-10.0)
    assert dog.recall[c.id] is None and dog.delta[c.id] is None and dog.delta[b.id] == pytest.approx(10.0)
    assert bird.recall == {a.id: None, b.id: None, c.id: 0.25} and bird.train_count == 5
    assert bird.group == "few" and cat.group == "many"
    assert all(v is None for v in bird.delta.values())  # the baseline has no bird
    notes = " ".join(cmp.class_notes)
    assert "matched by name" in notes and "a · " in notes and "no class bird" in notes
    assert "c · " + c.id[:6] + " has no class dog" in notes
    # another baseline: deltas against c
    cmp = compare(store, [a.id, b.id, c.id], baseline=c.id[:8])
    assert cmp.baseline == c.id
    assert cmp.classes[0].delta[b.id] == pytest.approx(20.0) and cmp.classes[2].delta[c.id] == 0


def test_settings_diff_and_numeric_settings(store):
    a, b, c = three_runs(store)
    cmp = compare(store, [a.id, b.id, c.id])
    assert cmp.settings == [("loss", ["ce", "ce", "focal"]), ("seed", ["0", "1", "0"])]  # no name, no threads
    assert numeric_settings(cmp) == {}  # the seed is a repeat, not a setting to plot
    e = make_run(store, "e", lr=0.05, batch_size=64, loss="focal")
    cmp = compare(store, [a.id, c.id, e.id])
    assert numeric_settings(cmp) == {"lr": [0.1, 0.1, 0.05]}  # batch_size: only e has one
    assert settings_diff([{"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": True}]) == [
        ("b.c", ["2", "3"]), ("d", [None, "true"])]


def test_bad_selections(store):
    a, b, c = three_runs(store)
    with pytest.raises(CompareError, match="at least 2 runs; 1 was found"):
        compare(store, [a.id])
    with pytest.raises(CompareError, match="at most 20 runs; 21 were given"):
        compare(store, [f"{i:032x}" for i in range(21)])
    with pytest.raises(CompareError, match="No run with id 'deadbeef00'"):
        compare(store, [a.id, "deadbeef00"])
    with pytest.raises(CompareError, match="baseline 'nope' is not one of"):
        compare(store, [a.id, b.id], baseline="nope")
    # the page: a deleted run is a note, the rest still compares; duplicates count once
    cmp = compare(store, [a.id, b.id, b.id[:8], "deadbeef00"], allow_missing=True, min_prefix=8)
    assert cmp.ids == [a.id, b.id] and cmp.missing == ["deadbeef00"]
    with pytest.raises(CompareError, match=r"1 was found \(1 no longer exists\)"):
        compare(store, [a.id, "deadbeef00"], allow_missing=True)
    # a prefix shorter than the minimum is not guessed
    with pytest.raises(CompareError, match="No run with id"):
        compare(store, [a.id, b.id[:5]])


def test_different_datasets_warn(store):
    a, _, _ = three_runs(store)
    d = make_run(store, "d", data={"source": "builtin:animal_mnist"},
                 metrics={"test/acc": 0.5}, classes={"ant": (80, 10, 5)})
    cmp = compare(store, [a.id, d.id])
    assert any("different datasets" in w for w in cmp.warnings)
    assert [r.name for r in cmp.classes] == ["cat", "ant", "dog"]  # 100, 80, 50
    assert cmp.groups[0].run_ids == (a.id,)  # another dataset is never a seed repeat


def test_pure_pieces():
    s = mean_std([0.5, None, float("nan"), 0.7])
    assert s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1414213562) and s.n == 2
    assert mean_std([0.3]).std is None and mean_std([]).mean is None
    assert best_runs({"x": None, "y": 0.2, "z": 0.1}, lower_is_better=True) == ["z"]
    assert best_runs({"x": None}) == []
    sm = ema([1.0, None, 3.0], 0.5)
    assert sm[0] == pytest.approx(1.0) and sm[1] is None and sm[2] == pytest.approx(1.75 / 0.75)
    assert ema([1.0, float("inf")], 0) == [1.0, None]
    with pytest.raises(CompareError, match="Smoothing"):
        ema([1.0], 1.0)
    bd = band({"a": ([1, 2], [0.5, 0.7]), "b": ([1, 2, 3], [0.7, None, 0.9])})
    assert bd.x == [1, 2, 3] and bd.mean == pytest.approx([0.6, 0.7, 0.9]) and bd.n == [2, 1, 1]
    assert bd.std[0] == pytest.approx(0.1414213562) and bd.std[1:] == [None, None]


def test_curves_from_store(store):
    from engine.compare import curves
    a, b, c = three_runs(store)
    got = curves(store, [a.id, c.id, "gone"], "val/bal_acc", x="epoch")
    assert set(got) == {a.id, c.id}
    assert got[a.id] == ([1.0, 2.0, 3.0], [0.5, 0.6, 0.7])
    assert curves(store, [a.id], "val/bal_acc", x="step")[a.id][0] == [10.0, 20.0, 30.0]
    store.log_metrics(b.id, {"val/bal_acc": float("nan")}, step=40, epoch=4)  # a gap, not a crash
    got = curves(store, [a.id, b.id], "val/bal_acc", x="epoch")
    assert got[b.id] == ([1.0, 2.0, 3.0, 4.0], [0.7, 0.8, 0.9, None])
    bd = band(got)
    assert bd.x == [1.0, 2.0, 3.0, 4.0] and bd.mean[:3] == pytest.approx([0.6, 0.7, 0.8])
    assert bd.mean[3] is None and bd.n == [2, 2, 2, 0]
    with pytest.raises(CompareError, match="Invalid x axis 'wall'"):
        curves(store, [a.id], "val/bal_acc", x="wall")


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_compare_text_and_json(workspace, store):
    from tests.test_cli import taillab
    a, b, c = three_runs(store)
    out = taillab("runs", "compare", a.id[:6], b.id, c.id[:10], home=workspace)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    row_b = next(line for line in lines if line.startswith("b · "))
    assert "90.0*" in row_b and "0.030*" in row_b  # best overall, best (lowest) ECE
    row_c = next(line for line in lines if line.startswith("c · "))
    assert "75.0*" in row_c and row_c.split()[-3:-1] == ["-", "-"]  # NaN tail, no macro-F1
    assert any(line.startswith("a × 2 seeds") and "85.0±7.1" in line for line in lines)
    assert "Settings that differ:" in out.stdout
    assert any(line.startswith("loss") and "focal" in line for line in lines)
    assert "has no class dog" in out.stdout

    out = taillab("runs", "compare", a.id, b.id, c.id, "--json", "--baseline", c.id, home=workspace)
    data = json.loads(out.stdout)
    assert data["baseline"] == c.id and data["best"]["ECE"] == [b.id]
    assert data["metrics"][c.id]["tail"] is None
    assert data["settings_diff"]["loss"] == {a.id: "ce", b.id: "ce", c.id: "focal"}
    assert data["seed_groups"][0]["metrics"]["overall"]["std"] == pytest.approx(0.0707106781)
    cat = data["classes"][0]
    assert cat["name"] == "cat" and cat["delta_points"][b.id] == pytest.approx(20.0)


def test_cli_compare_bad_input(workspace, store):
    from tests.test_cli import taillab
    a, b, _ = three_runs(store)
    out = taillab("runs", "compare", a.id, home=workspace)
    assert out.returncode == 2 and "at least 2 runs" in out.stderr
    out = taillab("runs", "compare", a.id, "cafe1234cafe", home=workspace)
    assert out.returncode == 2 and "No run with id 'cafe1234cafe'" in out.stderr
    out = taillab("runs", "show", a.id, b.id, home=workspace)
    assert out.returncode != 0 and "give one RUN_ID" in out.stderr
    out = taillab("runs", "show", a.id, "--json", home=workspace)  # the old commands still work
    assert json.loads(out.stdout)["name"] == "a"


def test_dataset_versions_decide_when_every_run_has_one(store):
    a, b, c = three_runs(store)
    for v in ("v1", "v2"):
        store.add_dataset_version(id=v, name=v, source="builtin:mnist",
                                  class_counts={"train": {"cat": 100, "dog": 50}})
    store.set_dataset_version(a.id, "v1")
    store.set_dataset_version(b.id, "v2")
    assert compare(store, [a.id, b.id, c.id]).warnings == []  # c has none: compared by source
    store.set_dataset_version(c.id, "v1")
    cmp = compare(store, [a.id, b.id, c.id])
    # same source, another version: different datasets
    assert cmp.mixed_datasets and any("different datasets" in w for w in cmp.warnings)
    assert compare(store, [a.id, c.id]).warnings == []
