"""End to end in headless Chromium: open the dashboard, train, watch it live, predict an upload.

In CI (CI=true) a missing Chromium is a failure, not a skip.
"""
import re

import pytest
from PIL import Image

from tests.e2e import browser, dashboard, require_chromium, wait_idle

pytestmark = pytest.mark.browser

sync_api = require_chromium()


def _number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def test_train_watch_live_and_predict(tmp_path):
    home = tmp_path / "ws"
    home.mkdir()
    digit = tmp_path / "digit.png"
    from engine.data.builtin import load_builtin
    Image.fromarray(load_builtin("mnist").test_images[0]).save(digit)

    with dashboard(home) as url, sync_api.sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_text("Imbalance ratio", exact=True).first.wait_for(timeout=90_000)
        wait_idle(page)
        # a smaller long-tailed MNIST so the run takes seconds
        _number(page, "Largest class (0 = all it can have)", 300)
        page.get_by_text("Training images").first.wait_for()
        assert page.locator(".js-plotly-plot").count() >= 1  # the histogram

        page.get_by_role("link", name=re.compile("Train")).first.click()
        page.get_by_role("button", name=re.compile("Train$")).wait_for(timeout=30_000)
        wait_idle(page)
        _number(page, "Epochs", 6)
        _number(page, "Batch size", 32)
        page.get_by_role("button", name=re.compile("Train$")).click()

        # live: the progress text changes by itself while the run trains
        progress = page.get_by_text(re.compile(r"step \d+ / \d+"))
        progress.first.wait_for(timeout=90_000)
        first = progress.first.inner_text()
        page.wait_for_function(
            "t => [...document.querySelectorAll('p,div')].some(e => /step \\d+ \\/ \\d+/.test(e.innerText) && !e.innerText.includes(t))",
            arg=first, timeout=60_000)
        page.get_by_text("Training loss").first.wait_for(timeout=30_000)
        # a second dashboard (another browser session) sees the same live run
        other = b.new_context().new_page()
        other.goto(url + "/train")
        other.get_by_text(re.compile(r"step \d+ / \d+")).first.wait_for(timeout=60_000)
        run_title = page.get_by_text(re.compile("compact_cnn-mnist")).first.inner_text()  # auto: compact CNN
        assert run_title in other.get_by_text(re.compile("compact_cnn-mnist")).first.inner_text()
        other.close()
        page.get_by_text(re.compile("finished after")).first.wait_for(timeout=240_000)

        page.get_by_role("link", name=re.compile("Predict")).first.click()
        page.locator('input[type="file"]').set_input_files(str(digit))
        page.get_by_text(re.compile(r"\d+\.\d%")).first.wait_for(timeout=60_000)
        wait_idle(page)
        assert page.locator(".js-plotly-plot").count() >= 1  # the top-5 bar chart
        page.screenshot(path=str(tmp_path / "predict.png"))
        b.close()
