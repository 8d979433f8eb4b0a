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
