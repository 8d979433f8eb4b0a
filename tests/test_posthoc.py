"""Post-hoc logit adjustment, tau-normalisation and cRT on a real finished run (the session's
``trained_run``), each test in its own copy of that workspace so child runs never leak into
other tests."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from engine.config import ConfigError, TrainConfig
from engine.imbalance import DEFAULT_TAUS, balanced_accuracy




def _val_bal_acc_at_tau0(store, run_id):
    """The parent's validation balanced accuracy, from its stored per-class results."""
    rows = store.class_results(run_id, "val")
    return float(np.mean([r.correct / r.support for r in rows if r.support]))


def test_logit_adjustment_records_a_tuned_child_run(ws):
    from engine import posthoc
    store, run_id = ws
    res = posthoc.apply_posthoc(store, run_id, "logit_adjust")
    child = store.get_run(res.run_id)
    assert (child.kind, child.parent_run_id, child.status) == ("posthoc", run_id, "finished")
    tau = float(child.tags["tau"])
    assert np.isclose(DEFAULT_TAUS, tau).any() and tau == pytest.approx(res.tau)
    # tuned on validation: never worse there than the uncorrected model (tau = 0 is in the grid)
    assert child.latest["val/bal_acc"] >= _val_bal_acc_at_tau0(store, run_id) - 1e-12
    assert child.latest["val/bal_acc"] == pytest.approx(res.after["val"]["bal_acc"])
    for k in ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc"):
        assert f"test/{k}" in child.latest
    rows = store.class_results(child.id, "test")
    assert len(rows) == 10 and sum(r.support for r in rows) == 1000
    acc = np.mean([r.correct / r.support for r in rows])
    assert acc == pytest.approx(child.latest["test/bal_acc"])
    # listed by the store, so the Runs page shows it (under its parent)
    assert child.id in {r.id for r in store.list_runs()}


def test_tau_zero_reproduces_the_parents_test_metrics_exactly(ws):
    from engine import posthoc
    store, run_id = ws
    parent = store.get_run(run_id)
    for method in ("logit_adjust", "tau_norm"):
        res = posthoc.apply_posthoc(store, run_id, method, taus=[0.0])
        child = store.get_run(res.run_id)
        assert child.tags["tau"] == "0"
        for k in ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc"):
            a, b = child.latest[f"test/{k}"], parent.latest[f"test/{k}"]
            assert a == b or (math.isnan(a) and math.isnan(b)), (method, k, a, b)


def test_tau_norm_at_zero_gives_the_models_logits_and_tunes_on_val(ws):
    from engine import posthoc
    store, run_id = ws
    run = posthoc.load_run(run_id)
    val = posthoc.outputs(run, "val")
    assert val.features.shape == (len(val.targets), 128)  # compact_cnn's penultimate width
    weight, bias = posthoc._linear_head(run.model)
    again = posthoc.tau_norm_logits(val.features, weight, bias, 0.0)
    np.testing.assert_allclose(again, val.logits, rtol=1e-5, atol=1e-5)
    res = posthoc.apply_posthoc(store, run_id, "tau_norm", data=run.data)
    assert np.isclose(DEFAULT_TAUS, res.tau).any()
    tau0 = balanced_accuracy(val.logits.argmax(1), val.targets, 10)
    assert res.after["val"]["bal_acc"] >= tau0 == pytest.approx(res.before["val"]["bal_acc"])


def test_unknown_method_and_unfinished_runs_are_refused(ws):
    from engine import posthoc
    store, run_id = ws
    with pytest.raises(ValueError, match="logit_adjust, tau_norm"):
        posthoc.apply_posthoc(store, run_id, "magic")
    queued = store.create_run({"model": "small_cnn"}, name="queued")
    with pytest.raises(ValueError, match="finished"):
        posthoc.apply_posthoc(store, queued.id, "logit_adjust")


