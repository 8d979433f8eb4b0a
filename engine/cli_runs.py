"""``taillab runs``: the run history from a shell.

    taillab runs list [--json]
    taillab runs show RUN_ID [--json]
    taillab runs cancel RUN_ID
    taillab runs delete RUN_ID
    taillab runs compare ID ID ... [--baseline ID] [--json]   (2 to 20 runs; see docs/compare.md)
"""
from __future__ import annotations

import json
import math


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _nan_none(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _best(run) -> float | None:
    return run.best_val


def run_summary(run) -> dict:
    cfg = run.config
    return {
        "id": run.id, "name": run.name, "status": run.status,
        "dataset": cfg.get("data", {}).get("source"), "model": cfg.get("model"),
        "created_at": run.created_at.isoformat() + "Z",
        "duration_s": None if run.duration_s is None else round(run.duration_s, 1),
        "best_val_bal_acc": _best(run), "test_acc": _nan_none(run.latest.get("test/acc")),
        "test_bal_acc": _nan_none(run.latest.get("test/bal_acc")), "error": run.error,
    }


# --- compare -----------------------------------------------------------------------------------

def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}"


def _cell(label: str, v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f}" if label == "ECE" else _pct(v))


def format_comparison(c) -> str:
    """The metrics table (runs as rows, the best of each column marked *) and the settings diff."""
    from engine.compare import FINAL_METRICS
    labels = list(FINAL_METRICS)
    names = [r.label + (" (baseline)" if r.id == c.baseline else "") for r in c.runs]
    groups = [(c.groups[gi].label, stats) for gi, stats in c.group_metrics.items()]
    width = min(max(len(n) for n in names + [g for g, _ in groups]) + 2, 48)
    lines = ["Final test metrics (%; ECE as a fraction, lower is better). * best in its column.",
             f"{'run':{width}}" + "".join(f"{lab:>12}" for lab in labels)]
    for name, r in zip(names, c.runs):
        cells = [_cell(lab, c.metrics[r.id][lab]) + ("*" if r.id in c.best[lab] else " ")
                 for lab in labels]
        lines.append(f"{name[:width - 1]:{width}}" + "".join(f"{x:>12}" for x in cells))
    if groups:
        lines.append("Runs that differ only in seed, mean ± std (sample std over the seeds):")
    for label, stats in groups:
        lines.append(f"{label[:width - 1]:{width}}" + "".join(f"{_stat(lab, stats[lab]):>11} "
                                                              for lab in labels))
    for w in c.warnings:
        lines.append(f"warning: {w}")
    for m in c.missing:
        lines.append(f"note: run {m} no longer exists")
    lines.append("")
    if not c.settings:
        lines.append("Settings: identical (apart from names and machine settings).")
    else:
        lines.append("Settings that differ:")
        kw = max(len(k) for k, _ in c.settings) + 2
        lines.append(f"{'setting':{kw}}" + "".join(f"{r.label[:20]:>22}" for r in c.runs))
        for key, vals in c.settings:
            lines.append(f"{key:{kw}}" + "".join(f"{('-' if v is None else v)[:20]:>22}" for v in vals))
    lines.extend(c.class_notes)
    return "\n".join(lines)


def _stat(label: str, s) -> str:
    if s.mean is None:
        return "-"
    if label == "ECE":
        return f"{s.mean:.3f}" + ("" if s.std is None else f"±{s.std:.3f}")
    return f"{s.mean * 100:.1f}" + ("" if s.std is None else f"±{s.std * 100:.1f}")


def cmd_runs(args) -> int:
    from engine import jobs
    from engine.store import open_store

    store = open_store()
    ids = args.run_ids or []
    if args.action == "list":
        rows = [run_summary(r) for r in store.list_runs()]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'id':32}  {'status':9}  {'model':12}  {'dataset':22}  {'val bal':7}  {'test acc':8}  name")
            for r in rows:
                print(f"{r['id']:32}  {r['status']:9}  {r['model'] or '':12}  {(r['dataset'] or '')[:22]:22}  "
                      f"{_fmt(r['best_val_bal_acc']):7}  {_fmt(r['test_acc']):8}  {r['name']}")
        return 0
    if args.action == "queue":
        if args.max is not None:
            jobs.set_max_concurrent(args.max)
        jobs.dispatch(store)
        waiting = store.waiting_runs()
        active = [r for r in store.list_runs(limit=200) if r.status in ("queued", "running") and not r.waiting]
        if args.json:
            print(json.dumps({"max_concurrent": jobs.max_concurrent(), "training": [r.id for r in active],
                              "waiting": [r.id for r in waiting]}, indent=2))
            return 0
        print(f"runs at once: {jobs.max_concurrent()}  (taillab runs queue --max N)")
        for r in active:
            print(f"  training  {r.id}  {r.name}")
        for i, r in enumerate(waiting):
            print(f"  {i + 1:>8}  {r.id}  {r.name}")
        if not active and not waiting:
            print("  nothing training or waiting")
        return 0
    if args.action == "compare":
        from engine.compare import compare
        c = compare(store, ids, baseline=args.baseline, min_prefix=6)
        print(json.dumps(c.to_dict(), indent=2) if args.json else format_comparison(c))
        return 0
    if not ids:
        raise SystemExit(f"taillab runs {args.action}: give a RUN_ID")
    if len(ids) > 1:
        raise SystemExit(f"taillab runs {args.action}: give one RUN_ID (several only for compare)")
    run_id = ids[0]
    if args.action == "show":
        run = store.get_run(run_id)
        out = run_summary(run) | {"config": run.config, "latest": {k: _nan_none(v) for k, v in run.latest.items()}}
        print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    elif args.action == "cancel":
        waiting = store.get_run(run_id).waiting
        jobs.cancel(store, run_id)
        print(f"removed {run_id} from the queue" if waiting else f"cancel requested for {run_id}")
    elif args.action == "move":
        if args.to is None:
            raise SystemExit("taillab runs move RUN_ID --to K: K = 1 starts next")
        store.move_in_queue(run_id, args.to - 1)
        print(f"{run_id} is now number {args.to} in the queue")
    elif args.action == "resume":
        run = jobs.resume(store, run_id)
        print(f"resuming {run.name} ({run_id}) from its last checkpoint"
              + (" — waiting in the queue" if run.waiting else ""))
    elif args.action == "delete":
        jobs.delete(store, run_id)
        print(f"deleted {run_id}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("runs", help="list, show, cancel, delete, compare, resume or queue runs",
                       epilog="compare: 2 to 20 run ids (or unique prefixes of at least 6 "
                              "characters); prints the final metrics (best per column marked *) "
                              "and the settings that differ. queue: what trains and what waits "
                              "(--max N runs at once); move RUN_ID --to K reorders a waiting run; "
                              "cancel removes a waiting run from the queue; resume continues a "
                              "failed, cancelled or killed run from its last checkpoint.")
    p.add_argument("action", choices=["list", "show", "cancel", "delete", "compare", "resume", "queue", "move"])
    p.add_argument("--max", type=int, default=None, help="queue: how many runs train at once (default 1)")
    p.add_argument("--to", type=int, default=None, help="move: the waiting run's new place (1 = next)")
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    p.add_argument("--json", action="store_true")
    p.add_argument("--baseline", help="compare: the run per-class changes are measured against "
                                      "(default: the first)")
    p.set_defaults(func=cmd_runs)
