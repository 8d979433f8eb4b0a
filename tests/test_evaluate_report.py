"""Evaluation of one run (issue 9): the Wilson interval, the per-class report on hand-made logits,
and the Runs page's evaluation view (table, confusion matrix, calibration)."""
import json
import math
import os

import numpy as np
import pytest

from engine.evaluate import class_report, reliability, wilson_interval

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.mark.parametrize("k,n,lo,hi", [
    (3, 3, 0.4385, 1.0),      # z = 1.96: centre (1 + 0.640)/2.280, half 0.640/2.280
    (0, 3, 0.0, 0.5615),
    (1, 2, 0.0945, 0.9055),
    (5, 10, 0.2366, 0.7634),
    (90, 100, 0.8256, 0.9448),
])
def test_wilson_against_hand_values(k, n, lo, hi):
    a, b = wilson_interval(k, n)
    assert a == pytest.approx(lo, abs=1e-4) and b == pytest.approx(hi, abs=1e-4)


def test_wilson_without_trials_is_undefined():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def _logits(preds, C):
    out = np.zeros((len(preds), C), np.float32)
    out[np.arange(len(preds)), preds] = 5.0
    return out


def test_report_on_hand_made_logits():
    # true:  a a a a b b b c c
    # pred:  a a a b b b a a c
    targets = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    preds = np.array([0, 0, 0, 1, 1, 1, 0, 0, 2])
    r = class_report(_logits(preds, 3), targets, ["a", "b", "c"], [300, 50, 3], many=100, few=20)
    assert r.groups == ["many", "medium", "few"]
    assert r.support == [4, 3, 2] and r.predicted == [5, 3, 1]
    # a: tp 3, predicted 5, support 4; b: tp 2 of 3 and 3; c: tp 1 of 1 and 2
    assert r.precision == pytest.approx([3 / 5, 2 / 3, 1.0])
    assert r.recall == pytest.approx([3 / 4, 2 / 3, 1 / 2])
    assert r.f1 == pytest.approx([2 * .6 * .75 / 1.35, 2 / 3, 2 * 1 * .5 / 1.5])
    assert r.confusion.tolist() == [[3, 1, 0], [1, 2, 0], [1, 0, 1]]
    norm = r.normalized_confusion()
    assert norm.sum(1) == pytest.approx([1, 1, 1])
    assert norm[0].tolist() == pytest.approx([.75, .25, 0])
    # c's precision is 1 of 1: the interval says how little that shows
    assert r.precision_ci[2] == pytest.approx(wilson_interval(1, 1))
    assert r.precision_ci[2][0] < 0.25 and r.recall_ci[0] == pytest.approx(wilson_interval(3, 4))
    rows = r.rows()
    assert rows[1]["class"] == "b" and rows[1]["support"] == 3 and rows[1]["group"] == "medium"


def test_report_class_without_test_images_or_predictions():
    targets = np.array([0, 0, 1])
    r = class_report(np.array([0, 0, 0]), targets, ["a", "b", "c"], [5, 5, 5])
    assert r.support == [2, 1, 0] and r.recall[1] == 0.0
    assert math.isnan(r.recall[2]) and math.isnan(r.precision[2]) and math.isnan(r.recall_ci[2][0])
    assert r.normalized_confusion()[2].tolist() == [0, 0, 0]


def test_reliability_bins_match_ece():
    from engine.compress.measure import ece
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=200)
    targets = rng.integers(0, 4, 200)
    rel = reliability(probs, targets, 15)
    n = sum(rel["count"])
    assert n == 200 and len(rel["centre"]) == 15
    e = sum(c / n * abs(a - f) for c, a, f in zip(rel["count"], rel["accuracy"], rel["confidence"]) if c)
    assert e == pytest.approx(ece(probs, targets, 15))


def _eval_table(at):
    return next(d.value for d in at.dataframe if "recall 95% CI" in d.value.columns)


def test_runs_page_shows_the_evaluation(ws, monkeypatch):
    from streamlit.testing.v1 import AppTest
    store, run_id = ws
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file("../dashboard/app.py", default_timeout=180)
    at.switch_page("../pages/runs.py")
    at.run()
    row = list(at.dataframe[0].value["id"]).index(run_id)
    at.session_state["runs.table.0"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="runs.eval.go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = _eval_table(at)
    assert {"precision %", "recall %", "recall 95% CI", "F1 %", "support", "group"} <= set(table.columns)
    assert len(table) == 10 and list(table["group"])[0] == "head"
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any(t.startswith("Confusion matrix (rows sum to 1)") for t in titles)
    assert any(t.startswith("Reliability diagram") for t in titles)
    assert any(m.label == "ECE overall" for m in at.metric)
    assert at.get("image")  # the chosen cell's test images and the most confident mistakes
    # counts instead of shares, and the tail only
    at.toggle(key="runs.eval.norm").set_value(False).run()
    at.segmented_control(key="runs.eval.group").set_value("medium").run()
    assert not at.exception, [e.value for e in at.exception]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Confusion matrix (counts)" in titles
    assert set(_eval_table(at)["group"]) == {"medium"}
    at.segmented_control(key="runs.eval.group").set_value("tail").run()  # counts 300 ... 30: none
    assert any("No tail classes" in i.value for i in at.info) and _eval_table(at).empty
