"""``taillab``: the same engine calls the dashboard makes, from a shell.

    taillab dashboard [--port 8501]
    taillab train [--config run.toml] [--model small_cnn --epochs 5 ...] [--detach]
    taillab runs list [--json] | show RUN_ID [--json] | cancel RUN_ID | delete RUN_ID
    taillab runs compare ID ID ... [--baseline ID] [--json]
    taillab predict --run RUN_ID | --package PKG.zip IMAGE... [--top-k 5] [--json]
    taillab posthoc RUN_ID --method logit_adjust|tau_norm [--json]
    taillab data stats|import|split|versions ...
    taillab compress RUN_ID --quantize ... | compare RUN_ID | export RUN_ID [--int8]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from engine.config import ConfigError, DataConfig, TrainConfig, train_config_from_dict, train_config_from_toml

ROOT = Path(__file__).resolve().parent.parent


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


# --- train ------------------------------------------------------------------------------------

# Every TrainConfig / DataConfig field is a flag (--weight-decay, --n-max ...), its help the
# field's comment in engine/config.py. A few data flags keep shorter names.
_DATA_FLAG_NAMES = {"source": "dataset", "seed": "data_seed"}
_FLAG_HELP = {"model": "auto (default: from image size and data size) or one of: {models}",
              "loss": "auto (default: logit-adjusted when the training split is imbalanced) or a loss name",
              "dataset": "mnist, animal_mnist, a folder (class sub-folders, optionally inside "
                         "train/ val/ test/), a CSV manifest or version:HASH"}
_NOT_FLAGS = {"data"}


def _flag_type(annotation: str):
    """(argparse type or action, metavar) for a dataclass field's annotation string."""
    a = annotation.replace(" | None", "")
    if a == "bool":
        return argparse.BooleanOptionalAction, None
    if a in ("int", "float", "str"):
        return {"int": int, "float": float, "str": str}[a], None
    if a == "list":
        return (lambda v: [int(x) for x in v.split(",") if x.strip()]), "N,N,..."
    if a == "dict":
        return json.loads, "JSON"
    raise AssertionError(f"no CLI type for {annotation}")


def _train_flags() -> list[tuple[str, str, str, object, str | None, str]]:
    """(flag dest, owner "train" | "data", field, type, metavar, help) for every setting."""
    from engine.config import field_help
    from engine.models import MODELS

    out = []
    for owner, cls in (("train", TrainConfig), ("data", DataConfig)):
        helps = field_help(cls)
        for f in dataclasses.fields(cls):
            if f.name in _NOT_FLAGS:
                continue
            dest = _DATA_FLAG_NAMES.get(f.name, f.name) if owner == "data" else f.name
            typ, metavar = _flag_type(f.type)
            text = _FLAG_HELP[dest].format(models=", ".join(MODELS)) if dest in _FLAG_HELP else helps.get(f.name, "")
            out.append((dest, owner, f.name, typ, metavar, text))
    return out


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model (a worker process; Ctrl-C cancels)",
                       epilog="--init-from RUN starts from that run's best checkpoint, with its "
                              "settings as defaults. cRT (re-train the classifier on the frozen "
                              "backbone): --init-from RUN --train-scope classifier "
                              "--sampler class_balanced --loss ce --epochs 5. "
                              "Every setting of a TOML file (--config) has a flag; flags win.")
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig settings ([data] table)")
    for dest, owner, _, typ, metavar, text in _train_flags():
        kw = {"action": typ} if typ is argparse.BooleanOptionalAction else {"type": typ, "metavar": metavar}
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, default=None, help=text or None, **kw)
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train in N data-parallel processes under torchrun (gloo on CPU, nccl on CUDA); "
                        "rank 0 reports to the store")
    p.add_argument("--detach", action="store_true", help="print the run id and return at once")
    p.add_argument("--print-config", action="store_true", help="print the resolved TOML and exit")
    p.set_defaults(func=cmd_train)


def build_train_config(args) -> TrainConfig:
    base: dict = {}
    if args.init_from and not args.config:  # start from the settings of the run it builds on
        from engine.store import open_store
        from engine.store.api import RunNotFound
        try:
            base = dict(open_store().get_run(args.init_from).config, name="")
        except RunNotFound:
            raise ConfigError(f"--init-from: no run with id {args.init_from!r} "
                              "(see: taillab runs list).") from None
    if args.config:
        if not args.config.is_file():
            raise ConfigError(f"Config file {args.config} does not exist.")
        base = dataclasses.asdict(train_config_from_toml(args.config.read_text()))
    data = dict(base.get("data") or dataclasses.asdict(DataConfig()))
    for dest, owner, name, *_ in _train_flags():
        value = getattr(args, dest, None)
        if value is not None:
            (data if owner == "data" else base)[name] = value
    src = data.get("source")
    if src in ("mnist", "animal_mnist"):
        data["source"] = "builtin:" + src
    elif src and not src.startswith(("builtin:", "version:")):
        # The worker runs in another folder: a path relative to the user's shell must be made absolute.
        data["source"] = str(Path(src).expanduser().resolve())
    if base.get("weights_file"):
        base["weights_file"] = str(Path(base["weights_file"]).expanduser().resolve())
    base["data"] = data
    return train_config_from_dict(base)


