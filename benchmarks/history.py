"""How the store holds up with a long history: a SQLite store with thousands of runs.

    python -m benchmarks.history [--runs 2000] [--repeats 25] [--keep DIR]

Builds a store (a SQLite file in a temp dir, schema by open_store, rows by raw executemany in
big transactions) with ``--runs`` runs, each with 30 params, 10 metric keys x 500 steps (10 M
metric rows at 2000 runs), the latest value of each key, 100 per-class results, some labels and
stars; then times, through the Store API, the median over ``--repeats`` of:

- runs_page_query_ms: one Runs page, query_runs with 50 rows, a filter and a sort on a metric
  (target < 50);
- curves_10_runs_ms: curves() of one key for 10 runs with max_points=2000 (target < 100);
- sqlite_mb_per_million_metric_rows: the file size over the number of metric rows.

Prints a table, then ``name: value`` lines. Run it under the bench lock:
    flock /tmp/taillab-bench.lock .venv/bin/python -m benchmarks.history --runs 2000
"""
from __future__ import annotations

import argparse
import math
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from engine.store import RunQuery, open_store

KEYS = ["train/step_loss", "train/loss", "val/loss", "val/acc", "val/bal_acc", "val/many_acc",
        "val/medium_acc", "val/few_acc", "lr", "grad_norm"]  # 10 keys x STEPS points a run
STEPS = 500
TEST_KEYS = ["test/acc", "test/bal_acc", "test/many_acc", "test/medium_acc", "test/few_acc",
             "test/macro_f1", "test/ece"]
PARAMS = 30
CLASSES = 100
MODELS = ["resnet18", "resnet32", "small_cnn", "mobilenet_v2", "compact_cnn"]
LOSSES = ["ce", "ldam", "focal", "balanced_softmax"]
STATUSES = ["finished"] * 8 + ["failed", "cancelled"]
LABELS = ["baseline", "ablation", "seed-1", "seed-2", "tail", "paper"]
T0 = datetime(2026, 1, 1)


