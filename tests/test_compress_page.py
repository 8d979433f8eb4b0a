"""The Compress page under AppTest, through the real router, on a copy of the trained fixture's
workspace: no run, an int8 variant made by clicking, the guard flagging a damaged variant, an
engine error shown as a message; and the table helpers without Streamlit."""
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts, compress_ui

APP, PAGE = "../dashboard/app.py", "../pages/compress.py"
SPEED_COLUMNS = ["run", "method", "format", "size MB", "params", "MACs M", "sparsity %", "p50 ms",
                 "p95 ms", "img/s", "threads"]
ACCURACY_COLUMNS = ["run", "top-1 %", "balanced %", "head %", "medium %", "tail %", "ECE", "agreement %",
                    "worst drop", "flag", "status"]


def _app(home, monkeypatch) -> AppTest:
    monkeypatch.setenv("TAILLAB_HOME", str(home))
    monkeypatch.delenv("TAILLAB_DB_URL", raising=False)
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    return AppTest.from_file(APP, default_timeout=240)


@pytest.fixture
def ws(trained_run, tmp_path):
    """A private copy of the trained run's workspace: variants made here stay here."""
    home, run_id = trained_run
    copy = tmp_path / "ws"
    shutil.copytree(home, copy)
    return copy, run_id


def _open(at: AppTest) -> AppTest:
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _number(v):
    return None if v == "—" else float(str(v).replace(",", ""))


def _table(at: AppTest) -> pd.DataFrame:
    """The two tables (size and speed; accuracy) as one frame, numbers parsed back from their text."""
    speed = next(d for d in at.dataframe if "p50 ms" in d.value.columns).value
    acc = next(d for d in at.dataframe if "balanced %" in d.value.columns).value
    assert list(speed.columns) == SPEED_COLUMNS and list(acc.columns) == ACCURACY_COLUMNS
    assert list(speed["run"]) == list(acc["run"])
    df = pd.concat([speed, acc.drop(columns=["run"])], axis=1)
    for col in compress_ui.COLUMNS:
        df[col] = [_number(v) for v in df[col]]
    return df


def test_no_finished_run_says_what_to_do(tmp_path, monkeypatch):
    home = tmp_path / "empty"
    home.mkdir()
    at = _open(_app(home, monkeypatch))
    assert at.title[0].value.endswith("Compress")
    assert any("No finished training run yet" in i.value for i in at.info)
    assert not at.dataframe