def cmd_train(args) -> int:
    from engine import jobs
    from engine.config import to_toml
    from engine.store import RunStatus, open_store

    cfg = build_train_config(args)
    if args.print_config:
        from engine.data.datasets import plan_data
        from engine.defaults import resolve
        if cfg.auto_fields:
            res = resolve(cfg, plan_data(cfg.data).profile)
            print(f"# auto: {res.summary}")
            cfg = res.config
        print(to_toml(cfg))
        return 0
    store = open_store()
    kind = "crt" if cfg.train_scope == "classifier" else "train"
    run = jobs.launch(cfg, store, kind=kind, parent_run_id=cfg.init_from, nproc=args.nproc)
    print(f"run id: {run.id}  ({run.name})", flush=True)
    if run.waiting:
        print(f"waiting in the queue: {len(store.waiting_runs())} run(s) waiting, "
              f"{jobs.max_concurrent()} at once (taillab runs queue)", flush=True)
    if run.tags.get("auto"):
        print(f"auto: {run.tags['auto']}", flush=True)
    if args.detach:
        return 0
    shown_epochs, notes_shown = 0, False
    try:
        while True:
            store.reap_stale()
            jobs.dispatch(store)
            run = store.get_run(run.id)
            if not notes_shown and run.tags.get("data_notes"):
                for note in json.loads(run.tags["data_notes"]):
                    print(f"data: {note}", flush=True)
                notes_shown = True
            lat = run.latest
            done = lat.get("train/step_loss") is not None
            epochs = [p for p in store.metric_history(run.id, ["val/bal_acc"])]
            for p in epochs[shown_epochs:]:
                hist = {m.key: m.value for m in store.metric_history(run.id) if m.epoch == p.epoch
                        and not m.key.startswith(("train/step", "test/"))}
                print(f"epoch {int(p.epoch)}/{cfg.epochs}  " + "  ".join(
                    f"{k}={_fmt(hist.get(k))}" for k in
                    ("train/loss", "val/acc", "val/bal_acc", "val/many_acc", "val/medium_acc",
                     "val/few_acc")), flush=True)
            shown_epochs = len(epochs)
            if run.status in RunStatus.ENDED:
                break
            time.sleep(1.0 if done else 0.5)
    except KeyboardInterrupt:
        print("\ncancelling ...", flush=True)
        jobs.cancel(store, run.id)
        run = jobs.wait(store, run.id, timeout=120)
    if run.status == RunStatus.FINISHED:
        print("test  " + "  ".join(f"{k}={_fmt(run.latest.get('test/' + k))}" for k in
                                   ("acc", "bal_acc", "many_acc", "medium_acc", "few_acc")))
    print(f"run {run.id} {run.status}" + (f": {run.error}" if run.error else ""))
    return 0 if run.status == RunStatus.FINISHED else 1


# --- predict ----------------------------------------------------------------------------------

def cmd_predict(args) -> int:
    from engine.data.io import ImageReadError
    from engine.infer import PackagePredictor, predictor_for_run

    if bool(args.run) == bool(args.package):
        raise ValueError("Give either --run RUN_ID or --package PKG.zip.")
    # a package needs no workspace: it is read on its own (taillab export writes it)
    predictor = PackagePredictor(args.package) if args.package else predictor_for_run(args.run)
    results, failed = [], 0
    for path in args.images:
        try:
            results.append(predictor.predict(path, name=path, k=args.top_k).to_dict())
        except ImageReadError as e:
            failed += 1
            results.append({"image": path, "error": str(e)})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['image']}: ERROR {r['error']}")
            else:
                print(f"{r['image']}: " + ", ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top"]))
    return 1 if failed else 0


# --- posthoc ----------------------------------------------------------------------------------

def cmd_posthoc(args) -> int:
    from engine import posthoc
    from engine.store import open_store

    res = posthoc.apply_posthoc(open_store(), args.run_id, args.method)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    print(f"{args.method} on run {res.parent_run_id}: tau = {res.tau:g} (best validation balanced "
          f"accuracy); child run {res.run_id}")
    print(f"{'test':8}" + "".join(f"{k:>12}" for k in posthoc.METRIC_KEYS))
    for label in ("before", "after"):
        m = getattr(res, label)["test"]
        print(f"{label:8}" + "".join(f"{_fmt(m[k]):>12}" for k in posthoc.METRIC_KEYS))
    return 0


# --- dashboard --------------------------------------------------------------------------------

def cmd_dashboard(args) -> int:
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
           "--server.port", str(args.port), "--server.address", args.address,
           "--server.headless", "true"]
    return subprocess.call(cmd, cwd=str(ROOT))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taillab", description="TailLab: long-tail image classification, end to end.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dashboard", help="open the browser dashboard")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1")
    p.set_defaults(func=cmd_dashboard)
    _add_train(sub)
    from engine import cli_runs
    cli_runs.register(sub)
    p = sub.add_parser("predict", help="top-k classes of images with a finished run's model")
    p.add_argument("--run", help="run id (see: taillab runs list); torch or ONNX variant")
    p.add_argument("--package", help="a deploy package zip (taillab export); no workspace needed")
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("posthoc", help="post-hoc logit adjustment or tau-normalisation of a finished "
                                       "run, tau tuned on validation (recorded as a child run)")
    p.add_argument("run_id")
    p.add_argument("--method", required=True, help="logit_adjust or tau_norm")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_posthoc)
    try:
        from engine import cli_data
        cli_data.register(sub)
    except ImportError:
        pass
    from engine import cli_compress
    cli_compress.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine.store.db import StoreError
    try:
        return args.func(args) or 0
    except StoreError as e:  # not a database, a newer schema, a read-only workspace: nothing was written
        print(f"taillab: error: {e}", file=sys.stderr)
        return 2
    except (ConfigError, ValueError, KeyError, FileNotFoundError, TimeoutError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"taillab: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
