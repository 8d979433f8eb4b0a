"""Data-parallel training: two CPU processes under torchrun (gloo) train the same tiny run as one
process and report the same metrics, from rank 0 only."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.train import Callback, Dist, _shard, fit
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {root!r})
    from engine.train import Callback, fit
    from tests.conftest import tiny_config

    class Record(Callback):
        def __init__(self):
            self.epochs, self.steps = [], 0
        def on_step_end(self, state):
            self.steps += 1
        def on_epoch_end(self, state, metrics):
            self.epochs.append(sorted(metrics))

    rec = Record()
    res = fit(tiny_config(epochs=2, threads=1), [rec], checkpoint_dir={ck!r})
    rank = int(os.environ["RANK"])
    with open({out!r} + f".{{rank}}", "w") as f:
        json.dump({{"epochs": rec.epochs, "steps": rec.steps, "test": sorted(res.test),
                   "bal_acc": res.test["bal_acc"], "notes": res.state.notes,
                   "steps_per_epoch": res.state.steps_per_epoch}}, f)
""")


def test_shard_is_disjoint_and_equal():
    order = [7, 3, 9, 1, 4, 8, 2]
    import torch
    a, b = (_shard(torch.tensor(order), Dist(r, 2)).tolist() for r in (0, 1))
    assert a == [7, 9, 4] and b == [3, 1, 8] and not set(a) & set(b)


def test_two_processes_match_one(workspace, tmp_path):
    class Record(Callback):
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, state, metrics):
            self.epochs.append(sorted(metrics))

    one = Record()
    res1 = fit(tiny_config(epochs=2, threads=1), [one], checkpoint_dir=tmp_path / "one")
    script = tmp_path / "ddp_fit.py"
    out = tmp_path / "out.json"
    script.write_text(SCRIPT.format(root=str(ROOT), ck=str(tmp_path / "two"), out=str(out)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1))
    assert r0["epochs"] == one.epochs  # the same metrics, epoch by epoch
    assert r1["epochs"] == [] and r1["steps"] == 0  # rank 1 reports nothing
    assert r0["test"] == sorted(res1.test)
    assert r0["steps_per_epoch"] == (res1.state.steps_per_epoch + 1) // 2 or \
        abs(r0["steps_per_epoch"] * 2 - res1.state.steps_per_epoch) <= 2  # each rank half the images
    assert r0["bal_acc"] > 0.6 and r0["bal_acc"] == pytest.approx(r1["bal_acc"])
    assert any("data-parallel on 2 processes (gloo)" in n for n in r0["notes"])
    assert (tmp_path / "two" / "best.pt").is_file()
