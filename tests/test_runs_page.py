"""The Runs page (issue 9): delete asks first and leaves nothing selected, the decisive columns
come first, a mixed-dataset comparison warns, and a post-hoc child says it has no curves."""
import os

import pytest
from streamlit.testing.v1 import AppTest

APP = "../dashboard/app.py"
ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.fixture
def page(ws, monkeypatch):
    """(AppTest on the Runs page, store, id of the finished run) on a private workspace copy."""
    store, run_id = ws
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("../pages/runs.py")
    return at, store, run_id


def _select(at, rows):
    gen = at.session_state["runs.table_gen"] if "runs.table_gen" in at.session_state else 0
    key = f"runs.table.{gen}"
    at.session_state[key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    return at.run()


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]


def _ids(at):
    return list(at.dataframe[0].value["id"])


def test_table_puts_the_decisive_columns_first(page):
    at, _, run_id = page
    at.run()
    _ok(at)
    cols = list(at.dataframe[0].value.columns)
    assert cols[:5] == ["name", "status", "test acc", "test bal. acc", "test tail acc"]
    assert run_id in _ids(at)


def test_delete_asks_first_then_leaves_nothing_selected(page):
    from engine import posthoc
    at, store, run_id = page
    child = store.get_run(posthoc.apply_posthoc(store, run_id, "logit_adjust").run_id)
    at.run()
    assert _ids(at) == [run_id, child.id]  # the child right under its parent
    _select(at, [1])
    _ok(at)
    at.button(key="runs.delete").click().run()
    _ok(at)
    assert store.get_run(child.id)  # nothing deleted yet: the page asks first
    warning = next(w.value for w in at.warning if "Delete run" in w.value)
    assert child.name in warning and "removed" in warning
    assert not [b for b in at.button if b.key == "runs.delete"]  # no second Delete under the mouse
    at.button(key="runs.delete.keep").click().run()  # changing one's mind keeps it
    assert child.id in _ids(at) and [b for b in at.button if b.key == "runs.delete"]
    at.button(key="runs.delete").click().run()
    at.button(key="runs.delete.confirm").click().run()
    _ok(at)
    assert _ids(at) == [run_id]
    assert not os.path.exists(os.path.join(os.environ["TAILLAB_HOME"], "runs", child.id))
    assert not [b for b in at.button if b.key.startswith("runs.delete")]  # nothing selected now
    assert not at.subheader  # no run's details: the parent was not selected in its place


def test_comparison_warns_about_mixed_datasets(page):
    at, store, run_id = page
    other = store.create_run({"data": {"source": "builtin:animal_mnist"}, "model": "resnet"},
                             name="other-data")
    at.run()
    assert _ids(at)[:2] == [other.id, run_id]
    _select(at, [0, 1])
    _ok(at)
    assert any("different datasets" in w.value for w in at.warning)
    table = at.dataframe[1].value
    assert "dataset" in table.columns
    assert any("animal_mnist" in str(d) for d in table["dataset"])
    assert any("builtin:mnist" in str(d) for d in table["dataset"])


def test_comparison_of_one_dataset_does_not_warn(page):
    from engine import posthoc
    at, store, run_id = page
    posthoc.apply_posthoc(store, run_id, "tau_norm")
    at.run()
    _select(at, [0, 1])
    _ok(at)
    assert not any("different datasets" in w.value for w in at.warning)


def test_posthoc_child_explains_missing_curves_and_shows_parent_recipe(page):
    from engine import posthoc
    at, store, run_id = page
    child = store.get_run(posthoc.apply_posthoc(store, run_id, "logit_adjust").run_id)
    at.run()
    _select(at, [1])
    _ok(at)
    assert at.subheader[0].value.endswith(child.name)
    assert any("No training curves" in i.value for i in at.info)
    assert not any("appear after the first" in c.value for c in at.caption)
    assert any("parent run" in c.value and "Augmentation" in c.value for c in at.caption)


def test_posthoc_button_lists_the_child_at_once(page):
    at, store, run_id = page
    at.run()
    _select(at, [0])
    at.button(key="runs.posthoc.la").click().run()
    _ok(at)
    assert len(_ids(at)) == 2  # the table was rebuilt after the child run was made
    assert [r.kind for r in store.list_runs()].count("posthoc") == 1


