"""The Compare page for 10 runs in headless Chromium, from opening the link to every chart drawn.

    python -m benchmarks.compare_render [--runs 10] [--repeats 4] [--shots DIR]

Builds a workspace whose runs are written straight into the store (no training): MNIST-LT-like
class counts (10 classes, 1000 ... 10 training images), a val/bal_acc and val/acc curve over 20
epochs, train/step_loss every 10 steps (400 points), final test metrics and per-class test
results; runs come in seed pairs, so seed bands are drawn too. One server; each repeat opens
/compare?runs=... in a fresh page and waits for the four charts (curves, heatmap, bars,
parallel coordinates). Repeat 0 is the first page load of the server (cold); the figure printed,
`compare_page_10_runs_s`, is the median of the later repeats (target < 2 s). The page title's
time is printed too: what is left after it is the page's own script and plotly.js in Chromium.
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

CLASSES = [("zero", 1000), ("one", 599), ("two", 359), ("three", 215), ("four", 129),
           ("five", 77), ("six", 46), ("seven", 28), ("eight", 17), ("nine", 10)]
LOSSES = ["ce", "logit_adjusted", "focal", "ldam", "balanced_softmax", "ce_drw", "cb_focal",
          "ce", "logit_adjusted", "focal"]


def build(home: Path, n: int) -> list[str]:
    """Write ``n`` finished runs into the store at ``home``; return their ids (seed pairs:
    runs 2k and 2k+1 differ only in seed)."""
    import os
    os.environ["TAILLAB_HOME"] = str(home)
    from engine.store import open_store
    store = open_store()
    ids = []
    for i in range(n):
        pair, seed = divmod(i, 2)
        rnd = random.Random(i)
        loss = LOSSES[pair % len(LOSSES)]
        lr = [0.1, 0.05, 0.2, 0.01, 0.1][pair % 5]
        cfg = {"model": "compact_cnn", "loss": loss, "lr": lr, "seed": seed, "epochs": 20,
               "batch_size": 64 if pair % 2 else 128, "sampler": "instance",
               "data": {"source": "builtin:mnist", "imbalance_ratio": 100.0, "seed": 0}}
        run = store.create_run(dict(cfg, name=f"{loss}-lr{lr}"), name=f"{loss}-lr{lr}")
        skill = 0.55 + 0.04 * pair + rnd.uniform(-0.02, 0.02)
        for step in range(10, 4001, 10):
            store.log_metrics(run.id, {"train/step_loss": 2.3 * math.exp(-step / 900) + 0.1
                                       + rnd.uniform(0, 0.08)}, step=step, epoch=step / 200)
        for epoch in range(1, 21):
            v = skill * (1 - math.exp(-epoch / 4)) + rnd.uniform(-0.01, 0.01)
            store.log_metrics(run.id, {"val/bal_acc": v, "val/acc": min(0.99, v + 0.15),
                                       "train/loss": 2.0 * math.exp(-epoch / 5)},
                              step=epoch * 200, epoch=epoch)
        recalls = [min(1.0, max(0.0, 0.97 - (1 - skill) * k / 5 + rnd.uniform(-0.05, 0.05)))
                   for k in range(len(CLASSES))]
        support = 100
        correct = [round(r * support) for r in recalls]
        acc = [c / support for c in correct]
        store.log_metrics(run.id, {
            "test/acc": sum(correct) / (support * len(CLASSES)) + 0.1, "test/bal_acc": sum(acc) / len(acc),
            "test/many_acc": sum(acc[:3]) / 3, "test/medium_acc": sum(acc[3:7]) / 4,
            "test/few_acc": sum(acc[7:]) / 3, "test/macro_f1": sum(acc) / len(acc) - 0.03,
            "test/ece": 0.02 + rnd.uniform(0, 0.08)}, step=4000, epoch=20)
        store.log_class_results(run.id, "test", class_names=[c for c, _ in CLASSES],
                                train_counts=[k for _, k in CLASSES], support=[support] * len(CLASSES),
                                correct=correct, many_threshold=100, few_threshold=20)
        store.end_run(run.id, "finished")
        ids.append(run.id)
    return ids


CHARTS = ("compare.curves", "compare.heatmap", "compare.groups", "compare.parallel")


def wait_drawn(page, timeout: float = 60_000) -> None:
    """Every chart of the page has drawn its plot (plotly's main svg inside each chart)."""
    for key in CHARTS:
        page.locator(f".st-key-{key.replace('.', '-')} .main-svg").first.wait_for(timeout=timeout)


def main() -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e import browser, dashboard, wait_idle
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--shots", type=Path, help="also save a full-page screenshot here")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="taillab-compare-"))
    ids = build(home, args.runs)
    times, titles = [], []
    with dashboard(home) as url, sync_playwright() as p:
        b = browser(p)
        link = f"{url}/compare?runs={','.join(i[:8] for i in ids)}"
        for _ in range(args.repeats):
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            page.goto(link)
            page.wait_for_selector("h1", timeout=60_000)
            t_title = time.perf_counter() - t0
            wait_drawn(page)
            times.append(time.perf_counter() - t0)
            titles.append(t_title)
            page.close()
        if args.shots:  # Streamlit scrolls inside its own container: a tall window shows it all
            page = b.new_page(viewport={"width": 1400, "height": 4200})
            page.goto(link)
            wait_drawn(page)
            wait_idle(page)
            page.wait_for_timeout(1500)
            args.shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.shots / f"compare_{args.runs}.png"))
        b.close()
    print(f"{'repeat':>6}  {'page title s':>12}  {'all charts s':>12}")
    for i, (a, t) in enumerate(zip(titles, times)):
        print(f"{i:>6}  {a:>12.2f}  {t:>12.2f}")
    print(f"compare_page_{args.runs}_runs_cold_s: {times[0]:.2f}")
    print(f"compare_page_{args.runs}_runs_s: {statistics.median(times[1:] or times):.2f}")


if __name__ == "__main__":
    main()
