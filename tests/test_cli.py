"""The shell interface, as a user runs it (real subprocesses, real workspace)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def taillab(*args, home: Path, timeout=300):
    env = dict(os.environ, TAILLAB_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=str(ROOT))


def test_train_from_toml_then_list_json(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('name = "from-toml"\nepochs = 2\nbatch_size = 32\nlr = 0.1\n'
                   '[data]\nsource = "builtin:mnist"\nimbalance_ratio = 10.0\nn_max = 200\n'
                   'val_per_class = 10\ntest_per_class = 50\n')
    out = taillab("train", "--config", str(cfg), "--seed", "3", home=tmp_path / "ws")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "run id:" in out.stdout and "epoch 2/2" in out.stdout and "finished" in out.stdout
    rows = json.loads(taillab("runs", "list", "--json", home=tmp_path / "ws").stdout)
    assert len(rows) == 1 and rows[0]["name"] == "from-toml" and rows[0]["status"] == "finished"
    assert 0 < rows[0]["test_acc"] <= 1 and rows[0]["model"] == "compact_cnn"  # auto, resolved
    shown = json.loads(taillab("runs", "show", rows[0]["id"], "--json", home=tmp_path / "ws").stdout)
    assert shown["config"]["seed"] == 3 and shown["config"]["data"]["n_max"] == 200


def test_unknown_model_lists_valid_ones(tmp_path):
    out = taillab("train", "--model", "vgg99", home=tmp_path / "ws")
    assert out.returncode == 2
    assert "Invalid model 'vgg99'" in out.stderr and "resnet18" in out.stderr and "small_cnn" in out.stderr


def test_unknown_optimizer_and_bad_toml(tmp_path):
    out = taillab("train", "--optimizer", "rmsprop", home=tmp_path / "ws")
    assert out.returncode == 2 and "sgd, adam, adamw" in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    out = taillab("train", "--config", str(bad), home=tmp_path / "ws")
    assert out.returncode == 2 and "Unknown TrainConfig setting(s): epochz" in out.stderr


def test_print_config_round_trips(tmp_path):
    out = taillab("train", "--model", "resnet18", "--dataset", "animal_mnist", "--print-config",
                  home=tmp_path / "ws")
    assert out.returncode == 0 and 'model = "resnet18"' in out.stdout
    assert 'source = "builtin:animal_mnist"' in out.stdout
    (tmp_path / "r.toml").write_text(out.stdout)
    again = taillab("train", "--config", str(tmp_path / "r.toml"), "--print-config", home=tmp_path / "ws")
    # the first print resolved the auto settings (and says so); the saved file has none left
    assert out.stdout.startswith("# auto: 28 px greyscale") and "ResNet-18 at 32 px" in out.stdout
    assert again.stdout == out.stdout.split("\n", 1)[1]


def test_predict_unknown_run(tmp_path):
    out = taillab("predict", "--run", "nope", str(tmp_path / "x.png"), home=tmp_path / "ws")
    assert out.returncode == 2 and "No checkpoint" in out.stderr


def test_every_setting_has_a_flag_with_help():
    """The train flags are generated from TrainConfig / DataConfig: each field has one, with its
    comment from engine/config.py as help, and a flag sets the field (lists, JSON, booleans)."""
    import argparse
    import dataclasses

    from engine.cli import build_parser, build_train_config
    from engine.config import DataConfig, TrainConfig

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    flags = {a.dest: a for a in train._actions}
    for f in dataclasses.fields(TrainConfig):
        if f.name != "data":
            assert f.name in flags and flags[f.name].help, f.name
    for f in dataclasses.fields(DataConfig):
        dest = {"source": "dataset", "seed": "data_seed"}.get(f.name, f.name)
        assert dest in flags and flags[dest].help, f.name
    args = parser.parse_args(["train", "--scheduler", "multistep", "--milestones", "3,6", "--gamma", "0.5",
                              "--loss-params", '{"tau": 1.5}', "--loss", "logit_adjusted", "--no-nesterov",
                              "--early-stop-patience", "2", "--label-smoothing", "0.1", "--n-max", "300"])
    cfg = build_train_config(args)
    assert (cfg.scheduler, cfg.milestones, cfg.gamma, cfg.loss_params) == ("multistep", [3, 6], 0.5, {"tau": 1.5})
    assert (cfg.nesterov, cfg.early_stop_patience, cfg.label_smoothing, cfg.data.n_max) == (False, 2, 0.1, 300)
    assert isinstance(flags["pretrained"], argparse.BooleanOptionalAction)
