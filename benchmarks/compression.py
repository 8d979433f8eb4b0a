"""Compression lab on ResNet-18 and the pretrained MobileNet V2 (Animal-MNIST-LT, 32 px).

    python -m benchmarks.compression [--epochs 3] [--runs 200] [--threads N] [--calibration 256]
                                     [--models resnet18,mobilenet_v2] [--paired-rounds 3]
                                     [--home DIR]

Issue 8, "Figures". Each model is trained briefly on Animal-MNIST-LT (``builtin:animal_mnist``,
ratio 100, 32 px, 1 channel; every other setting automatic: logit-adjusted loss, AdamW, batch 32)
and then compressed with the engine's own functions, every variant a child run recorded in the
workspace exactly as the dashboard and the CLI record it:

* ONNX Runtime fp32 (``engine.compress.export.export_run``, verified on the whole test split);
* ONNX Runtime static int8, QDQ, MinMax on 256 class-balanced training images, per-tensor
  (``engine.compress.quantize.quantize_run`` with its defaults: the figures the targets read),
  and the same with per-channel weights (``per_channel=True``; ``--no-per-channel`` skips it):
  per-tensor ranges cannot fit MobileNet's depthwise convolutions, whose channels' weight ranges
  differ by orders of magnitude once BatchNorm is folded in;
* structured pruning at half the MACs (Torch-Pruning through ``prune.prune_config``), fine-tuned
  for ``--epochs`` epochs with the parent's recipe;
* (ResNet-18 only) distillation into the compact CNN (``distil.distil_config``, T=4,
  alpha=0.5) against the same compact CNN trained alone with the same settings and epochs.

Training runs go through ``engine.worker.run`` in this process (the configs resolved as
``engine.jobs.launch`` resolves them, without its subprocess). The table is
``engine.compress.measure.compare_rows`` (torch eager for torch rows, ONNX Runtime's CPU provider
for ONNX rows; latency p50 / p95 at batch 1 over ``--runs`` timed calls after 20 warm-up calls,
throughput at batch 32 over 20 calls; ``--threads`` intra-op threads for every training run and
every timing, by default the engine's timing default: one per core but one). Per-group damage is ``measure.damage`` (mean per-class recall of the
head / medium / tail classes, variant minus parent).

The table's rows are timed minutes apart, as each variant is made; on a shared machine the load
changes in between. So the latency ratios are also measured **paired**: the parent (torch), the
ONNX fp32 and int8 models and the pruned model timed back to back (``measure.time_torch`` /
``measure.time_onnx``, the functions the table's figures come from), ``--paired-rounds`` rounds in
turn, each ratio the median of the rounds' ratios (lines ending ``_paired``).

Output: a table per model, the damage per group, then ``name: value`` lines. Ratios are plain
(variant / reference, lower is faster for latency); accuracy drops, gains and changes are in
percentage points (a drop below 0 is a gain).

Targets (issue 8): ORT fp32 latency / torch eager <= 0.6; ORT static int8 latency / ORT fp32 <=
0.45 with a balanced-accuracy drop <= 1 point. Anchors from elsewhere, as issue 8 quotes them (other models,
data, budgets and machines; for orientation, not comparison):

* Intel Neural Compressor, ResNet-18 (ImageNet) static int8: 2.46x the fp32 throughput with
  -0.15 points of top-1;
* the ONNX model zoo, ResNet-50 int8: 1.82x the fp32 speed;
* DepGraph (Fang et al. 2023, Torch-Pruning), ResNet-56 on CIFAR-10: 2.1x speed-up with +0.4
  points of accuracy after pruning and fine-tuning on a full training schedule.

The workspace is a fresh temporary folder unless ``--home`` is given (it is kept, and printed,
so the runs can be opened with ``TAILLAB_HOME=... taillab compare RUN``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

GROUPS = (("head", "many"), ("medium", "medium"), ("tail", "few"))
MODELS = {"resnet18": dict(model="resnet18"),
          "mobilenet_v2": dict(model="mobilenet_v2", pretrained=True)}
STUDENT = "compact_cnn"


def train(store, cfg, data, *, kind: str = "train", parent_run_id: str | None = None):
    """What ``engine.jobs.launch`` does, in this process: resolve the automatic settings from the
    data, store the queued run with the resolved config, train it through ``worker.run``."""
    import json

    from engine import worker
    from engine.config import to_dict
    from engine.defaults import resolve
    from engine.store import RunStatus

    res = resolve(cfg, data.profile) if cfg.auto_fields else None
    if res is not None:
        cfg = res.config
    run = store.create_run(to_dict(cfg), name=cfg.display_name, kind=kind, parent_run_id=parent_run_id)
    if res is not None:
        store.set_tags(run.id, {"auto": res.summary, "auto_reasons": json.dumps(res.reasons)})
    t0 = time.perf_counter()
    worker.run(run.id, store, data=data)
    run = store.get_run(run.id)
    if run.status != RunStatus.FINISHED:
        raise RuntimeError(f"benchmark run {run.name} ended {run.status}: {run.error}")
    print(f"  {run.name:48} {kind:8} bal {run.latest['test/bal_acc']:.3f}  "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return run


LABELS = {"parent": "torch fp32 (parent)", "fp32": "ORT fp32", "int8": "ORT int8 static",
          "int8pc": "ORT int8 static per-chan", "pruned": "pruned 50% MACs (torch)",
          "distil": f"distilled {STUDENT}", "alone": f"{STUDENT} alone"}
VARIANT_NAMES = {"fp32": "ort_fp32", "int8": "int8", "int8pc": "int8pc", "pruned": "pruned50",
                 "distil": "distilled", "alone": "student_alone"}


def fmt_row(label: str, r: dict) -> str:
    def pct(k):
        return f"{100 * r[k]:6.1f}" if r.get(k) is not None else f"{'-':>6}"

    def num(k, scale=1.0, spec="8.2f"):
        return format(r[k] / scale, spec) if r.get(k) is not None else "-".rjust(len(format(0.0, spec)))

    return (f"{label:25}{num('params', 1e6, '8.2f')}{num('macs', 1e6, '9.1f')}"
            f"{num('size_bytes', 1e6, '8.2f')}{num('latency_ms_p50', 1, '8.2f')}"
            f"{num('latency_ms_p95', 1, '8.2f')}{num('throughput', 1, '9.0f')}"
            f"{pct('acc')}{pct('bal_acc')}{pct('many_acc')}{pct('medium_acc')}{pct('few_acc')}"
            f"{pct('agreement')}")


HEADER = (f"{'variant':25}{'Mparams':>8}{'MMACs':>9}{'MB':>8}{'p50 ms':>8}{'p95 ms':>8}"
          f"{'img/s32':>9}{'acc':>6}{'bal':>6}{'head':>6}{'med':>6}{'tail':>6}{'agree':>6}")


def paired_timing(rows: dict, spec, *, rounds: int, runs: int, batch_runs: int, threads: int) -> dict:
    """Parent (torch), ORT fp32, ORT int8 and the pruned model timed back to back, ``rounds``
    times in turn; per round the ratios, then the median of each over the rounds."""
    from engine import workspace
    from engine.compress import measure

    models = {}
    for key in ("parent", "pruned"):
        if key in rows:
            models[key] = measure.load_torch(rows[key]["run_id"])[0]
    onnx = {key: workspace.run_dir(rows[key]["run_id"]) / "model.onnx" for key in ("fp32", "int8", "int8pc") if key in rows}
    ratios: dict[str, list[float]] = {}
    for _ in range(rounds):
        t = {}
        for key, m in models.items():
            t[key] = measure.time_torch(m, spec.size, spec.channels, runs=runs, batch_runs=batch_runs,
                                        threads=threads)
        for key, path in onnx.items():
            t[key] = measure.time_onnx(path, spec.size, spec.channels, runs=runs, batch_runs=batch_runs,
                                       threads=threads)
        for name, (a, b) in {"ort_fp32_over_torch_latency": ("fp32", "parent"),
                             "int8_over_fp32_latency": ("int8", "fp32"),
                             "int8pc_over_fp32_latency": ("int8pc", "fp32"),
                             "pruned50_latency_ratio": ("pruned", "parent")}.items():
            if a in t and b in t:
                ratios.setdefault(name, []).append(t[a].latency_ms_p50 / t[b].latency_ms_p50)
        if "int8" in t and "fp32" in t:
            ratios.setdefault("int8_over_fp32_throughput", []).append(t["int8"].throughput / t["fp32"].throughput)
    return {f"{k}_paired": statistics.median(v) for k, v in ratios.items()}


def bench_model(store, name: str, data, args) -> tuple[list[tuple[str, float]], float]:
    from engine.compress import measure, prune
    from engine.compress import distil
    from engine.compress.export import export_run
    from engine.compress.quantize import quantize_run
    from engine.config import TrainConfig

    timing = dict(runs=args.runs, batch_runs=args.batch_runs, threads=args.threads)
    cfg = TrainConfig(name=f"bench-compress-{name}", data=data.config, epochs=args.epochs, seed=args.seed,
                      threads=args.threads, log_every=20, **MODELS[name])
    t0 = time.perf_counter()
    parent = train(store, cfg, data)

    t = time.perf_counter()
    fp32 = export_run(store, parent.id, **timing)
    print(f"  {fp32.name:48} export   ({time.perf_counter() - t:.0f} s)", flush=True)
    t = time.perf_counter()
    int8 = quantize_run(store, parent.id, method="int8-static", calibration=args.calibration, **timing)
    print(f"  {int8.name:48} quantize ({time.perf_counter() - t:.0f} s): {int8.tags.get('quant_types')}; "
          f"{int8.tags.get('cpu_note')}", flush=True)
    int8pc = None
    if not args.no_per_channel:  # the same with per-channel weights (depthwise convs need it)
        t = time.perf_counter()
        int8pc = quantize_run(store, parent.id, method="int8-static", calibration=args.calibration,
                              per_channel=True, **timing)
        print(f"  {int8pc.name + ' (per-channel)':48} quantize ({time.perf_counter() - t:.0f} s): "
              f"{int8pc.tags.get('quant_types')}", flush=True)
    pcfg = prune.prune_config(store.get_run(parent.id), method="structured", amount=args.prune_amount,
                              finetune_epochs=args.epochs)
    # the child configs leave threads to where they are launched; the benchmark pins them
    pcfg = dataclasses.replace(pcfg, threads=args.threads)
    pruned = train(store, pcfg, data, kind="prune", parent_run_id=parent.id)
    distilled = alone = None
    if name == "resnet18" and not args.no_distil:
        dcfg = distil.distil_config(store.get_run(parent.id), student=STUDENT, epochs=args.epochs)
        dcfg = dataclasses.replace(dcfg, threads=args.threads)
        distilled = train(store, dcfg, data, kind="distil", parent_run_id=parent.id)
        # the same student, settings and epochs without the teacher: an ordinary run
        acfg = dataclasses.replace(dcfg, name=f"bench-compress-{STUDENT}-alone", distil_from=None)
        alone = train(store, acfg, data)

    rows = measure.compare_rows(store, parent.id, **timing)
    by_id = {r["run_id"]: r for r in rows}
    keyed = {"parent": rows[0], "fp32": by_id[fp32.id], "int8": by_id[int8.id]}
    if int8pc is not None:
        keyed["int8pc"] = by_id[int8pc.id]
    keyed["pruned"] = by_id[pruned.id]
    if distilled is not None:
        keyed["distil"] = by_id[distilled.id]
    if alone is not None:
        measure.measure_torch_run(store, alone.id, parent_id=parent.id, **timing)
        keyed["alone"] = measure._row(store.get_run(alone.id), is_parent=False)  # its figures, as a row
        keyed["alone"]["method"] = f"{STUDENT} trained alone, the distilled run's settings and epochs"
    table = [(LABELS[k], r) for k, r in keyed.items()]

    threads = rows[0]["threads"]
    print(f"\n{name} on Animal-MNIST-LT (ratio 100, 32 px, 1 channel), {args.epochs} epochs, "
          f"{threads} thread(s), latency at batch 1 over {args.runs} calls; test accuracy %")
    print(HEADER)
    for label, r in table:
        print(fmt_row(label, r))
    for label, r in table:
        if r["method"] != "original":
            print(f"  {label}: {r['method']}" + (f"  [{r['flag']}]" if r.get("flag") else ""))

    # per-group damage (variant minus parent, points)
    damages = {key: measure.damage(store, parent.id, r["run_id"]) for key, r in keyed.items()
                if key != "parent"}
    print(f"\n{name}: change of mean per-class recall against the parent (points); worst class")
    print(f"{'variant':25}{'head':>8}{'medium':>8}{'tail':>8}{'flipped':>9}  worst class drop")
    for key, d in damages.items():
        g = d["groups"]
        cells = "".join(f"{100 * g[k]['change']:+8.1f}" if g[k]["change"] is not None else f"{'-':>8}"
                        for _, k in GROUPS)
        worst = f"{d['worst_class_drop_points']:.1f} ({d['worst_class']})" if d["worst_class"] else "none"
        print(f"{LABELS[key]:25}{cells}"
              f"{len(d['flipped']):9d}  {worst}")

    p = keyed["parent"]
    figs: list[tuple[str, float]] = []
    pre = f"compression_{name}"

    def ratio(a, b, k):
        return keyed[a][k] / keyed[b][k]

    def drop(key):
        return 100 * (p["bal_acc"] - keyed[key]["bal_acc"])

    figs += [(f"{pre}_parent_bal_acc", p["bal_acc"]),
             (f"{pre}_ort_fp32_over_torch_latency", ratio("fp32", "parent", "latency_ms_p50")),
             (f"{pre}_ort_fp32_over_torch_throughput", ratio("fp32", "parent", "throughput")),
             (f"{pre}_int8_over_fp32_latency", ratio("int8", "fp32", "latency_ms_p50")),
             (f"{pre}_int8_over_fp32_throughput", ratio("int8", "fp32", "throughput")),
             (f"{pre}_int8_bal_acc_drop", drop("int8")),
             (f"{pre}_int8_agreement", keyed["int8"]["agreement"]),
             (f"{pre}_int8_size_ratio", ratio("int8", "fp32", "size_bytes")),
             *([(f"{pre}_int8pc_over_fp32_latency", ratio("int8pc", "fp32", "latency_ms_p50")),
                (f"{pre}_int8pc_over_fp32_throughput", ratio("int8pc", "fp32", "throughput")),
                (f"{pre}_int8pc_bal_acc_drop", drop("int8pc"))] if "int8pc" in keyed else []),
             (f"{pre}_pruned50_macs_ratio", ratio("pruned", "parent", "macs")),
             (f"{pre}_pruned50_params_ratio", ratio("pruned", "parent", "params")),
             (f"{pre}_pruned50_latency_ratio", ratio("pruned", "parent", "latency_ms_p50")),
             (f"{pre}_pruned50_throughput_ratio", ratio("pruned", "parent", "throughput")),
             (f"{pre}_pruned50_bal_acc_drop", drop("pruned"))]
    if "distil" in keyed:
        figs += [("compression_distil_teacher_bal_acc", p["bal_acc"]),
                 ("compression_distil_student_alone_bal_acc", keyed["alone"]["bal_acc"]),
                 ("compression_distil_student_distilled_bal_acc", keyed["distil"]["bal_acc"]),
                 ("compression_distil_gain_bal_acc",
                  100 * (keyed["distil"]["bal_acc"] - keyed["alone"]["bal_acc"])),
                 ("compression_distil_gain_tail_acc",
                  100 * (keyed["distil"]["few_acc"] - keyed["alone"]["few_acc"]))]
    for key, d in damages.items():
        variant = VARIANT_NAMES[key]
        for label, k in GROUPS:
            if d["groups"][k]["change"] is not None:
                figs.append((f"{pre}_{variant}_{label}_change", 100 * d["groups"][k]["change"]))
        figs.append((f"{pre}_{variant}_worst_class_drop", d["worst_class_drop_points"]))
    if args.paired_rounds > 0:
        from engine.transforms import EvalSpec
        spec = EvalSpec.from_dict(measure.load_checkpoint(parent.id)["eval_spec"])
        paired = paired_timing(keyed, spec, rounds=args.paired_rounds, runs=args.runs,
                               batch_runs=args.batch_runs, threads=threads)
        figs += [(f"{pre}_{k}", v) for k, v in paired.items()]
    return figs, time.perf_counter() - t0


TARGETS = (("ort_fp32_over_torch_latency", "<=", 0.6), ("int8_over_fp32_latency", "<=", 0.45),
           ("int8_bal_acc_drop", "<=", 1.0))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="epochs of every training run (parent, "
                   "pruned fine-tuning, distilled and lone student)")
    p.add_argument("--runs", type=int, default=200, help="timed calls at batch 1 (at least 200 in issue 8)")
    p.add_argument("--batch-runs", type=int, default=20, help="timed calls at batch 32")
    p.add_argument("--threads", type=int, default=None,
                   help="torch / ONNX Runtime intra-op threads for training and timing (default: "
                        "the engine's, one per core but one)")
    p.add_argument("--calibration", type=int, default=256)
    p.add_argument("--prune-amount", type=float, default=0.5, help="share of MACs removed")
    p.add_argument("--models", default="resnet18,mobilenet_v2")
    p.add_argument("--no-distil", action="store_true")
    p.add_argument("--no-per-channel", action="store_true", help="skip the per-channel int8 variant")
    p.add_argument("--paired-rounds", type=int, default=3,
                   help="rounds of back-to-back timing for the _paired ratios (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--home", default=None, help="workspace (default: a new temporary folder)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.epochs < 1:
        p.error("--runs and --epochs must be >= 1")

    home = args.home or tempfile.mkdtemp(prefix="taillab-bench-compress-")
    os.environ["TAILLAB_HOME"] = home
    if not args.home:
        os.environ.pop("TAILLAB_DB_URL", None)  # a fresh workspace: its own SQLite file

    import torch

    from engine.compress import measure
    from engine.config import DataConfig
    from engine.data.datasets import prepare_data
    from engine.store import open_store

    args.threads = args.threads or measure.default_threads()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    print(f"workspace {home}; {os.cpu_count()} CPUs, {args.threads} thread(s); load average "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    store = open_store()
    data = prepare_data(DataConfig(source="builtin:animal_mnist", image_size=32))
    print(f"Animal-MNIST-LT: {len(data.splits['train']):,} training, {len(data.splits['val']):,} "
          f"validation, {len(data.splits['test']):,} test images; training counts "
          f"{data.counts('train')}", flush=True)
    t0 = time.perf_counter()
    figures: list[tuple[str, float]] = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in MODELS:
            p.error(f"unknown model {name!r}; choices: {', '.join(MODELS)}")
        print(f"\n== {name}", flush=True)
        figs, secs = bench_model(store, name, data, args)
        figures += figs + [(f"compression_{name}_seconds", secs)]
    load1 = os.getloadavg()
    figures += [("compression_seconds", time.perf_counter() - t0), ("compression_threads", args.threads),
                ("compression_loadavg_1min_start", load0[0]), ("compression_loadavg_1min_end", load1[0])]

    values = dict(figures)
    print("\ntargets (issue 8):")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for key, op, limit in TARGETS:
            for suffix in ("", "_paired"):
                k = f"compression_{name}_{key}{suffix}"
                if k in values:
                    ok = values[k] <= limit
                    print(f"  {k} = {values[k]:.3f} (target {op} {limit:g}): {'met' if ok else 'NOT met'}")
    print(f"load average {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end; workspace {home}\n")
    for name, value in figures:
        print(f"{name}: {value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