# --- the runs table over Store.query_runs: filters, search, sort, pages; one run's edits; export --------

def _cfg(model="compact_cnn", loss="ce", **kw):
    """A resolved training config (what jobs.launch stores), as a dict."""
    from engine.config import DataConfig, TrainConfig, to_dict
    data = dict(source="builtin:mnist", imbalance_ratio=10.0, n_max=300, val_per_class=20, test_per_class=100)
    data.update(kw.pop("data", {}))
    kw = dict(dict(optimizer="adamw", lr=0.002, batch_size=32, weight_decay=0.05, epochs=2), **kw)
    return to_dict(TrainConfig(data=DataConfig(**data), model=model, loss=loss, **kw))


def _make(store, name, *, model="compact_cnn", loss="ce", status="finished", metrics=None, labels=(),
          notes="", starred=False, **cfg):
    run = store.create_run(_cfg(model, loss, **cfg), name=name)
    store.mark_running(run.id, total_steps=10)
    if metrics:
        store.log_metrics(run.id, metrics, step=10)
    if status != "running":
        store.end_run(run.id, status)
    if labels:
        store.set_labels(run.id, list(labels))
    if notes:
        store.set_notes(run.id, notes)
    if starred:
        store.set_starred(run.id, True)
    return run.id


@pytest.fixture
def history(store, monkeypatch):
    """(AppTest on the Runs page, store, {name: id}) over six runs made directly in the store."""
    nan = float("nan")
    ids = {
        "alpha": _make(store, "alpha", metrics={"test/acc": 0.91, "test/bal_acc": 0.80, "test/few_acc": 0.55},
                       labels=["baseline"]),
        "bravo": _make(store, "bravo", model="small_cnn", loss="focal",
                       metrics={"test/acc": 0.85, "test/bal_acc": 0.90, "test/few_acc": 0.70}),
        "charlie": _make(store, "charlie", status="failed"),
        "delta": _make(store, "delta", loss="ldam", metrics={"test/acc": 0.60, "test/bal_acc": nan},
                       notes="Tail collapsed after epoch 3", labels=["baseline", "sweep"]),
        "echo": _make(store, "echo", model="small_cnn", metrics={"test/acc": 0.70, "test/bal_acc": 0.65},
                      starred=True),
        "foxtrot": _make(store, "foxtrot", status="running"),
    }
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("../pages/runs.py")
    return at, store, ids


def _names(at):
    return [n.removeprefix("⭐ ").removeprefix("↳ ") for n in at.dataframe[0].value["name"]]


def test_filters_narrow_the_table(history):
    at, store, ids = history
    at.run()
    _ok(at)
    assert _names(at) == ["foxtrot", "echo", "delta", "charlie", "bravo", "alpha"]  # newest first
    at.multiselect(key="runs.model").set_value(["small_cnn"]).run()
    assert sorted(_names(at)) == ["bravo", "echo"]
    at.multiselect(key="runs.model").set_value([]).run()
    at.multiselect(key="runs.status").set_value(["finished"]).run()
    at.multiselect(key="runs.loss").set_value(["ce"]).run()
    assert sorted(_names(at)) == ["alpha", "echo"]
    at.multiselect(key="runs.loss").set_value([]).run()
    at.multiselect(key="runs.labels").set_value(["baseline", "sweep"]).run()  # a run needs all of them
    assert _names(at) == ["delta"]
    at.multiselect(key="runs.labels").set_value([])
    at.multiselect(key="runs.status").set_value([]).run()
    at.toggle(key="runs.starred").set_value(True).run()
    assert _names(at) == ["echo"]
    assert at.dataframe[0].value["name"][0] == "⭐ echo"
    assert any("page 1 of 1 · 1 run<" in m.value for m in at.markdown)


def test_search_finds_by_notes_tags_and_id(history):
    at, _, ids = history
    at.run()
    at.text_input(key="runs.text").input("COLLAPSED").run()  # case-insensitive, in the notes
    assert _names(at) == ["delta"]
    at.text_input(key="runs.text").input("sweep").run()  # a tag
    assert _names(at) == ["delta"]
    at.text_input(key="runs.text").input(ids["bravo"][:10]).run()  # an id prefix
    assert _names(at) == ["bravo"]