def test_make_int8_by_clicking_and_see_its_row(ws, monkeypatch):
    home, run_id = ws
    at = _open(_app(home, monkeypatch))
    assert at.selectbox(key="compress.run").value == run_id  # the best (only) finished training run
    df = _table(at)
    assert len(df) == 1 and df["method"][0] == "original"
    assert any("No variant yet" in i.value for i in at.info)

    at.number_input(key="compress.q.calibration").set_value(64)
    at.selectbox(key="compress.q.method").set_value("entropy")
    at.button(key="compress.q.go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    df = _table(at)
    assert len(df) == 2
    orig, q = df.iloc[0], df.iloc[1]
    assert q["run"].endswith("int8-static") and q["format"] == "ONNX int8"
    assert "int8 static" in q["method"] and "entropy on 64" in q["method"]
    assert q["size MB"] < orig["size MB"] / 2  # int8 weights: about a quarter of fp32
    assert q["agreement %"] >= 95 and abs(q["balanced %"] - orig["balanced %"]) < 5
    assert q["p50 ms"] > 0 and q["img/s"] > 0 and q["threads"] >= 1
    assert q["flag"] == ""  # within the guard
    # the new variant is the one "What compression forgot" shows, and nothing was flipped much
    focus = at.selectbox(key=compress_ui.FOCUS_KEY)
    assert focus.options[focus.index].startswith(q["run"] + " · int8 static")
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Agreement"].rstrip("%")) >= 95
    assert any(m.value.startswith("**Test images whose prediction changed:") for m in at.markdown)


def _damaged_variant(home, run_id, lost_class: int, monkeypatch):
    """A variant (kind quantize) whose test predictions are the original's, except that every
    image of ``lost_class`` is given another class: that class loses all its recall."""
    from engine import workspace
    from engine.compress import measure
    from engine.evaluate import summarize
    from engine.store import RunStatus, open_store

    monkeypatch.setenv("TAILLAB_HOME", str(home))
    store = open_store()
    parent = store.get_run(run_id)
    logits, targets = measure.test_outputs(store, run_id)
    bad = logits.copy()
    sel = targets == lost_class
    bad[sel, lost_class] = bad[sel].min(1) - 10.0  # never the top class
    child = store.create_run({"compress": {"method": "synthetic"}, "parent_run_id": run_id,
                              "data": parent.config["data"]}, name="damaged-variant", kind="quantize",
                             parent_run_id=run_id)
    store.mark_running(child.id)
    workspace.run_dir(child.id)
    measure.save_test_outputs(child.id, bad, targets)
    import json
    groups = [r.group for r in sorted(store.class_results(run_id, "test"), key=lambda r: r.class_index)]
    m = summarize(bad.argmax(1), targets, bad.shape[1], groups)
    store.log_metrics(child.id, {f"test/{k}": v for k, v in m.items()} | {"test/agreement": float(
        (bad.argmax(1) == logits.argmax(1)).mean())}, step=0)
    store.set_tags(child.id, {"format": "onnx-int8", "method_label": "synthetic damage", "size_bytes": "1000",
                              "latency_ms_p50": "0.01", "latency_ms_p95": "0.02", "throughput": "9999",
                              "threads": "1", "class_names": parent.tags.get("class_names", json.dumps([]))})
    store.end_run(child.id, RunStatus.FINISHED)
    before = (logits.argmax(1)[sel] == lost_class).mean() * 100
    return child.id, before


def test_guard_flags_a_row_that_loses_a_class(ws, monkeypatch):
    home, run_id = ws
    child_id, lost_points = _damaged_variant(home, run_id, lost_class=9, monkeypatch=monkeypatch)
    assert lost_points > 20
    at = _app(home, monkeypatch)
    _open(at)
    df = _table(at)
    row = df[df["run"] == "damaged-variant"].iloc[0]
    assert row["worst drop"] == pytest.approx(lost_points, abs=0.05)
    assert f"class 9 lost {lost_points:.1f} points (guard: 5)" in row["flag"]
    assert df.iloc[0]["flag"] == ""  # the original is never flagged
    # the variant is shown in "What compression forgot", with the guard broken
    assert at.selectbox(key=compress_ui.FOCUS_KEY).value == child_id
    assert any("Guard broken" in e.value and "class 9" in e.value for e in at.error)
    assert {m.label: m.value for m in at.metric}["Worst class drop"] == f"{lost_points:.1f} pts"
    assert any(f"Lost: was right, now wrong ({int(round(lost_points))})" in o
               for o in at.radio(key="compress.flips").options)
    # a looser guard un-flags it; the row stays
    at.number_input(key=compress_ui.GUARD_KEY).set_value(min(100.0, lost_points + 1)).run()
    df = _table(at)
    assert len(df) == 2 and (df["flag"] == "").all()
    assert not any("Guard broken" in e.value for e in at.error)


def test_engine_error_is_a_message_not_a_traceback(ws, monkeypatch):
    from engine.compress import quantize

    def refuse(*a, **kw):
        raise quantize.QuantizeError("The calibration set has one class only (3).")

    monkeypatch.setattr(quantize, "quantize_run", refuse)
    home, _ = ws
    at = _open(_app(home, monkeypatch))
    at.button(key="compress.q.go").click().run()
    assert not at.exception
    assert any("Cannot quantize this run" in e.value and "one class only" in e.value for e in at.error)
    assert len(_table(at)) == 1


# --- helpers, without Streamlit ------------------------------------------------------------------

def _rows():
    base = dict(sparsity=0.0, threads=2, ece=0.05, status="finished", format="torch", flag=None)
    return [
        dict(base, run_id="p", name="orig", kind="train", method="original", size_bytes=4e6, params=1e6, macs=2e7,
             latency_ms_p50=1.0, latency_ms_p95=1.5, throughput=900, acc=0.9, bal_acc=0.85, many_acc=0.95,
             medium_acc=0.85, few_acc=0.7, agreement=1.0),
        dict(base, run_id="q", name="int8", kind="quantize", method="int8 static (QDQ)", format="onnx-int8",
             size_bytes=1e6, params=1e6, macs=2e7, latency_ms_p50=0.4, latency_ms_p95=0.6, throughput=2500,
             acc=0.89, bal_acc=0.84, many_acc=0.95, medium_acc=0.84, few_acc=0.66, agreement=0.98, ece=0.04),
        dict(base, run_id="c", name="broken", kind="quantize", method="int8 static", format="onnx-int8",
             size_bytes=1e6, params=1e6, macs=2e7, latency_ms_p50=0.3, latency_ms_p95=0.5, throughput=2600,
             acc=0.3, bal_acc=0.2, many_acc=0.4, medium_acc=0.1, few_acc=0.0, agreement=0.3),
    ]


def test_flags_best_cells_and_pareto():
    rows = _rows()
    worst = {"q": (6.0, "7"), "c": (70.0, "2")}
    flags = compress_ui.row_flags(rows, worst, guard_points=5.0)
    assert flags[0] == []
    assert flags[1] == ["class 7 lost 6.0 points (guard: 5)"]
    assert any(f.startswith("accuracy collapsed") for f in flags[2]) and len(flags[2]) == 2
    assert compress_ui.row_flags(rows, worst, guard_points=10.0)[1] == []
    df = compress_ui.table_frame(rows, worst, flags)
    assert df["size MB"].tolist() == [4.0, 1.0, 1.0]
    assert df["worst drop"].isna().tolist() == [True, False, False]  # the original has no drop
    best = compress_ui.best_cells(df)
    assert best["size MB"] == [1, 2] and best["p50 ms"] == [2]
    assert best["balanced %"] == [0] and best["ECE"] == [1] and best["agreement %"] == [1]
    assert "params" not in best  # every row has the same count: nothing to highlight
    assert best["img/s"] == [2]
    html = compress_ui.styled(df, best, flags).to_html()
    assert compress_ui.FLAG_CSS.split(";")[0] in html and compress_ui.BEST_CSS.split(";")[0] in html
    # the Pareto front: the original (most accurate), the int8 one, and the broken fastest one
    assert charts.pareto_front([1.0, 0.4, 0.3, 2.0], [0.85, 0.84, 0.2, 0.5]) == [2, 1, 0]
    fig = charts.pareto_scatter(["original", "int8", "broken"], [1.0, 0.4, 0.3], [0.85, 0.84, 0.2],
                                kinds=["original", "quantize", "quantize"], flagged=[False, True, True])
    assert fig.data[0].name == "Pareto front" and len(fig.data[0].x) == 3
    assert {t for d in fig.data[1:] for t in d.text} == {"original", "int8", "broken"}


def test_default_run_is_the_best_finished_training_run():
    from datetime import datetime

    from engine.store import Run

    def run(i, kind, status, bal, **kw):
        return Run(id=i, name=i, kind=kind, status=status, config={}, created_at=datetime(2024, 1, 1),
                   latest={"test/bal_acc": bal} if bal is not None else {}, **kw)

    runs = [run("q", "quantize", "finished", 0.99, parent_run_id="b"), run("a", "train", "finished", 0.7),
            run("b", "train", "finished", 0.8), run("f", "train", "failed", None), run("p", "posthoc", "finished", 0.95)]
    assert [r.id for r in compress_ui.candidates(runs)] == ["a", "b"]
    assert compress_ui.default_run(runs) == "b"
    assert compress_ui.default_run(runs[3:]) is None


def test_recall_change_bars_in_training_count_order():
    fig = charts.recall_change(["a", "b", "c", "d"], [0.0, -0.1, 0.05, None], ["few", "many", "medium", "few"],
                               [5, 300, 50, 8], guard_points=5)
    assert list(fig.layout.xaxis.categoryarray) == ["b", "c", "d", "a"]
    names = [d.name for d in fig.data]
    assert names == ["head", "medium", "tail"]
    tail = fig.data[2]
    assert list(tail.x) == ["d", "a"] and list(tail.text) == ["n/a", "0"]
    assert fig.data[0].marker.color == charts.GROUP_COLORS["many"]
    assert np.isclose(fig.data[0].y[0], -10.0)