def build(path: Path, runs: int, seed: int = 0) -> tuple[float, int]:
    """(seconds, metric rows) to fill a fresh store at ``path``."""
    open_store(f"sqlite:///{path}").engine.dispose()  # the schema, by the migrations
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")  # a benchmark build: durability is not the point
    t = time.perf_counter()
    n_metrics = 0
    for chunk in range(0, runs, 100):
        run_rows, params, metrics, latest, classes, labels = [], [], [], [], [], []
        for i in range(chunk, min(chunk + 100, runs)):
            rid = uuid.UUID(int=rng.getrandbits(128)).hex
            created = T0 + timedelta(minutes=173 * i)
            started = created + timedelta(seconds=5)
            ended = started + timedelta(seconds=rng.randint(60, 7200))
            model, loss = rng.choice(MODELS), rng.choice(LOSSES)
            status = rng.choice(STATUSES)
            best = rng.uniform(0.3, 0.95)
            run_rows.append((rid, f"run-{i:05d}-{model}-{loss}", "train", status, "{}",
                             str(created), str(started), str(ended), int(rng.random() < 0.05),
                             "" if rng.random() < 0.8 else f"notes for run {i}", best,
                             rng.randint(1, 50), model, loss, 0, STEPS))
            params += [(rid, f"param_{k:02d}", str(rng.random())) for k in range(PARAMS - 2)]
            params += [(rid, "model", model), (rid, "loss", loss)]
            ts0 = created.timestamp()
            for key in KEYS:
                level = rng.uniform(0.2, 0.9)
                for step in range(1, STEPS + 1):
                    v = level + 0.05 * math.sin(step / 7) + rng.gauss(0, 0.01)
                    metrics.append((rid, key, step, step / 10, v, 0, ts0 + step))
                latest.append((rid, key, v, STEPS, ts0 + STEPS))
            for key in TEST_KEYS:  # the final metrics the Runs page shows and sorts on
                latest.append((rid, key, rng.uniform(0.02, 0.2) if key == "test/ece" else
                               rng.uniform(0.2, 0.95), STEPS, ts0 + STEPS))
            classes += [(rid, "test", c, f"class_{c:03d}", 500 - 4 * c, 50, rng.randint(0, 50),
                         "many" if c < 30 else ("few" if c > 70 else "medium"))
                        for c in range(CLASSES)]
            labels += [(rid, lb) for lb in rng.sample(LABELS, rng.randint(0, 2))]
        with con:
            con.executemany(
                "INSERT INTO runs (id, name, kind, status, config_json, created_at, started_at, "
                "ended_at, starred, notes, best_val, best_epoch, model, loss, cancel_requested, "
                "total_steps) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", run_rows)
            con.executemany("INSERT INTO params (run_id, key, value) VALUES (?,?,?)", params)
            con.executemany("INSERT INTO metrics (run_id, key, step, epoch, value, is_nan, "
                            "timestamp) VALUES (?,?,?,?,?,?,?)", metrics)
            con.executemany("INSERT INTO latest_metrics (run_id, key, value, step, timestamp) "
                            "VALUES (?,?,?,?,?)", latest)
            con.executemany('INSERT INTO class_results (run_id, split, class_index, class_name, '
                            'train_count, support, correct, "group") VALUES (?,?,?,?,?,?,?,?)',
                            classes)
            con.executemany("INSERT INTO run_labels (run_id, label) VALUES (?,?)", labels)
        n_metrics += len(metrics)
        print(f"  built {min(chunk + 100, runs)}/{runs} runs, {n_metrics / 1e6:.1f} M metric "
              f"rows, {time.perf_counter() - t:.0f} s", flush=True)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return time.perf_counter() - t, n_metrics


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm: the first call pays for imports and the page cache
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--keep", type=Path, default=None, help="build here and keep the database")
    args = ap.parse_args(argv)
    if args.runs < 10:
        ap.error("--runs must be at least 10 (curves are timed over 10 runs).")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="taillab-history-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "taillab.db"
    try:
        if path.exists():
            raise SystemExit(f"{path} exists already; pass an empty --keep folder.")
        print(f"building {args.runs} runs in {path} ...", flush=True)
        build_s, n_metrics = build(path, args.runs)
        size_mb = path.stat().st_size / 1e6
        store = open_store(f"sqlite:///{path}")
        ids = [r for r, in sqlite3.connect(path).execute("SELECT id FROM runs")]
        rng = random.Random(1)

        page_q = RunQuery(models=("resnet18",), statuses=("finished",),
                          sort="metric:test/bal_acc", limit=50)
        cases = [
            ("runs_page_query_ms", "model + status filter, sort on test/bal_acc, 50 rows", 50,
             lambda: store.query_runs(page_q)),
            ("runs_page_last_page_ms", "the same, offset to the last page", None,
             lambda: store.query_runs(RunQuery(models=("resnet18",), statuses=("finished",),
                                               sort="metric:test/bal_acc", limit=50,
                                               offset=max(0, args.runs // 8 - 50)))),
            ("runs_page_text_search_ms", "text search 'notes for run 1' + labels, sort best_val",
             None, lambda: store.query_runs(RunQuery(text="notes for run 1", labels=("tail",),
                                                     sort="best_val"))),
            ("runs_page_unfiltered_ms", "no filter, newest first", None,
             lambda: store.query_runs(RunQuery())),
            ("facets_ms", "facets() for the filter widgets", None, store.facets),
            ("curves_10_runs_ms", "curves() of val/bal_acc for 10 runs, max_points=2000", 100,
             lambda: store.curves(rng.sample(ids, 10), "val/bal_acc", max_points=2000)),
            ("curves_10_runs_time_ms", "the same with x='time'", None,
             lambda: store.curves(rng.sample(ids, 10), "val/bal_acc", x="time", max_points=2000)),
        ]
        results = {}
        print(f"\n{'measure':28} {'median ms':>10} {'target':>7}  what")
        for name, what, target, fn in cases:
            ms, out = timed(fn, args.repeats)
            results[name] = ms
            print(f"{name:28} {ms:10.1f} {('< ' + str(target)) if target else '':>7}  {what}")
        page = store.query_runs(page_q)
        assert len(page.runs) == min(50, page.total) and page.total > 0, (len(page.runs), page.total)
        vals = [r.latest.get("test/bal_acc") for r in page.runs]
        assert vals == sorted(vals, reverse=True), "page not sorted"
        results["sqlite_mb_per_million_metric_rows"] = size_mb / (n_metrics / 1e6)
        print(f"\nruns {args.runs}, metric rows {n_metrics:,}, file {size_mb:.0f} MB "
              f"(all tables), build {build_s:.0f} s\n")
        print(f"runs: {args.runs}")
        print(f"metric_rows: {n_metrics}")
        print(f"build_s: {build_s:.0f}")
        print(f"sqlite_file_mb: {size_mb:.0f}")
        for name, v in results.items():
            print(f"{name}: {v:.1f}")
        store.engine.dispose()
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