def test_crt_freezes_the_backbone_and_retrains_the_classifier(ws, tmp_path):
    from engine import posthoc
    from engine.train import fit
    store, run_id = ws
    parent = store.get_run(run_id)
    cfg = posthoc.crt_config(parent, epochs=1)
    assert (cfg.init_from, cfg.train_scope, cfg.sampler, cfg.loss) == (run_id, "classifier", "class_balanced", "ce")
    result = fit(cfg, checkpoint_dir=tmp_path / "crt")
    before = torch.load(posthoc.checkpoint_path(run_id), weights_only=False)["model_state"]
    after = result.state.model.state_dict()
    assert set(before) == set(after)
    backbone = [k for k in before if not k.startswith("fc.")]
    assert backbone and any("running_mean" in k for k in backbone)
    for k in backbone:  # weights and BatchNorm statistics: bit for bit
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert 0 <= result.test["bal_acc"] <= 1


def test_crt_through_the_worker_is_a_child_run(ws):
    from engine import posthoc, worker
    from engine.config import to_dict
    store, run_id = ws
    cfg = posthoc.crt_config(store.get_run(run_id), epochs=1)
    run = store.create_run(to_dict(cfg), name=cfg.name, kind="crt", parent_run_id=run_id)
    assert worker.run(run.id, store) == "finished", store.get_run(run.id).error
    root, kids = posthoc.family(store, run.id)
    assert root.id == run_id and [k.id for k in kids] == [run.id]
    rows = posthoc.comparison_rows(root, kids)
    assert [r["method"] for r in rows] == ["original", "cRT"]
    assert rows[1]["delta_bal_acc"] == pytest.approx(rows[1]["bal_acc"] - rows[0]["bal_acc"])
    # the cRT run has a checkpoint of its own: a post-hoc method on it makes it a family root
    res = posthoc.apply_posthoc(store, run.id, "logit_adjust")
    root, kids = posthoc.family(store, run.id)
    assert root.id == run.id and [k.id for k in kids] == [res.run_id]


def test_compression_variants_stay_out_of_the_before_after_table(ws):
    # an int8 or pruned child is compared on the Compress page, not as a head-bias correction
    from engine import posthoc
    from engine.store import RunStatus
    store, run_id = ws
    q = store.create_run({"compress": {"method": "int8-static"}}, name="q", kind="quantize", parent_run_id=run_id)
    store.end_run(q.id, RunStatus.FINISHED)
    res = posthoc.apply_posthoc(store, run_id, "logit_adjust")
    root, kids = posthoc.family(store, run_id)
    assert root.id == run_id and [k.id for k in kids] == [res.run_id]
    assert [r["method"] for r in posthoc.comparison_rows(root, kids)] == ["original", "logit_adjust"]


def test_init_from_an_unknown_run_is_a_clear_error(ws):
    from tests.conftest import tiny_config
    from engine.train import fit
    cfg = tiny_config(init_from="no-such-run", train_scope="classifier", epochs=1)
    with pytest.raises(ConfigError, match="no-such-run.*has no checkpoint"):
        fit(cfg)


def test_init_from_a_run_of_another_model_is_refused(ws):
    from tests.conftest import tiny_config
    from engine.train import fit
    _, run_id = ws
    with pytest.raises(ConfigError, match="same model and dataset"):
        fit(tiny_config(init_from=run_id, model="resnet18", epochs=1))


@pytest.mark.parametrize("kw, words", [
    ({"train_scope": "head"}, ["all", "classifier"]),
    ({"train_scope": "classifier"}, ["init_from"]),
    ({"init_from": "  "}, ["run id"]),
])
def test_bad_scope_settings(kw, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kw)
    for w in words:
        assert w in str(e.value)


def test_scope_settings_round_trip():
    from engine.config import to_toml, train_config_from_toml
    cfg = TrainConfig(init_from="abc123", train_scope="classifier", sampler="class_balanced")
    assert train_config_from_toml(to_toml(cfg)) == cfg
    assert train_config_from_toml(to_toml(dataclasses.replace(cfg, init_from=None, train_scope="all"))).init_from is None


