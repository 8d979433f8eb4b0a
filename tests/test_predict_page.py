"""The Predict page: preselection of the best finished run, post-hoc children in the model list,
repeated files shown once, non-images explained in a card (AppTest with real uploads)."""
import io
import os
from types import SimpleNamespace

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard import predict_ui
from engine.data.builtin import load_builtin

APP = "../dashboard/app.py"


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(load_builtin("mnist").test_images[i]).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def page(ws, monkeypatch):
    """(AppTest on the Predict page, store, parent run id, post-hoc child id) in a private workspace."""
    from engine.posthoc import apply_posthoc

    store, run_id = ws
    child = apply_posthoc(store, run_id, "logit_adjust", taus=(2.0,)).run_id
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))

    def open_page():
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        return at.switch_page("../pages/predict.py").run()
    return open_page, store, run_id, child


def _no_errors(at):
    assert not at.exception, [e.value for e in at.exception]


def test_preselects_best_finished_run_not_newest(page):
    open_page, store, run_id, child = page
    store.log_metrics(child, {"test/bal_acc": 0.01}, step=1)  # the newest run, but the worst
    at = open_page()
    _no_errors(at)
    assert at.selectbox(key="predict.run").value == run_id
    assert child in at.selectbox(key="predict.run").options or any(
        child[:8] in o for o in at.selectbox(key="predict.run").options)
    store.log_metrics(child, {"test/bal_acc": 0.999}, step=2)  # now the best
    at = open_page()
    assert at.selectbox(key="predict.run").value == child


def test_a_compressed_variant_is_not_preselected_over_its_original(page):
    # variants are there to be compared side by side with the original, not to replace it
    from engine import workspace
    from engine.store import RunStatus

    open_page, store, run_id, child = page
    store.log_metrics(child, {"test/bal_acc": 0.0}, step=1)
    q = store.create_run({"compress": {"method": "int8-static"}}, name="q", kind="quantize", parent_run_id=run_id)
    store.set_tags(q.id, {"format": "onnx-int8"})
    store.log_metrics(q.id, {"test/bal_acc": 0.9999}, step=0)
    store.end_run(q.id, RunStatus.FINISHED)
    (workspace.run_dir(q.id) / "model.onnx").write_bytes(b"onnx")  # on disk, like a real variant
    assert predict_ui.default_model(store.list_runs()) == run_id


def test_posthoc_child_predicts_on_the_page(page):
    open_page, store, run_id, child = page
    at = open_page()
    at.selectbox(key="predict.run").set_value(child).run()
    _no_errors(at)
    assert any("logit adjustment" in o for o in at.selectbox(key="predict.run").options)
    at.file_uploader(key="predict.files").set_value([("seven.png", _png(0), "image/png")]).run()
    _no_errors(at)
    assert not at.error
    assert any("ms per image" in c.value for c in at.caption)


def test_repeated_files_once_and_non_image_explained(page):
    open_page, *_ = page
    at = open_page()
    png = _png(0)
    at.file_uploader(key="predict.files").set_value([
        ("a.png", png, "image/png"), ("b.png", _png(1), "image/png"),
        ("a.png", png, "image/png"),  # the same file dropped again
        ("notes.txt", b"just some text", "text/plain")]).run()
    _no_errors(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "notes.txt" in errors[0] and "not an image" in errors[0]
    assert any("Shown once: a.png" in c.value for c in at.caption)
    assert sum("ms per image" in c.value for c in at.caption) == 2  # a.png and b.png, once each


def test_unique_files_by_content():
    f = lambda name, data: SimpleNamespace(name=name, getvalue=lambda: data)  # noqa: E731
    kept, repeats = predict_ui.unique_files([f("a.png", b"1"), f("b.png", b"2"), f("a.png", b"1"),
                                             f("c.png", b"1")])
    assert [k.name for k in kept] == ["a.png", "b.png"] and repeats == ["a.png", "c.png"]
    assert predict_ui.unique_files([]) == ([], [])
