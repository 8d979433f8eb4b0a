"""The Compare page (AppTest) over runs written straight into a real store: the selection and the
chart choices come from the query string and go back to it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_compare import make_run, three_runs

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "compare.py")


def page(**params) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params.update(params)
    return at.run()


def charts(at) -> dict[str, dict]:
    """chart title -> plotly figure dict."""
    out = {}
    for el in at.get("plotly_chart"):
        fig = json.loads(el.proto.spec)
        out[fig["layout"]["title"]["text"]] = fig
    return out


def text(at) -> str:
    return " ".join(str(e.value) for kind in ("info", "warning", "caption", "error", "markdown")
                    for e in at.get(kind))


def test_without_runs_says_how_to_pick(store):
    at = page()
    assert not at.exception
    assert "Pick **two to twenty runs**" in text(at) and "**Runs**" in text(at)
    a, _, _ = three_runs(store)
    at = page(runs=a.id)
    assert not at.exception and "two to twenty" in text(at)
    assert at.multiselect(key="compare.runs").value == [a.id]


def test_link_opens_the_same_view(store):
    a, b, c = three_runs(store)
    at = page(runs=",".join(r.id[:8] for r in (a, b, c)), baseline=c.id[:8], metric="val/bal_acc",
              x="step", smooth="0.5")
    assert not at.exception, at.exception
    assert at.multiselect(key="compare.runs").value == [a.id, b.id, c.id]
    assert at.selectbox(key="compare.baseline").value == c.id
    assert at.radio(key="compare.x").value == "step" and at.slider(key="compare.smooth").value == 0.5
    assert at.selectbox(key="compare.metric").value == "val/bal_acc"
    figs = charts(at)
    curves = figs["val/bal_acc per training step (smoothed)"]
    group = next(t for t in curves["data"] if t.get("name") == "a × 2 seeds (mean ± std)")
    assert group["x"] == [10.0, 20.0, 30.0]
    # EMA 0.5 of a = 50, 60, 70 and b = 70, 80, 90 (%), debiased: first points equal, mean 60
    assert group["y"][0] == pytest.approx(60.0)
    lower = next(t for t in curves["data"] if t.get("fill") == "tonexty")  # the ±1 std band
    assert lower["y"][0] == pytest.approx(60.0 - 14.1421356)  # sample std of 50 and 70
    assert [t.get("name") for t in curves["data"] if t.get("showlegend") is not False] == [
        "a × 2 seeds (mean ± std)", "c · " + c.id[:6]]
    heat = next(f for t, f in figs.items() if t.startswith("Per-class recall change vs baseline c · "))
    trace = heat["data"][0]
    assert trace["x"] == ["cat", "dog", "bird"] and trace["zmid"] == 0
    assert trace["z"] == [[pytest.approx(10.0), None, None], [pytest.approx(20.0), None, None]]
    bars = figs["Test accuracy by head / medium / tail"]
    assert [t["name"] for t in bars["data"]] == ["a × 2 seeds", "c · " + c.id[:6]]
    assert bars["data"][0]["y"][2] == pytest.approx(30.0)  # mean tail of a (20) and b (40)
    table = at.dataframe[0].value
    assert list(table["overall"]) == ["80.0%", "90.0%", "70.0%"] and "dataset" not in table
    assert table["run"][2].endswith("(baseline)")
    groups = at.dataframe[1].value
    assert groups.to_dict("records")[0] == {
        "seed group": "a × 2 seeds", "seeds": "0, 1", "overall": "85.0 ± 7.1%",
        "balanced": "65.0 ± 7.1%", "head": "90.0 ± 0.0%", "medium": "55.0 ± 7.1%",
        "tail": "30.0 ± 14.1%", "macro-F1": "60.0 ± 7.1%", "ECE": "0.040 ± 0.014"}
    assert "has no class dog" in text(at)
    per_class = at.dataframe[2].value.set_index("class")
    assert per_class.loc["cat", "a × 2 seeds: mean ± std"] == "85.0 ± 7.1%"
    assert per_class.loc["cat", f"a · {a.id[:6]}"] == "80.0% (+10.0)"  # vs baseline c: 70%
    assert per_class.loc["dog", f"c · {c.id[:6]}"] == "gap"
    assert per_class.loc["bird", "training images"] == 5


def test_changes_go_back_to_the_url(store):
    a, b, c = three_runs(store)
    at = page(runs=",".join(r.id for r in (a, b, c)))
    assert at.query_params.get("metric") is None  # nothing written until the user changes something
    at.multiselect(key="compare.runs").unselect(b.id).run()
    assert not at.exception
    assert at.query_params["runs"] == f"{a.id},{c.id}"
    at.radio(key="compare.x").set_value("time").run()
    at.selectbox(key="compare.baseline").set_value(c.id).run()
    at.slider(key="compare.smooth").set_value(0.3).run()
    assert at.query_params["x"] == "time" and at.query_params["baseline"] == c.id
    assert at.query_params["smooth"] == "0.3"
    assert at.selectbox(key="compare.baseline").value == c.id  # stays after its own rerun
    assert "wall time" in " ".join(charts(at))


def test_deleted_run_and_bad_link_values(store):
    a, b, c = three_runs(store)
    store.delete_run(c.id)
    at = page(runs=f"{a.id},{b.id},{c.id}", metric="val/nope", x="sideways", smooth="7")
    assert not at.exception
    t = text(at)
    assert "1 run in this link no longer exists" in t and c.id in t and "The other 2 are compared" in t
    assert "`val/nope` is not logged" in t
    assert at.radio(key="compare.x").value == "epoch" and at.slider(key="compare.smooth").value == 0
    assert at.dataframe[0].value["run"].tolist()[:2] == [f"a · {a.id[:6]} (baseline)", f"b · {b.id[:6]}"]
    # only one left: the note, then how to pick more
    store.delete_run(b.id)
    at = page(runs=f"{a.id},{b.id},{c.id}")
    assert not at.exception and "2 runs in this link no longer exist" in text(at)
    assert "two to twenty" in text(at)


def test_different_datasets_and_parallel_coordinates(store):
    a, _, _ = three_runs(store)
    d = make_run(store, "d", lr=0.05, data={"source": "builtin:animal_mnist"},
                 metrics={"test/acc": 0.5, "test/bal_acc": 0.4}, classes={"ant": (80, 10, 5)})
    at = page(runs=f"{a.id},{d.id}")
    assert not at.exception
    assert any("different datasets" in w.value for w in at.warning)
    par = charts(at)["Numeric settings against balanced (one line per run)"]["data"][0]
    assert [dim["label"] for dim in par["dimensions"]] == ["lr", "balanced (%)"]
    assert par["dimensions"][0]["values"] == [0.1, 0.05]
    assert par["dimensions"][1]["values"] == [pytest.approx(60.0), pytest.approx(40.0)]
    diff = at.dataframe[-1].value
    assert list(diff.columns) == ["run", "data.source", "lr"]
    assert list(diff["lr"]) == ["0.1", "0.05"]
    assert list(at.dataframe[0].value["dataset"]) == ["builtin:mnist", "builtin:animal_mnist"]


def test_more_than_twenty_in_a_link(store):
    a, b, _ = three_runs(store)
    fake = [f"{i:08x}ffff" for i in range(20)]
    at = page(runs=",".join([a.id, b.id, *fake]))
    assert not at.exception
    assert "names 22 runs; Compare shows at most 20: the first 20 are selected" in text(at)
    assert at.multiselect(key="compare.runs").value == [a.id, b.id]
    assert "18 runs in this link no longer exist" in text(at)


def test_runs_without_metrics_yet(store):
    """Two runs still queued: nothing logged, no per-class results: notes, not errors."""
    a = store.create_run({"model": "compact_cnn", "seed": 0}, name="q1")
    b = store.create_run({"model": "compact_cnn", "seed": 1}, name="q2")
    at = page(runs=f"{a.id},{b.id}")
    assert not at.exception
    t = text(at)
    assert "logged no metrics yet" in t and "None of these runs has per-class test results" in t
    assert "Not finished" in t
    assert list(at.dataframe[0].value["overall"]) == ["—", "—"]


def test_back_from_runs_with_the_same_link(store):
    """Runs -> Compare -> Runs -> Compare with the same selection: Streamlit dropped the widgets'
    state on the way, the unchanged link must fill them again."""
    a, b, c = three_runs(store)
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    for _ in range(2):
        at.query_params.clear()
        at.query_params.update(runs=f"{a.id},{c.id}", x="step")
        at.switch_page("../pages/compare.py").run()
        assert not at.exception, at.exception
        assert at.multiselect(key="compare.runs").value == [a.id, c.id]
        assert at.radio(key="compare.x").value == "step"
        at.query_params.clear()
        at.switch_page("../pages/runs.py").run()
        assert not at.exception