def test_cli_posthoc_prints_json(ws, capsys):
    from engine import cli
    store, run_id = ws
    assert cli.main(["posthoc", run_id, "--method", "logit_adjust", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parent_run_id"] == run_id and out["method"] == "logit_adjust"
    assert np.isclose(DEFAULT_TAUS, out["tau"]).any()
    assert set(out["test"]) == {"before", "after"}
    assert out["test"]["before"]["bal_acc"] == store.get_run(run_id).latest["test/bal_acc"]
    assert store.get_run(out["run_id"]).latest["test/bal_acc"] == out["test"]["after"]["bal_acc"]
    assert cli.main(["posthoc", run_id, "--method", "magic"]) == 2
    assert "Valid choices: logit_adjust, tau_norm" in capsys.readouterr().err


def test_cli_train_flags_start_from_the_parents_settings(ws):
    from engine import cli
    _, run_id = ws
    args = cli.build_parser().parse_args(
        ["train", "--init-from", run_id, "--train-scope", "classifier", "--sampler", "class_balanced",
         "--epochs", "2"])
    cfg = cli.build_train_config(args)
    assert (cfg.init_from, cfg.train_scope, cfg.sampler, cfg.epochs) == (run_id, "classifier", "class_balanced", 2)
    assert cfg.data.n_max == 300  # the parent's dataset, not the CLI default
    bad = cli.build_parser().parse_args(["train", "--init-from", "nope"])
    with pytest.raises(ConfigError, match="no run with id 'nope'"):
        cli.build_train_config(bad)


def test_family_order_puts_children_under_their_parent(ws):
    from dashboard.posthoc_ui import family_order
    from engine import posthoc
    store, run_id = ws
    other = store.create_run({"model": "small_cnn"}, name="newer")
    res = posthoc.apply_posthoc(store, run_id, "logit_adjust")
    ordered = [r.id for r in family_order(store.list_runs())]
    assert ordered.index(res.run_id) == ordered.index(run_id) + 1
    assert ordered.index(other.id) < ordered.index(run_id)


def _methods_block():
    import os

    from dashboard import posthoc_ui, state
    store = state.store()
    run = store.get_run(os.environ["TAILLAB_TEST_RUN"])
    posthoc_ui.methods(store, run)
    posthoc_ui.comparison(store, run)


def test_runs_page_block_buttons_create_child_runs(ws, monkeypatch):
    from streamlit.testing.v1 import AppTest
    store, run_id = ws
    monkeypatch.setenv("TAILLAB_TEST_RUN", run_id)
    at = AppTest.from_function(_methods_block, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [b.label for b in at.button]
    assert labels == ["Post-hoc logit adjustment", "τ-normalisation", "cRT (re-train classifier, balanced)"]
    at.button(key="runs.posthoc.la").click().run()
    assert not at.exception, [e.value for e in at.exception]
    kids = [r for r in store.list_runs() if r.parent_run_id == run_id]
    assert [k.kind for k in kids] == ["posthoc"]
    table = at.dataframe[0].value
    assert list(table["method"]) == ["original", "logit_adjust"]
    assert {"overall", "balanced", "head", "medium", "tail", "Δ balanced"} <= set(table.columns)
    # cRT is a real worker process, like any run: it ends finished and joins the table
    from engine import jobs
    at.number_input(key="runs.crt.epochs").set_value(1)
    at.button(key="runs.crt").click().run()
    assert not at.exception, [e.value for e in at.exception]
    crt = [r for r in store.list_runs() if r.parent_run_id == run_id and r.kind == "crt"]
    assert len(crt) == 1 and crt[0].config["epochs"] == 1
    assert jobs.wait(store, crt[0].id, timeout=300).status == "finished"
    at.run()
    assert list(at.dataframe[0].value["method"]) == ["original", "logit_adjust", "cRT"]


def test_runs_page_with_runs_shows_no_error(ws, monkeypatch):
    """The whole Runs page through the router, after a post-hoc child exists."""
    import os

    from streamlit.testing.v1 import AppTest

    from engine import posthoc
    store, run_id = ws
    posthoc.apply_posthoc(store, run_id, "logit_adjust")
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    at = AppTest.from_file("../dashboard/app.py", default_timeout=120)
    at.switch_page("../pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    names = list(at.dataframe[0].value["name"])
    assert names.index("↳ fixture-run-logit_adjust") == names.index("fixture-run") + 1
