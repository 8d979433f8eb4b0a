"""engine.data.prepare: the Data page's plan applied to a real scanned folder."""
import numpy as np
import pytest
from PIL import Image

from engine.data.manifest import manifest_from_scan
from engine.data.prepare import VersionPlan, apply_plan
from engine.data.scan import scan_folder
from engine.data.sources import DataError
from engine.data.stats import compute_stats


@pytest.fixture
def scanned(workspace):
    rng = np.random.default_rng(0)
    root = workspace / "pets"
    for c, (name, n) in enumerate({"cat": 20, "kitty": 5, "dog": 12, "eel": 4}.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / name / f"{i:02d}.png")
    (root / "dog" / "thin.png").write_bytes(b"")  # unreadable: never in a version
    Image.fromarray(rng.integers(0, 255, (4, 40, 3), dtype=np.uint8)).save(root / "eel" / "sliver.png")
    # the same picture as a cat and as a dog: a label conflict
    (root / "dog" / "cat-copy.png").write_bytes((root / "cat" / "00.png").read_bytes())
    scan = scan_folder(root)
    return manifest_from_scan(scan), compute_stats(scan)


def test_default_plan_splits_every_class(scanned):
    base, stats = scanned
    m, warnings = apply_plan(base, VersionPlan(), stats)
    assert m.is_split and m.parent == base.hash and m.num_images == base.num_images == 43
    assert m.class_counts["test"]["cat"] == 4 and m.class_counts["val"]["cat"] == 2
    assert not warnings


def test_fixes_classes_and_long_tail_in_order(scanned):
    base, stats = scanned
    plan = VersionPlan(exclude=("cat/01.png",), exclude_tiny=True, exclude_extreme_aspect=True,
                       drop_conflicts=True, rename=(("kitty", "cat"),), drop_classes=("eel",),
                       val=0.2, test=0.2, seed=1, longtail_ratio=4.0)
    m, warnings = apply_plan(base, plan, stats)
    paths = {r.path for r in m.rows}
    assert "cat/01.png" not in paths and "eel/sliver.png" not in paths
    assert "cat/00.png" not in paths and "dog/cat-copy.png" not in paths  # both sides of the conflict
    assert m.classes == ["cat", "dog"]  # kitty merged into cat, eel dropped
    assert sum(m.class_counts[s]["cat"] for s in m.splits) <= 20 + 5 - 2
    train = m.class_counts["train"]
    assert train["dog"] == train["cat"] // 4  # long-tailed training split: n_max, n_max / ratio 4
    assert m.class_counts["val"]["cat"] == 5 and m.class_counts["test"]["cat"] == 5  # kept whole
    assert any("excluded 1 file" in a for a in m.actions) and any("renamed kitty -> cat" in a for a in m.actions)
    assert isinstance(warnings, list)


def test_split_warnings_and_bad_plans(scanned):
    base, stats = scanned
    _, warnings = apply_plan(base, VersionPlan(min_val=3, min_test=3), stats)
    assert any("'eel'" in w for w in warnings)  # 5 images cannot give 3 + 3 and keep one
    with pytest.raises(DataError, match="Nothing is left"):
        apply_plan(base, VersionPlan(drop_classes=("cat", "kitty", "dog", "eel")), stats)
    with pytest.raises(DataError, match="no split in the source"):
        apply_plan(base, VersionPlan(split="keep"), stats)
    with pytest.raises(DataError, match="Valid choices"):
        VersionPlan(split="random")
