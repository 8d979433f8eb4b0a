"""``taillab compress | compare | export``: the compression lab from a shell.

    taillab compress RUN_ID --quantize int8-static|int8-dynamic [--calibration 256
                    --calibration-method minmax|entropy|percentile --per-channel] [--json]
    taillab compress RUN_ID --prune structured|unstructured --amount A [--finetune-epochs N] [--json]
    taillab compress RUN_ID --distil --student MODEL [--temperature T --alpha A] [--json]
    taillab compare RUN_ID [--json] [--runs 200]
    taillab export RUN_ID [--int8] [--out DIR] [--json]

Each ``compress`` prints the child run id (``--json``: {"run_id": ...}). See docs/compression.md.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

COLUMNS = [("method", "method", 44), ("size", "size_bytes", 9), ("params", "params", 9),
           ("MMACs", "macs", 7), ("sparse", "sparsity", 6), ("p50 ms", "latency_ms_p50", 7),
           ("p95 ms", "latency_ms_p95", 7), ("img/s", "throughput", 8), ("acc", "acc", 6),
           ("bal", "bal_acc", 6), ("head", "many_acc", 6), ("medium", "medium_acc", 6),
           ("tail", "few_acc", 6), ("ECE", "ece", 6), ("agree", "agreement", 6)]


def _cell(key: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if key == "size_bytes":
        return f"{v / 1e6:.2f}MB" if v >= 1e5 else f"{v / 1e3:.1f}kB"
    if key == "macs":
        return f"{v / 1e6:.2f}"
    if key == "params":
        return f"{v / 1e6:.3f}M" if v >= 1e5 else f"{v / 1e3:.1f}k"
    if key in ("latency_ms_p50", "latency_ms_p95"):
        return f"{v:.3f}"
    if key == "throughput":
        return f"{v:.0f}"
    if key in ("ece", "sparsity"):
        return f"{v:.3f}"
    if isinstance(v, float):
        return f"{100 * v:.1f}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    mw = min(72, max([len("method")] + [len(str(r["method"])) for r in rows]))
    columns = [("method", "method", mw)] + COLUMNS[1:]
    lines = ["  ".join(f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, _, w) in enumerate(columns)) + "  run"]
    for r in rows:
        cells = []
        for i, (_, k, w) in enumerate(columns):
            text = _cell(k, r.get(k)) if k != "method" else str(r["method"])[:w]
            cells.append(f"{text:>{w}}" if i else f"{text:<{w}}")
        status = "" if r["status"] == "finished" else f"  [{r['status']}]"
        lines.append("  ".join(cells) + f"  {r['run_id'][:8]}{status}")
    notes = [f"  {r['run_id'][:8]}: {'FLAG ' + r['flag'] if r.get('flag') else r['compress_note']}"
             for r in rows if r.get("flag") or r.get("compress_note")]
    threads = sorted({r["threads"] for r in rows if r.get("threads")})
    lines.append(f"accuracies in % of the test split (head / medium / tail: per-class recall averaged over the "
                 f"group); latency at batch 1, img/s at batch 32, on {', '.join(map(str, threads)) or '?'} "
                 "CPU thread(s): torch eager for torch rows, ONNX Runtime for ONNX rows")
    return "\n".join(lines + notes)


def cmd_compress(args) -> int:
    from engine.store import open_store

    store = open_store()
    chosen = [n for n, on in (("--quantize", args.quantize), ("--prune", args.prune), ("--distil", args.distil)) if on]
    if len(chosen) != 1:
        raise ValueError("Give exactly one of --quantize int8-static|int8-dynamic, --prune "
                         "structured|unstructured --amount A, --distil --student MODEL"
                         + (f" (got {', '.join(chosen)})." if chosen else "."))
    if args.quantize:
        from engine.compress.quantize import quantize_run
        run = quantize_run(store, args.run_id, method=args.quantize, calibration=args.calibration,
                           calibration_method=args.calibration_method, per_channel=args.per_channel,
                           runs=args.runs)
    # --- part Y's hook: pruning and distillation (training child runs through fit) ---------------
    elif args.prune:
        if args.amount is None:
            raise ValueError("--prune needs --amount A (a share between 0 and 1, e.g. 0.5).")
        from engine.compress.prune import launch_prune
        extra = {} if args.finetune_epochs is None else {"finetune_epochs": args.finetune_epochs}
        run = launch_prune(store, args.run_id, method=args.prune, amount=args.amount, **extra)
    else:
        if not args.student:
            raise ValueError("--distil needs --student MODEL (a registry model, e.g. compact_cnn).")
        from engine.compress.distil import launch_distil
        extra = {k: v for k, v in (("temperature", args.temperature), ("alpha", args.alpha)) if v is not None}
        run = launch_distil(store, args.run_id, student=args.student, **extra)
    # ----------------------------------------------------------------------------------------------
    if args.json:
        print(json.dumps({"run_id": run.id}))
    else:
        print(run.id)
        label = run.tags.get("method_label")
        if label:
            print(f"{label}: test balanced accuracy {_cell('bal_acc', run.latest.get('test/bal_acc'))}%, "
                  f"agreement with the parent {_cell('agreement', run.latest.get('test/agreement'))}%")
        if run.tags.get("flag"):
            print(f"FLAG: {run.tags['flag']}")
    return 0


def cmd_compare(args) -> int:
    from engine.compress.measure import compare_rows
    from engine.store import open_store

    rows = compare_rows(open_store(), args.run_id, runs=args.runs)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def cmd_export(args) -> int:
    from engine.compress.package import build_package
    from engine.store import open_store

    quant = {}
    if args.int8 and (args.calibration is not None or args.calibration_method or args.per_channel):
        quant = {"calibration": args.calibration or 256, "calibration_method": args.calibration_method or "minmax",
                 "per_channel": args.per_channel}
    res = build_package(open_store(), args.run_id, int8=args.int8, out_dir=args.out or Path.cwd(), **quant)
    if args.json:
        print(json.dumps(res))
    else:
        print(res["package"])
        print(f"{res['format']} (run {res['run_id']}): top-1 agreement with the torch model "
              f"{_cell('agreement', res['parity_top1'])}%, largest logit difference {res['max_logit_diff']:.3g}; "
              f"test balanced accuracy {_cell('bal_acc', res['bal_acc'])}%; {_cell('size_bytes', res['size_bytes'])}")
        if res.get("flag"):
            print(f"FLAG: {res['flag']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("compress", help="make a smaller / faster variant of a finished run (a child run)",
                       epilog="Quantization runs in seconds in this process; pruning and distillation "
                              "are training runs (workers), like cRT.")
    p.add_argument("run_id")
    g = p.add_argument_group("quantization (ONNX Runtime)")
    g.add_argument("--quantize", choices=["int8-static", "int8-dynamic", "fp16"],
                   help="int8-static: QDQ, calibrated on balanced training images; int8-dynamic: "
                        "linear layers only; fp16 is refused on CPU (explained)")
    g.add_argument("--calibration", type=int, default=256, help="calibration images (default 256)")
    g.add_argument("--calibration-method", choices=["minmax", "entropy", "percentile"], default="minmax")
    g.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    g = p.add_argument_group("pruning")
    g.add_argument("--prune", choices=["structured", "unstructured"])
    g.add_argument("--amount", type=float, help="share to remove, 0 < A < 1")
    g.add_argument("--finetune-epochs", type=int, default=None, help="fine-tuning epochs after pruning")
    g = p.add_argument_group("knowledge distillation")
    g.add_argument("--distil", action="store_true", help="train a student on this run's soft labels")
    g.add_argument("--student", help="student model (a registry name)")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--alpha", type=float, default=None)
    p.add_argument("--runs", type=int, default=200, help="timed batch-1 runs (default 200)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("compare", help="the comparison table of a run and its variants")
    p.add_argument("run_id", help="the parent run or any of its variants")
    p.add_argument("--runs", type=int, default=200, help="timed batch-1 runs when measuring (default 200)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export", help="a deploy package (one zip: ONNX model, labels, preprocessing, "
                                      "model card, example) of a finished run")
    p.add_argument("run_id")
    p.add_argument("--int8", action="store_true", help="the static int8 model (quantized first if needed)")
    p.add_argument("--out", type=Path, help="folder for the zip (default: the current folder)")
    p.add_argument("--calibration", type=int, default=None)
    p.add_argument("--calibration-method", choices=["minmax", "entropy", "percentile"], default=None)
    p.add_argument("--per-channel", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)