def test_no_match_says_so_and_clears(history):
    at, _, _ = history
    at.run()
    at.text_input(key="runs.text").input("no such run anywhere").run()
    _ok(at)
    assert not at.dataframe
    assert any("No runs match these filters" in i.value for i in at.info)
    at.button(key="runs.clear_empty").click().run()
    _ok(at)
    assert len(_names(at)) == 6 and at.text_input(key="runs.text").value == ""


def test_sort_by_a_final_metric_puts_runs_without_it_last(history):
    at, _, _ = history
    at.run()
    at.selectbox(key="runs.sort").set_value("test bal. acc").run()
    names = _names(at)
    assert names[:3] == ["bravo", "alpha", "echo"]  # 0.90, 0.80, 0.65
    assert sorted(names[3:]) == ["charlie", "delta", "foxtrot"]  # NaN and missing: last
    assert list(at.dataframe[0].value["test bal. acc"])[:3] == ["90.0%", "80.0%", "65.0%"]
    assert at.dataframe[0].value["test bal. acc"][names.index("delta")] == "—"  # NaN shown as —
    at.toggle(key="runs.desc").set_value(False).run()
    names = _names(at)
    assert names[:3] == ["echo", "alpha", "bravo"]  # ascending, still without-value last
    assert sorted(names[3:]) == ["charlie", "delta", "foxtrot"]


def test_pages_of_fifty(store, monkeypatch):
    for i in range(120):
        store.create_run({"model": "compact_cnn", "loss": "ce"}, name=f"r{i:03d}")
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("../pages/runs.py").run()
    _ok(at)
    assert len(_names(at)) == 50 and _names(at)[0] == "r119"
    assert any("page 1 of 3 · 120 runs" in m.value for m in at.markdown)
    at.button(key="runs.next").click().run()
    at.button(key="runs.next").click().run()
    assert _names(at) == [f"r{i:03d}" for i in range(19, -1, -1)]  # the last page: 20 runs
    assert any("page 3 of 3 · 120 runs" in m.value for m in at.markdown)
    at.text_input(key="runs.text").input("r11").run()  # a new filter starts at page 1
    assert _names(at) == [f"r{i}" for i in range(119, 109, -1)]
    assert any("page 1 of 1 · 10 runs" in m.value for m in at.markdown)


def _select_name(at, name):
    return _select(at, [_names(at).index(name)])


def test_rename_notes_tags_and_star_persist(history):
    at, store, ids = history
    at.run()
    rid = ids["echo"]
    _select_name(at, "echo")
    _ok(at)
    at.text_input(key=f"runs.name.{rid}").input("   ").run()
    at.button(key=f"runs.rename.{rid}").click().run()
    assert any("needs a name" in e.value for e in at.error)
    assert store.get_run(rid).name == "echo"  # nothing changed
    at.text_input(key=f"runs.name.{rid}").input("echo-renamed").run()
    at.button(key=f"runs.rename.{rid}").click().run()
    _ok(at)
    assert store.get_run(rid).name == "echo-renamed"
    assert "echo-renamed" in _names(at) and at.subheader[0].value.endswith("echo-renamed")

    at.text_area(key=f"runs.notes.{rid}").input("LR too high for the tail").run()
    at.button(key=f"runs.savenotes.{rid}").click().run()
    assert store.get_run(rid).notes == "LR too high for the tail"

    at.multiselect(key=f"runs.tags.{rid}").set_value(["baseline", "new-tag"]).run()
    _ok(at)
    assert store.get_run(rid).labels == ("baseline", "new-tag")
    long = "x" * 65
    at.multiselect(key=f"runs.tags.{rid}").set_value(["baseline", long]).run()
    assert any("at most 64" in e.value for e in at.error)
    assert store.get_run(rid).labels == ("baseline", "new-tag")  # nothing changed

    assert store.get_run(rid).starred
    at.toggle(key=f"runs.star.{rid}").set_value(False).run()
    _ok(at)
    assert not store.get_run(rid).starred
    assert "⭐ echo-renamed" not in list(at.dataframe[0].value["name"])


