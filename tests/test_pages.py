"""Every page under streamlit.testing.v1.AppTest, through the real router, on a real workspace."""
import os

import pytest
from streamlit.testing.v1 import AppTest

APP = "../dashboard/app.py"


@pytest.fixture
def app(trained_run, monkeypatch):
    home, run_id = trained_run
    monkeypatch.setenv("TAILLAB_HOME", str(home))
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    at = AppTest.from_file(APP, default_timeout=120)
    return at, run_id


def _no_errors(at):
    assert not at.exception, [e.value for e in at.exception]


def test_data_page_default(app):
    at, _ = app
    at.run()
    _no_errors(at)
    assert at.title[0].value.endswith("Data")
    labels = [m.label for m in at.metric]
    assert "Imbalance ratio" in labels and "Tail classes" in labels
    ratio = next(m for m in at.metric if m.label == "Imbalance ratio").value
    assert float(ratio) == pytest.approx(100.0, rel=0.02)


def test_data_page_bad_folder_gets_message(app, tmp_path, monkeypatch):
    at, _ = app
    monkeypatch.setenv("TAILLAB_DATA_ROOTS", str(tmp_path))  # typed paths must lie in an allowed root
    at.run()
    at.radio(key="data.kind").set_value("Folder on the server").run()
    at.text_input(key="data.folder").set_value(str(tmp_path / "missing")).run()
    _no_errors(at)
    assert any("does not exist" in e.value for e in at.error)
    (tmp_path / "one" / "cats").mkdir(parents=True)
    (tmp_path / "one" / "dogs").mkdir(parents=True)
    at.text_input(key="data.folder").set_value(str(tmp_path / "one")).run()
    assert any("no images" in e.value for e in at.error)


def test_data_page_animal_ratio(app):
    at, _ = app
    at.run()
    at.selectbox(key="data.builtin").set_value("builtin:animal_mnist").run()
    _no_errors(at)
    tail = next(m for m in at.metric if m.label == "Tail classes").value
    assert tail == "3"


def test_train_page_shows_latest_run_and_rejects_nothing(app):
    at, run_id = app
    at.switch_page("../pages/train.py").run()
    _no_errors(at)
    assert at.title[0].value.endswith("Train")
    assert any(run_id in c.value for c in at.caption)  # the newest run is shown


def test_runs_page_lists_runs(app):
    at, run_id = app
    at.switch_page("../pages/runs.py").run()
    _no_errors(at)
    df = at.dataframe[0].value
    assert run_id in set(df["id"]) and "fixture-run" in set(df["name"])


def test_predict_page_without_upload(app):
    at, run_id = app
    at.switch_page("../pages/predict.py").run()
    _no_errors(at)
    assert at.selectbox(key="predict.run").value == run_id
    assert any("Drop one or more images" in i.value for i in at.info)


@pytest.mark.parametrize("page", ["runs", "train", "compare"])
def test_a_file_that_is_not_a_database_stops_the_page_with_the_message(tmp_path, monkeypatch, page):
    """A workspace whose taillab.db is not a database: every page says so (the store's message)
    instead of a traceback, and the file is left as it was."""
    home = tmp_path / "ws"
    home.mkdir()
    (home / "taillab.db").write_bytes(b"not a database\n")
    monkeypatch.setenv("TAILLAB_HOME", str(home))
    monkeypatch.delenv("TAILLAB_DB_URL", raising=False)
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    _no_errors(at)
    assert any("cannot be opened" in e.value and "is not a TailLab database" in e.value for e in at.error)
    assert (home / "taillab.db").read_bytes() == b"not a database\n"
