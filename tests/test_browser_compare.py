"""End to end in headless Chromium: /compare?runs=A,B,C on a workspace with three runs (the
trained fixture run and two runs written into the store) draws the overlay curves and the
per-class heatmap; a chart choice goes into the address bar and the same link in a fresh page
reopens the same view; after a run is deleted the link names it and the other two still compare.

In CI (CI=true) a missing Chromium is a failure, not a skip.
"""
import re

import pytest

from tests.e2e import browser, dashboard, require_chromium, wait_idle
from tests.test_compare import make_run

pytestmark = pytest.mark.browser

sync_api = require_chromium()


def add_runs(store, run_id):
    """Two more runs on the fixture run's classes: one better on the tail, one worse."""
    base = store.class_results(run_id, "test")
    ids = []
    for name, shift, loss in (("tail-helped", +2, "focal"), ("tail-hurt", -2, "ce")):
        classes = {c.class_name: (c.train_count, c.support,
                                  max(0, min(c.support, c.correct + shift * (c.group != "many") * 3)))
                   for c in base}
        ids.append(make_run(store, name, loss=loss, curve=[0.3, 0.5, 0.6, 0.65],
                            metrics={"test/acc": 0.8, "test/bal_acc": 0.7, "test/few_acc": 0.5},
                            classes=classes).id)
    return ids


def drawn(page):
    """Wait for the curves and the heatmap; return (curve traces, heatmap row labels)."""
    page.locator(".st-key-compare-curves .main-svg").first.wait_for(timeout=90_000)
    page.locator(".st-key-compare-heatmap .main-svg").first.wait_for(timeout=90_000)
    wait_idle(page, 90_000)
    traces = page.locator(".st-key-compare-curves .scatterlayer .trace").count()
    rows = page.locator(".st-key-compare-heatmap .yaxislayer-above .ytick").evaluate_all(
        "els => els.map(e => e.textContent)")  # svg text has no innerText
    return traces, rows


def chips(page) -> list[str]:
    return page.locator('[data-testid="stMultiSelect"] [data-tag]').all_inner_texts()


def test_compare_link_reopens_and_survives_a_delete(ws, tmp_path):
    store, run_id = ws
    b_id, c_id = add_runs(store, run_id)
    home = tmp_path / "ws"
    link_path = f"/compare?runs={run_id[:8]},{b_id[:8]},{c_id[:8]}"

    with dashboard(home) as url, sync_api.sync_playwright() as p:
        br = browser(p)
        page = br.new_page(viewport={"width": 1400, "height": 3000})
        page.goto(url + link_path)
        traces, rows = drawn(page)
        assert traces >= 3  # one curve per run
        # the baseline (the first run) is the reference; the other two are the heatmap's rows
        assert sorted(r.split(" · ")[0] for r in rows) == ["tail-helped", "tail-hurt"], rows
        assert len(page.locator(".st-key-compare-heatmap .hm image").all()) == 1
        got = chips(page)
        assert [t.split(" · ")[0] for t in got] == ["fixture-run", "tail-helped", "tail-hurt"], got
        page.screenshot(path=str(tmp_path / "compare.png"))
        assert page.get_by_text("different datasets").count() == 0  # one source, some without a version

        # a chart choice goes to the address bar ...
        page.get_by_text("step", exact=True).click()
        page.wait_for_url(re.compile(r"x=step"), timeout=30_000)
        wait_idle(page)
        shared = page.url
        assert f"runs={run_id[:8]}" in shared
        page.close()

        # ... and the copied link opens the same view in a fresh page
        page = br.new_page(viewport={"width": 1400, "height": 3000})
        page.goto(shared)
        traces, rows = drawn(page)
        assert traces >= 3 and len(rows) == 2
        assert [t.split(" · ")[0] for t in chips(page)] == ["fixture-run", "tail-helped", "tail-hurt"]
        assert page.get_by_role("radio", name="step").is_checked()
        assert "training step" in page.locator(".st-key-compare-curves").inner_text()

        # a run deleted while the comparison is open: a note, the other two still compare
        store.delete_run(c_id)
        page.reload()
        page.get_by_text("no longer exists").first.wait_for(timeout=60_000)
        traces, rows = drawn(page)
        note = page.locator('[data-testid="stAlert"]').filter(has_text="no longer exists").inner_text()
        assert "1 run in this link no longer exists" in note and c_id[:8] in note
        assert "The other 2 are compared" in note
        assert len(rows) == 1 and rows[0].startswith("tail-helped")
        assert [t.split(" · ")[0] for t in chips(page)] == ["fixture-run", "tail-helped"]
        br.close()
