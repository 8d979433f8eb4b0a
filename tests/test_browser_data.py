"""Data studio in headless Chromium: drop a zip of class folders, see the long-tail histogram;
a zip that tries to write outside its folder is refused with a readable message.

In CI (CI=true) a missing Chromium is a failure, not a skip.
"""
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e import browser, dashboard, require_chromium, wait_idle

pytestmark = pytest.mark.browser

sync_api = require_chromium()


def _png(colour, rng) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(rng.normal(colour, 30, (28, 28, 3)), 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _zip(path: Path, counts: dict[str, int]) -> Path:
    """A zip as "Compress folder" makes it: one top-level folder around the class folders."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for c, (name, n) in enumerate(counts.items()):
            for i in range(n):
                z.writestr(f"critters/{name}/{i:03d}.png", _png((60 * c, 200 - 40 * c, 90), rng))
        z.writestr("__MACOSX/critters/._ant", b"noise")
    return path


def test_drop_a_zip_and_see_the_histogram(tmp_path):
    home = tmp_path / "ws"
    home.mkdir()
    good = _zip(tmp_path / "critters.zip", {"ant": 40, "bee": 15, "cat": 6, "dog": 2})
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ant/001.png", _png((1, 2, 3), np.random.default_rng(1)))
        z.writestr("../../escape.png", b"x")

    with dashboard(home) as url, sync_api.sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.get_by_text("Upload a zip", exact=True).wait_for(timeout=90_000)
        wait_idle(page)
        page.get_by_text("Upload a zip", exact=True).click()
        wait_idle(page)

        page.locator('input[type="file"]').set_input_files(str(evil))
        page.get_by_text("leaves its folder").first.wait_for(timeout=60_000)
        assert not (home / "datasets" / "evil").exists() and not (tmp_path / "escape.png").exists()

        page.locator('input[type="file"]').set_input_files(str(good))
        page.get_by_text("Imbalance ratio", exact=True).first.wait_for(timeout=90_000)
        wait_idle(page)
        hist = page.locator(".js-plotly-plot").first
        hist.wait_for(timeout=30_000)
        # every class is a bar, largest first
        assert hist.locator("g.xtick text").all_text_contents() == ["ant", "bee", "cat", "dog"]
        assert page.get_by_text("classes hold 80% of the images").count() >= 1
        imported = [d.name for d in (home / "datasets").iterdir() if not d.name.startswith(".")]
        assert len(imported) == 1 and imported[0].startswith("critters-")
        assert sorted(d.name for d in (home / "datasets" / imported[0]).iterdir()) == ["ant", "bee", "cat", "dog"]
        page.screenshot(path=str(tmp_path / "data-zip.png"), full_page=True)
        b.close()
