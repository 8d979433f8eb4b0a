"""``python -m engine.worker RUN_ID [--resume]``: load the run's config from the store and train it.

Status: queued -> running -> finished | failed (error text stored) | cancelled.
A background thread beats the heartbeat every HEARTBEAT_S, so a long step does not look dead.
Under torchrun (``taillab train --nproc N``) every rank trains; rank 0 alone talks to the store.
When the run ends, the worker starts the next waiting run of the job queue.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
import traceback

from engine import workspace
from engine.config import ConfigError, train_config_from_dict
from engine.store import RunStatus, Store, open_store
from engine.store.api import HEARTBEAT_S
from engine.train import CancelFit, Callback, FitResult, FitState, NonFiniteLoss, class_breakdown, fit


class StoreLogger(Callback):
    """Per-step training loss every ``log_every`` steps; all epoch metrics; final results."""

    def __init__(self, store: Store, run_id: str, log_every: int, *, best: float | None = None) -> None:
        self.store, self.run_id, self.log_every = store, run_id, log_every
        self._losses: list[float] = []
        self._best = -1.0 if best is None else best  # a resumed run keeps its best so far
        self._t0, self._seen0 = time.perf_counter(), 0

    def on_fit_start(self, state: FitState) -> None:
        d = state.data
        v = self.store.add_dataset_version(
            id=d.version_id, name=state.cfg.display_name.split("-", 1)[-1], source=d.config.source,
            class_counts=d.class_counts(), config=json.loads(json.dumps(d.config.__dict__)))
        self.store.set_dataset_version(self.run_id, v.id)
        self.store.mark_running(self.run_id, total_steps=state.total_steps)
        self.store.set_tags(self.run_id, {
            "eval_spec": json.dumps(d.eval_spec.to_dict()),
            "class_names": json.dumps(d.class_names),
            "train_counts": json.dumps(d.counts("train")),
            "device": str(state.device),
            "num_params": str(sum(p.numel() for p in state.model.parameters())),
            "data_notes": json.dumps([*d.notes, state.val_note, *state.notes]),
            **({"auto": state.auto} if state.auto else {}),
        })
        self._t0, self._seen0 = time.perf_counter(), state.images_seen

    def on_step_end(self, state: FitState) -> None:
        self._losses.append(state.loss)
        if state.step % self.log_every == 0 or state.step == state.total_steps:
            mean = sum(self._losses) / len(self._losses)
            self._losses.clear()
            now = time.perf_counter()
            rate = (state.images_seen - self._seen0) / max(now - self._t0, 1e-9)
            self._t0, self._seen0 = now, state.images_seen
            self.store.log_metrics(self.run_id, {
                "train/step_loss": mean, "train/lr": state.optimizer.param_groups[-1]["lr"],
                "sys/images_per_s": rate * int(os.environ.get("WORLD_SIZE", "1")), "sys/memory_mb": memory_mb(),
            }, step=state.step, epoch=state.step / state.steps_per_epoch)

    def on_epoch_end(self, state: FitState, metrics: dict[str, float]) -> None:
        self.store.log_metrics(self.run_id, metrics, step=state.step, epoch=state.epoch + 1)
        score = metrics.get("val/bal_acc", float("nan"))
        if score == score and score > self._best:  # NaN-safe
            self._best = score
            self.store.set_best(self.run_id, score, state.epoch + 1)
        if state.last_val is not None:  # per-class validation bars, redrawn every epoch
            support, correct = class_breakdown(state.last_val, state.data.num_classes)
            d = state.data
            self.store.log_class_results(
                self.run_id, "val_epoch", class_names=d.class_names, train_counts=d.counts("train"),
                support=support, correct=correct, many_threshold=d.config.many_threshold,
                few_threshold=d.config.few_threshold)

    def on_fit_end(self, state: FitState, result: FitResult) -> None:
        d = state.data
        test = {f"test/{k}": v for k, v in result.test.items()}
        test.update(final_test_metrics(result.test_eval))
        self.store.log_metrics(self.run_id, test, step=state.step, epoch=state.cfg.epochs)
        for split, ev in (("test", result.test_eval), ("val", result.val_eval)):
            support, correct = class_breakdown(ev, d.num_classes)
            self.store.log_class_results(
                self.run_id, split, class_names=d.class_names, train_counts=d.counts("train"),
                support=support, correct=correct, many_threshold=d.config.many_threshold,
                few_threshold=d.config.few_threshold)
        if result.aux is not None:  # multi-task: task name (tag aux_task) and per-value test results (split test_aux)
            from engine.multitask import log_aux_results
            log_aux_results(self.store, self.run_id, state, result)


def memory_mb() -> float:
    """This process's resident memory now (Linux /proc), else its peak (getrusage), in MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def final_test_metrics(ev) -> dict[str, float]:
    """test/macro_f1 (over the classes present in the test split) and test/ece (15 equal-width
    confidence bins, engine.compress.measure.ece); NaN for an empty test split."""
    from sklearn.metrics import f1_score

    from engine.compress.measure import ece, softmax

    if len(ev.targets) == 0:
        return {"test/macro_f1": float("nan"), "test/ece": float("nan")}
    preds = ev.logits.argmax(1)
    present = sorted(set(int(t) for t in ev.targets))
    return {"test/macro_f1": float(f1_score(ev.targets, preds, labels=present, average="macro",
                                            zero_division=0)),
            "test/ece": ece(softmax(ev.logits), ev.targets)}


