"""A user's own folder -> scan -> dataset version (split, saved) -> a run trains on that version."""
import numpy as np
import pytest
from PIL import Image

from engine.config import DataConfig, TrainConfig
from engine.data.datasets import prepare_data
from engine.data.sources import DatasetError
from engine.data.manifest import manifest_from_scan, save_manifest
from engine.data.scan import scan_folder
from engine.data.split import stratified_split
from engine.train import fit


def _folder(root, counts):
    rng = np.random.default_rng(0)
    for c, (name, n) in enumerate(counts.items()):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            # class c: a class-specific colour, plus noise
            colour = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (200, 200, 200)][c]
            a = np.clip(rng.normal(colour, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(d / f"{i}.png")
    return root


def test_train_on_a_saved_split_version(workspace):
    root = _folder(workspace / "my data", {"cat ü": 40, "dog": 20, "eel": 12, "fox": 8})
    scan = scan_folder(root, roots=[workspace])
    m = stratified_split(manifest_from_scan(scan), val=0.2, test=0.25, seed=0).manifest
    save_manifest(m)
    data = prepare_data(DataConfig(source=f"version:{m.hash[:16]}", image_size=32))
    assert data.version_id == m.hash
    assert data.class_names == ["cat ü", "dog", "eel", "fox"]
    assert sum(len(s) for s in data.splits.values()) == 80
    assert data.counts("train") == [m.class_counts["train"][c] for c in data.class_names]
    r = fit(TrainConfig(data=data.config, epochs=6, batch_size=8, lr=0.05), data=data)
    assert r.test["bal_acc"] > 0.5  # 4 trivially separable classes


def test_unknown_version_is_a_clear_error(workspace):
    with pytest.raises(DatasetError, match="No saved manifest"):
        prepare_data(DataConfig(source="version:deadbeefdeadbeef"))
