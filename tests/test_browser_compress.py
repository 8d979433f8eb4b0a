"""End to end in headless Chromium: open Compress on a trained run, make an int8 variant by
clicking, and see its row (table CSV, Pareto scatter, "What compression forgot"); then predict a
digit with the original and the variant side by side.

In CI (CI=true) a missing Chromium is a failure, not a skip.
"""
import csv
import io
import re
import shutil

import pytest

from tests.e2e import browser, dashboard, require_chromium, wait_idle

pytestmark = pytest.mark.browser

sync_api = require_chromium()


def test_make_int8_variant_and_see_its_row(trained_run, tmp_path):
    src, run_id = trained_run
    home = tmp_path / "ws"
    shutil.copytree(src, home)  # variants made here stay out of the shared fixture

    with dashboard(home) as url, sync_api.sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1400, "height": 2600})
        page.goto(url + "/compress")
        page.get_by_text("Make a variant").first.wait_for(timeout=90_000)
        wait_idle(page, 180_000)
        picked = page.get_by_role("combobox", name=re.compile("Run to compress")).input_value()
        assert "fixture-run" in picked and run_id[:8] in picked, picked  # the run picked by default
        page.get_by_text("No variant yet").first.wait_for()

        page.get_by_role("tab", name=re.compile("int8 static")).click()
        page.get_by_role("button", name=re.compile(r"Quantize to int8 \(static\)")).click()
        page.get_by_text("What compression forgot").first.wait_for(timeout=240_000)
        wait_idle(page, 240_000)
        page.wait_for_selector(".js-plotly-plot", timeout=30_000)

        # the variant's point on the speed / accuracy scatter, and the variant shown below
        scatter = page.locator(".js-plotly-plot").first
        assert "int8 static" in scatter.inner_text() and "original" in scatter.inner_text()
        shown = page.get_by_role("combobox", name=re.compile("Variant, against the original")).input_value()
        assert "fixture-run-int8-static · int8 static" in shown, shown

        # the table's rows, through its CSV download
        with page.expect_download() as dl:
            page.get_by_role("button", name=re.compile("Download the table")).click()
        rows = list(csv.DictReader(io.StringIO(open(dl.value.path()).read())))
        assert [r["method"] for r in rows][0] == "original" and len(rows) == 2
        q = rows[1]
        assert q["format"] == "onnx-int8" and q["method"].startswith("int8 static")
        assert q["status"] == "finished" and q["parent_run_id"] == run_id
        assert int(q["size_bytes"]) < int(rows[0]["size_bytes"]) / 2
        assert float(q["agreement"]) >= 0.95 and float(q["latency_ms_p50"]) > 0
        page.screenshot(path=str(tmp_path / "compress.png"), full_page=True)

        # Predict: the original and its int8 variant side by side on one digit, each with its latency
        from PIL import Image

        from engine.data.builtin import load_builtin
        digit = tmp_path / "digit.png"
        Image.fromarray(load_builtin("mnist").test_images[0]).save(digit)  # a 7
        page.get_by_role("link", name=re.compile("Predict")).first.click()
        page.get_by_text("Drop one or more images").first.wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("combobox", name=re.compile("Side by side")).click()
        page.get_by_role("option", name=re.compile("int8-static")).first.click()
        wait_idle(page)
        page.keyboard.press("Escape")
        page.locator('input[type="file"]').set_input_files(str(digit))
        page.get_by_text(re.compile(r"models agree|models disagree")).first.wait_for(timeout=60_000)
        assert page.get_by_text(re.compile(r"⏱ \d+\.\d\d ms per image")).count() == 2
        assert page.get_by_text("ONNX int8", exact=False).count() >= 1
        assert page.get_by_text(re.compile(r"All 2 models agree")).count() == 1
        b.close()
