"""Training runs as separate OS processes: a queue, launch, resume, cancel, watch.

``launch(cfg)`` writes a queued run row at the end of the job queue and calls ``dispatch``, which
starts ``python -m engine.worker RUN_ID`` (under ``torchrun`` for ``nproc`` > 1) in its own session
(process group) for each waiting run while fewer than ``max_concurrent()`` runs have a worker. So a
browser reload, a Streamlit rerun or a dashboard restart never stops training, and training never
blocks the UI. A worker that ends calls ``dispatch`` again; so do the pages and ``wait``, so the
queue moves even when a worker was killed. Liveness is the worker's heartbeat in the store;
``Store.reap_stale`` turns a silent or dead worker into a failed run, and ``resume`` continues a
failed or cancelled run from its last checkpoint.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine import workspace
from engine.config import TrainConfig, to_dict
from engine.store import Run, RunStatus, Store

ROOT = Path(__file__).resolve().parent.parent
MAX_CONCURRENT_DEFAULT = 1  # runs training at once; more only on a machine with cores (or GPUs) to spare


def _queue_file() -> Path:
    return workspace.home() / "queue.json"


def max_concurrent() -> int:
    """How many runs may train at once: TAILLAB_MAX_RUNS, else the workspace's setting, else 1."""
    env = os.environ.get("TAILLAB_MAX_RUNS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, int(json.loads(_queue_file().read_text())["max_concurrent"]))
    except (OSError, ValueError, KeyError, TypeError):
        return MAX_CONCURRENT_DEFAULT


def set_max_concurrent(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
        raise ValueError(f"Runs at once must be a whole number from 1 to 64, got {n!r}.")
    path = _queue_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"max_concurrent": n}))
    os.replace(tmp, path)


def launch(cfg: TrainConfig, store: Store, *, kind: str = "train", parent_run_id: str | None = None,
           dashboard: bool = False, nproc: int = 1) -> Run:
    """Resolve the settings left at auto from the data, store the run (status queued) with the
    resolved config, put it in the job queue and start it when a slot is free.

    ``dashboard``: the run comes from the browser, whose user may not own this machine: a folder
    or CSV source must lie inside the allowed data roots (``TAILLAB_DATA_ROOTS``), and one CPU
    core stays free for the dashboard. From a shell (the CLI), any readable path is accepted.
    ``nproc`` > 1: data-parallel training in that many processes under torchrun.
    Raises DataError / ConfigError before anything is stored."""
    from engine.config import ConfigError
    from engine.data.datasets import plan_data
    from engine.data.sources import allowed_roots
    from engine.defaults import resolve

    if isinstance(nproc, bool) or not isinstance(nproc, int) or not 1 <= nproc <= 64:
        raise ConfigError(f"nproc must be a whole number from 1 to 64, got {nproc!r}.")
    plan = plan_data(cfg.data, roots=allowed_roots() if dashboard else None)
    res = resolve(cfg, plan.profile, dashboard=dashboard) if cfg.auto_fields else None
    if res is not None:
        cfg = res.config
    run = store.create_run(to_dict(cfg), name=cfg.display_name, kind=kind,
                           parent_run_id=parent_run_id)
    tags = {"auto": res.summary, "auto_reasons": json.dumps(res.reasons)} if res is not None else {}
    if nproc > 1:
        tags["nproc"] = str(nproc)
    if tags:
        store.set_tags(run.id, tags)
    store.enqueue(run.id)
    dispatch(store)
    return store.get_run(run.id)


def _spawn(store: Store, run: Run, *, resume: bool = False) -> None:
    """Start the worker process of a claimed run (its own session, output to worker.log)."""
    folder = workspace.run_dir(run.id)
    env = dict(os.environ)
    env["TAILLAB_HOME"] = str(workspace.home())
    env.setdefault("TAILLAB_DB_URL", str(store.engine.url.render_as_string(hide_password=False)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    nproc = int(run.tags.get("nproc", "1"))
    worker = ["-m", "engine.worker", run.id, *(["--resume"] if resume else [])]
    cmd = [sys.executable, *(["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                             if nproc > 1 else []), *worker]
    log = open(folder / "worker.log", "ab")
    try:
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        store.end_run(run.id, RunStatus.FAILED, f"The worker process could not start: {e}")
        return
    finally:
        log.close()
    store.set_pid(run.id, proc.pid)


def dispatch(store: Store) -> list[str]:
    """Start waiting runs, first in the queue first, while fewer than max_concurrent() train.
    Safe to call from anywhere, any number of times (claiming is one atomic UPDATE)."""
    started = []
    limit = max_concurrent()
    while (run := store.claim_next(limit)) is not None:
        _spawn(store, run, resume=run.tags.get("resume") == "1")
        started.append(run.id)
    return started


def resume(store: Store, run_id: str) -> Run:
    """Continue a failed, cancelled or killed run from its last checkpoint: the metrics logged
    after that checkpoint are removed (the worker logs them again, so no step appears twice), the
    run goes back to the queue and its worker resumes model, optimizer, schedule and random state."""
    from engine.train import load_resume_checkpoint

    run = store.get_run(run_id)
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise ValueError(f"Run {run.name} is {run.status}: only a failed or cancelled run can be resumed.")
    ck = load_resume_checkpoint(workspace.run_dir(run_id) / "last.pt")  # ResumeError when unusable
    store.truncate_metrics(run_id, int(ck["step"]))
    store.reopen_run(run_id)
    store.set_tags(run_id, {"resume": "1"})
    store.enqueue(run_id)
    dispatch(store)
    return store.get_run(run_id)


def cancel(store: Store, run_id: str) -> None:
    """Ask the worker to stop after its current step (it ends the run as cancelled)."""
    store.request_cancel(run_id)


def kill(store: Store, run_id: str) -> None:
    """Hard stop (SIGKILL the worker's process group); the run is reaped as failed."""
    run = store.get_run(run_id)
    if run.pid:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait(store: Store, run_id: str, timeout: float = 600, poll: float = 0.5) -> Run:
    """Block until the run has ended (for the CLI and tests)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        store.reap_stale()
        dispatch(store)
        run = store.get_run(run_id)
        if run.status in RunStatus.ENDED:
            return run
        time.sleep(poll)
    raise TimeoutError(f"Run {run_id} did not end within {timeout:.0f} s.")


def delete(store: Store, run_id: str) -> None:
    """Delete a run's rows and its folder. Refuses while it is active."""
    import shutil
    run = store.get_run(run_id)
    if run.status in RunStatus.ACTIVE:
        raise RuntimeError("Cancel the run before deleting it.")
    store.delete_run(run_id)
    shutil.rmtree(workspace.home() / "runs" / run_id, ignore_errors=True)
