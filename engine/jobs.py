"""Training runs as separate OS processes: launch, cancel, watch.

``launch(cfg)`` writes a queued run row and starts ``python -m engine.worker RUN_ID`` in its own
session (process group), so a browser reload, a Streamlit rerun or a dashboard restart never
stops training, and training never blocks the UI. Liveness is the worker's heartbeat in the store;
``Store.reap_stale`` turns a silent or dead worker into a failed run.
"""
from __future__ import annotations

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


def launch(cfg: TrainConfig, store: Store, *, kind: str = "train",
           parent_run_id: str | None = None, dashboard: bool = False) -> Run:
    """Resolve the settings left at auto from the data, store the run (status queued) with the
    resolved config, and start its worker.

    ``dashboard``: the run comes from the browser, whose user may not own this machine: a folder
    or CSV source must lie inside the allowed data roots (``TAILLAB_DATA_ROOTS``), and one CPU
    core stays free for the dashboard. From a shell (the CLI), any readable path is accepted.
    Raises DataError / ConfigError before anything is stored."""
    import json

    from engine.data.datasets import plan_data
    from engine.data.sources import allowed_roots
    from engine.defaults import resolve

    plan = plan_data(cfg.data, roots=allowed_roots() if dashboard else None)
    res = resolve(cfg, plan.profile, dashboard=dashboard) if cfg.auto_fields else None
    if res is not None:
        cfg = res.config
    run = store.create_run(to_dict(cfg), name=cfg.display_name, kind=kind,
                           parent_run_id=parent_run_id)
    if res is not None:
        store.set_tags(run.id, {"auto": res.summary, "auto_reasons": json.dumps(res.reasons)})
    folder = workspace.run_dir(run.id)
    env = dict(os.environ)
    env["TAILLAB_HOME"] = str(workspace.home())
    env.setdefault("TAILLAB_DB_URL", str(store.engine.url.render_as_string(hide_password=False)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log = open(folder / "worker.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "engine.worker", run.id], cwd=str(ROOT),
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    store.set_pid(run.id, proc.pid)
    return store.get_run(run.id)


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
