"""Dashboard first render in headless Chromium: server start, and page load to the histogram.

    python -m benchmarks.dashboard_render [--repeats 4] [--train-after 5]

Each repeat starts a fresh server and browser page, opens the Data page and waits until the
long-tail histogram is drawn. Repeat 0 uses a new, empty workspace (the built-in MNIST pickle is
decoded and cached: a user's very first start); later repeats reuse it (every later start).
Then, after ``--train-after`` seconds on the Data page (0: skip), it opens Train from the sidebar
and times it until its model choice is drawn (the first page to need torch).
Prints a table, then `dashboard_server_start_s`, `dashboard_first_render_cold_s` (repeat 0),
`dashboard_first_render_s` (median of the warm repeats) and `dashboard_train_page_s` (median).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.e2e import browser, dashboard


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--train-after", type=float, default=5.0,
                    help="seconds on the Data page before opening Train (0: do not open it)")
    args = ap.parse_args()
    rows = []
    with sync_playwright() as p:
        b = browser(p)
        home = Path(tempfile.mkdtemp(prefix="taillab-render-"))
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            with dashboard(home) as url:
                t_server = time.perf_counter() - t0
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                t1 = time.perf_counter()
                page.goto(url)
                page.locator(".js-plotly-plot .bars").first.wait_for(timeout=120_000)
                t_render = time.perf_counter() - t1
                t_train = float("nan")
                if args.train_after > 0:
                    page.wait_for_timeout(args.train_after * 1000)
                    t2 = time.perf_counter()
                    page.locator("[data-testid=stSidebarNav] a", has_text="Train").first.click()
                    page.locator("[data-testid=stSelectbox]", has_text="Model").first.wait_for(timeout=120_000)
                    t_train = time.perf_counter() - t2
                rows.append((t_server, t_render, t_train))
                page.close()
        b.close()
    print(f"{'repeat':>6}  {'server start s':>14}  {'first render s':>14}  {'train page s':>12}")
    for i, (s, r, t) in enumerate(rows):
        print(f"{i:>6}  {s:>14.2f}  {r:>14.2f}  {t:>12.2f}")
    print(f"dashboard_server_start_s: {statistics.median(s for s, _, _ in rows):.2f}")
    print(f"dashboard_first_render_cold_s: {rows[0][1]:.2f}")
    print(f"dashboard_first_render_s: {statistics.median(r for _, r, _ in rows[1:] or rows):.2f}")
    if args.train_after > 0:
        print(f"dashboard_train_page_s: {statistics.median(t for _, _, t in rows):.2f}")


if __name__ == "__main__":
    main()
