"""End to end in headless Chromium on a workspace of runs written into the store: search narrows
the table, two rows ticked in the grid give "Compare 2 runs", which opens /compare?runs=A,B with
exactly those runs; one run's "Clone settings into Train" opens Train filled from it.

In CI (CI=true) a missing Chromium is a failure, not a skip.
"""
import pytest

from tests.e2e import browser, dashboard, require_chromium, wait_idle

pytestmark = pytest.mark.browser

sync_api = require_chromium()
ROW = 35  # the grid's row height in px (the header row too)


def _tick(page, box, row):
    page.mouse.click(box["x"] + 18, box["y"] + ROW * (row + 1) + ROW / 2)  # the row's checkbox
    wait_idle(page)


def test_search_compare_and_clone_in_the_browser(store, workspace):
    from engine.config import DataConfig, TrainConfig, to_dict
    ids = []
    for i, (model, loss) in enumerate([("compact_cnn", "ce"), ("small_cnn", "focal"), ("compact_cnn", "ldam")]):
        cfg = TrainConfig(data=DataConfig(source="builtin:mnist", image_size=28, channels=1), model=model,
                          loss=loss, optimizer="adamw", lr=0.002, batch_size=64, weight_decay=0.05, seed=i)
        run = store.create_run(to_dict(cfg), name=f"run-{model}-{loss}")
        store.log_metrics(run.id, {"test/acc": 0.8 + i / 100, "test/bal_acc": 0.7 + i / 100}, step=1)
        store.end_run(run.id, "finished")
        ids.append(run.id)
    with dashboard(workspace) as url, sync_api.sync_playwright() as p:
        br = browser(p)
        page = br.new_page(viewport={"width": 1500, "height": 1400})
        page.goto(url + "/runs")
        grid = page.locator("[data-testid='stDataFrame']").first
        grid.wait_for(timeout=90_000)
        wait_idle(page)
        assert page.get_by_text("page 1 of 1 · 3 runs").count() == 1
        search = page.get_by_placeholder("name, id, notes or tag")
        search.fill("focal")
        search.press("Enter")
        page.get_by_text("page 1 of 1 · 1 run", exact=True).wait_for(timeout=30_000)
        search.fill("")
        search.press("Enter")
        page.get_by_text("page 1 of 1 · 3 runs").wait_for(timeout=30_000)
        wait_idle(page)
        box = grid.bounding_box()
        _tick(page, box, 0)  # newest first: ids[2], ids[1], ids[0]
        _tick(page, box, 1)
        button = page.get_by_role("button", name="Compare 2 runs")
        button.wait_for(timeout=30_000)
        button.click()
        page.wait_for_url("**/compare?runs=*", timeout=60_000)
        assert page.url.endswith(f"/compare?runs={ids[2]}%2C{ids[1]}") or \
            page.url.endswith(f"/compare?runs={ids[2]},{ids[1]}")

        page.goto(url + "/runs")
        grid = page.locator("[data-testid='stDataFrame']").first
        grid.wait_for(timeout=90_000)
        wait_idle(page)
        _tick(page, grid.bounding_box(), 1)  # run-small_cnn-focal
        page.get_by_role("button", name="📋 Clone settings into Train").click()
        page.wait_for_url("**/train", timeout=60_000)
        page.get_by_text("Settings cloned from run run-small_cnn-focal").wait_for(timeout=60_000)
        br.close()