def test_export_parses_back_to_the_same_values(history):
    import csv
    import io
    import json as js

    from dashboard import runs_ui
    at, store, ids = history
    runs = [store.get_run(ids[n]) for n in ("alpha", "delta", "charlie")]
    rows = list(csv.DictReader(io.StringIO(runs_ui.export_csv(runs))))
    assert [r["id"] for r in rows] == [r.id for r in runs]
    assert float(rows[0]["test/acc"]) == 0.91 and float(rows[0]["test/few_acc"]) == 0.55
    assert rows[1]["test/bal_acc"] == "" and float(rows[1]["test/acc"]) == 0.6  # NaN -> empty
    assert rows[2]["test/acc"] == ""  # failed: no metrics
    assert rows[1]["tags"] == "baseline; sweep" and rows[1]["notes"] == "Tail collapsed after epoch 3"
    assert rows[0]["config.loss"] == "ce" and float(rows[0]["config.lr"]) == 0.002
    assert rows[0]["config.data.source"] == "builtin:mnist" and rows[0]["config.epochs"] == "2"
    recs = js.loads(runs_ui.export_json(runs))
    assert recs[0]["metrics"]["test/acc"] == 0.91 and recs[1]["metrics"]["test/bal_acc"] is None
    assert recs[0]["settings"]["data.imbalance_ratio"] == 10.0 and recs[0]["settings"]["lr"] == 0.002
    assert recs[1]["tags"] == ["baseline", "sweep"]
    # on the page: both buttons, for the selection or (nothing selected) for the filtered runs
    at.run()
    assert [b.label for b in at.download_button] == ["⬇ CSV", "⬇ JSON"]
    assert "all 6 filtered" in at.download_button[0].help
    _select(at, [0, 1])
    assert "2 selected" in at.download_button[0].help


def test_compare_button_for_two_to_twenty(history):
    at, store, ids = history
    at.run()
    _select(at, [0])
    assert not [b for b in at.button if b.key == "runs.compare"]
    _select(at, [0, 1, 2])
    assert at.button(key="runs.compare").label == "⚖️ Compare 3 runs"
    for i in range(15):
        store.create_run({"model": "compact_cnn"}, name=f"more-{i}")
    at.run()  # 21 runs now; the new ones moved the rows: the selection was cleared, not shifted
    assert not [b for b in at.button if b.key == "runs.compare"] and not at.subheader
    _select(at, list(range(21)))
    assert not [b for b in at.button if b.key == "runs.compare"]
    assert any("2 to 20 runs; 21 are selected" in w.value for w in at.warning)


def test_a_new_run_does_not_shift_the_selection_onto_another(history):
    at, store, ids = history
    at.run()
    _select_name(at, "alpha")
    assert at.subheader[0].value.endswith("alpha")
    store.create_run({"model": "compact_cnn"}, name="newcomer")  # lands on top: every row moves down
    at.run()
    _ok(at)
    assert not at.subheader  # nothing selected rather than the run now in alpha's old row
    assert any("select again" in t.value for t in at.toast)
    _select_name(at, "alpha")
    assert at.subheader[0].value.endswith("alpha")