class CancelCheck(Callback):
    """Polls the store's cancel flag at most every ``every_s`` seconds, between steps."""

    def __init__(self, store: Store, run_id: str, every_s: float = 0.5) -> None:
        self.store, self.run_id, self.every_s, self._next = store, run_id, every_s, 0.0

    def _check(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            if self.store.cancel_requested(self.run_id):
                raise CancelFit()

    def on_step_end(self, state: FitState) -> None:
        self._check()

    def on_epoch_end(self, state: FitState, metrics) -> None:
        self._check()


def _heartbeat(store: Store, run_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            store.heartbeat(run_id)
        except Exception:  # a busy DB must not kill training; the next beat retries
            pass


def run(run_id: str, store: Store | None = None, *, data=None, resume: bool = False) -> str:
    """Train a queued run to its end status. ``data``: the run's PreparedData, when the caller
    (a benchmark running many runs in one process) has it already. ``resume``: continue from the
    run's last checkpoint (engine.jobs.resume prepared the run)."""
    store = store or open_store()
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # another data-parallel rank: trains, reports nothing
        cfg = train_config_from_dict(store.get_run(run_id).config)
        try:
            fit(cfg, [], data=data, checkpoint_dir=workspace.run_dir(run_id), resume=resume)
        except CancelFit:
            return RunStatus.CANCELLED
        return RunStatus.FINISHED
    run = store.get_run(run_id)
    if run.status != RunStatus.QUEUED:
        print(f"Run {run_id} is {run.status}, not queued; nothing to do.", file=sys.stderr)
        return run.status
    if run.cancel_requested:
        store.end_run(run_id, RunStatus.CANCELLED)
        return RunStatus.CANCELLED
    store.mark_running(run_id)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, run_id, stop), daemon=True)
    beat.start()
    status, error = RunStatus.FAILED, None
    try:
        cfg = train_config_from_dict(run.config)
        callbacks = [StoreLogger(store, run_id, cfg.log_every, best=run.best_val if resume else None),
                     CancelCheck(store, run_id)]
        if cfg.prune or cfg.distil_from:  # a compression variant: size, MACs, agreement with the parent
            from engine.compress.prune import VariantRecorder
            callbacks.append(VariantRecorder(store, run_id))
        result = fit(cfg, callbacks, data=data, checkpoint_dir=workspace.run_dir(run_id), resume=resume)
        folder = workspace.run_dir(run_id)
        for name in ("best.pt", "last.pt"):
            store.log_artifact(run_id, name, str(folder / name), "checkpoint")
        status = RunStatus.FINISHED
        print(f"Run {run_id} finished: test acc {result.test['acc']:.4f}, "
              f"balanced {result.test['bal_acc']:.4f}", flush=True)
    except CancelFit:
        status = RunStatus.CANCELLED
    except (NonFiniteLoss, ConfigError, ValueError) as e:
        error = str(e)
    except Exception as e:  # anything else: keep the traceback for the log, a line for the UI
        traceback.print_exc()
        error = f"{type(e).__name__}: {e}"
    finally:
        stop.set()
    store.end_run(run_id, status, error)
    if error:
        print(f"Run {run_id} failed: {error}", file=sys.stderr, flush=True)
    if data is None:  # a real worker process: the next waiting run of the queue may start now
        try:
            from engine import jobs
            jobs.dispatch(store)
        except Exception:  # noqa: BLE001 — the queue moves on the next dispatch from any page or command
            traceback.print_exc()
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    resume = "--resume" in argv
    rest = [a for a in argv if a != "--resume"]
    if len(rest) != 1:
        print("usage: python -m engine.worker RUN_ID [--resume]", file=sys.stderr)
        return 2
    status = run(rest[0], resume=resume)
    return 0 if status in (RunStatus.FINISHED, RunStatus.CANCELLED) else 1


if __name__ == "__main__":
    sys.exit(main())