def test_clone_fills_the_train_page_and_launches_those_settings(history):
    from engine import jobs
    at, store, ids = history
    rid = _make(store, "to-clone", model="small_cnn", loss="focal", seed=7, momentum=0.8, warmup_epochs=1.0,
                log_every=5, scheduler="multistep", milestones=[2, 4], early_stop_patience=3, grad_clip=2.0,
                sampler="class_balanced", data={"imbalance_ratio": 20.0, "image_size": 28, "channels": 1},
                loss_params={"gamma": 1.5})
    run = store.get_run(rid)
    at.run()
    _select_name(at, "to-clone")
    at.button(key="runs.clone").click().run()
    _ok(at)
    assert at.session_state["train.clone_config"] == run.config
    assert at.session_state["train.clone_name"] == "to-clone"
    # the Train page, filled from the run
    assert at.selectbox(key="train.model").value == "small_cnn"
    assert at.selectbox(key="train.loss").value == "focal"
    assert at.selectbox(key="train.sampler").value == "class_balanced"
    assert at.number_input(key="train.seed").value == 7
    assert at.number_input(key="train.lr").value == 0.002
    assert at.number_input(key="train.size").value == 28
    assert at.number_input(key="train.lp.focal.gamma").value == 1.5
    assert any("cloned from run to-clone" in m.value for m in at.markdown)
    assert at.number_input(key="train.momentum").value == 0.8
    assert at.selectbox(key="train.sched").value == "multistep" and at.text_input(key="train.milestones").value == "2, 4"
    assert (at.number_input(key="train.es").value, at.number_input(key="train.clip").value) == (3, 2.0)
    assert any("log_every 5" in c.value for c in at.caption)  # carried without a widget, and said so
    assert "ratio 20" in at.sidebar.markdown[1].value or any("imbalance ratio 20" in c.value for c in at.caption)
    at.switch_page("../pages/train.py")  # AppTest's later runs stay on Train (the script switched to it)
    at.number_input(key="train.epochs").set_value(1).run()  # one change on top of the clone
    at.button(key="train.start").click().run()
    _ok(at)
    new = store.get_run(at.session_state["train.run_id"])
    try:
        jobs.kill(store, new.id)
    finally:
        store.end_run(new.id, "cancelled")
    expected = dict(run.config, epochs=1, name=new.config["name"], num_workers=new.config["num_workers"],
                    threads=new.config["threads"])
    assert new.config == expected  # every other setting, carried or shown, is the cloned run's
    at.button(key="train.clone_clear").click().run()
    _ok(at)
    assert "train.clone_config" not in at.session_state
    assert at.selectbox(key="train.model").value == "auto"


def test_clone_of_a_derived_run_is_refused_with_the_reason(ws, monkeypatch):
    from engine import posthoc
    store, run_id = ws
    child = posthoc.apply_posthoc(store, run_id, "logit_adjust").run_id
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("../pages/runs.py").run()
    _select(at, [_ids(at).index(child)])
    b = at.button(key="runs.clone")
    assert b.disabled and "clone its parent" in b.help


def test_clone_says_what_a_widget_cannot_show(history):
    at, store, ids = history
    _make(store, "long-run", epochs=2000)  # the Train page's epochs field goes to 1000
    at.run()
    _select_name(at, "long-run")
    at.button(key="runs.clone").click().run()
    _ok(at)
    assert any("Not copied" in w.value and "epochs 2000 (outside this page's 1–1000)" in w.value for w in at.warning)
    assert at.number_input(key="train.epochs").value == 5  # the page's default, and the page says so
    at.switch_page("../pages/train.py")
    at.selectbox(key="train.loss").set_value("focal").run()
    at.switch_page("../pages/data.py").run()  # Streamlit forgets Train's widgets here
    at.switch_page("../pages/train.py").run()
    _ok(at)
    assert any("cloned from run long-run" in m.value for m in at.markdown)
    assert at.selectbox(key="train.loss").value == "ce"  # the clone's again, as the banner says


def test_date_range_includes_both_days(history):
    from datetime import datetime, timedelta
    at, store, ids = history
    today = datetime.utcnow().date()  # the store's timestamps are UTC
    at.run()
    at.date_input(key="runs.dates").set_value((today, today)).run()
    _ok(at)
    assert len(_names(at)) == 6
    day = today - timedelta(days=1)
    at.date_input(key="runs.dates").set_value((day, day)).run()
    assert any("No runs match these filters" in i.value for i in at.info)
    at.date_input(key="runs.dates").set_value((day, today)).run()
    assert len(_names(at)) == 6


def test_filters_and_sort_survive_a_visit_to_another_page(history):
    at, store, ids = history
    at.run()
    at.multiselect(key="runs.model").set_value(["small_cnn"]).run()
    at.selectbox(key="runs.sort").set_value("test bal. acc").run()
    assert _names(at) == ["bravo", "echo"]
    at.switch_page("../pages/predict.py").run()
    at.switch_page("../pages/runs.py").run()
    _ok(at)
    assert _names(at) == ["bravo", "echo"]
    assert at.multiselect(key="runs.model").value == ["small_cnn"]
    at.button(key="runs.clear").click().run()  # clearing keeps the sort
    assert _names(at)[:3] == ["bravo", "alpha", "echo"]
