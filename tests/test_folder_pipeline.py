"""The training data pipeline on image folders (engine.data.datasets, engine.data.decode):
split folders, the messages for bad layouts, the decoded-pixel cache, allowed data roots, and the
default recipe end to end on a small real folder. Every folder is generated in tmp_path."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig, TrainConfig
from engine.data.datasets import plan_data, prepare_data
from engine.data.sources import DataError, DatasetError

PIPELINE_NOTE = "the source's own train / val / test splits are used"


@pytest.fixture
def decode_cache(tmp_path, monkeypatch):
    """A decoded-pixel cache of this test's own (conftest shares one across the session)."""
    d = tmp_path / "decode-cache"
    monkeypatch.setenv("TAILLAB_CACHE_DIR", str(d))
    return d / "decoded"


def write_images(folder, n, *, size=10, mode="L", fmt="png", seed=0, value=None, prefix="img"):
    """n images in folder: random pixels (or a constant ``value``), ``size`` an int or (h, w)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = (size, size) if isinstance(size, int) else size
    for i in range(n):
        shape = (h, w) if mode == "L" else (h, w, 3)
        arr = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(arr, mode).save(folder / f"{prefix}{i:03d}.{fmt}")


def split_folder(root, layout, **kw):
    """layout: {split folder name: {class: count}}."""
    for s, classes in layout.items():
        for c, n in classes.items():
            write_images(root / s / c, n, seed=zlib.crc32(f"{s}/{c}".encode()), **kw)
    return root


def per_class(split, n_classes):
    return np.bincount(split.labels, minlength=n_classes).tolist()


# --- 1. split folders: real class names, the folder's own splits ----------------------------------

def test_split_folder_trains_on_class_names_with_folder_counts(workspace, tmp_path):
    root = split_folder(tmp_path / "pets", {
        "train": {"cat": 40, "dog": 10, "eel": 5},  # imbalanced: 40 / 5 = 8
        "val": {"cat": 4, "dog": 4, "eel": 4},
        "test": {"cat": 6, "dog": 6, "eel": 6},
    })
    plan = plan_data(DataConfig(source=str(root)))
    assert plan.class_names == ["cat", "dog", "eel"]  # never train / val / test
    assert {s: len(sp) for s, sp in plan.splits.items()} == {"train": 55, "val": 12, "test": 18}
    assert per_class(plan.splits["train"], 3) == [40, 10, 5]
    assert per_class(plan.splits["val"], 3) == [4, 4, 4]
    assert per_class(plan.splits["test"], 3) == [6, 6, 6]
    # every image is in the split and class its folders say
    for s, sp in plan.splits.items():
        for path, label in zip(sp.paths, sp.labels):
            split_dir, cls, _ = path.split("/")
            assert split_dir == s and cls == plan.class_names[label]
    p = plan.profile
    assert p.num_classes == 3 and p.train_counts == (40, 10, 5) and p.num_train == 55
    assert p.imbalance_ratio == 8.0
    assert (p.side, p.min_side, p.max_side, p.greyscale, p.mixed_colour) == (10, 10, 10, True, False)
    assert plan.notes == [PIPELINE_NOTE]


@pytest.mark.parametrize("train_name,val_name,test_name",
                         [("train", "valid", "test"), ("train", "validation", "test"),
                          ("Training", "Val", "Testing")])
def test_split_folder_spellings(workspace, tmp_path, train_name, val_name, test_name):
    root = split_folder(tmp_path / "d", {train_name: {"a": 12, "b": 4}, val_name: {"a": 3, "b": 3},
                                         test_name: {"a": 2, "b": 5}})
    plan = plan_data(DataConfig(source=str(root)))
    assert plan.class_names == ["a", "b"]
    assert per_class(plan.splits["train"], 2) == [12, 4]
    assert per_class(plan.splits["val"], 2) == [3, 3]
    assert per_class(plan.splits["test"], 2) == [2, 5]
    assert plan.profile.imbalance_ratio == 3.0
    assert all(p.startswith(f"{val_name}/") for p in plan.splits["val"].paths)


def test_flat_folder_gets_a_stratified_split(workspace, tmp_path):
    for c, n in {"x": 20, "y": 10}.items():
        write_images(tmp_path / "flat" / c, n)
    plan = plan_data(DataConfig(source=str(tmp_path / "flat")))
    # per class: round(0.1 n) val, round(0.2 n) test, the rest train
    assert per_class(plan.splits["train"], 2) == [14, 7]
    assert per_class(plan.splits["val"], 2) == [2, 1]
    assert per_class(plan.splits["test"], 2) == [4, 2]
    assert plan.profile.train_counts == (14, 7) and plan.profile.imbalance_ratio == 2.0
    assert plan.notes[0].startswith("no split folders: stratified split 70% / 10% / 20% per class (seed 0)")


def test_saved_version_reproduces_the_split(workspace, tmp_path):
    import shutil

    root = split_folder(tmp_path / "d", {"train": {"a": 20, "b": 10}, "test": {"a": 3, "b": 3}})
    data = prepare_data(DataConfig(source=str(root)))  # saves the run's dataset version
    plan = plan_data(DataConfig(source=f"version:{data.version_id[:16]}"))
    assert plan.version_id == data.version_id and plan.class_names == ["a", "b"]
    for s in ("train", "val", "test"):
        assert plan.splits[s].paths == data.splits[s].paths
    assert plan.profile.train_counts == (18, 9) and plan.notes == [PIPELINE_NOTE]  # nothing carved again
    shutil.rmtree(root)
    with pytest.raises(DatasetError, match=f"were in {root}, which is gone"):
        plan_data(DataConfig(source=f"version:{data.version_id[:16]}"))


def test_csv_with_a_split_column(workspace, tmp_path):
    root = tmp_path / "csv"
    write_images(root / "imgs", 12)
    rows = [f"imgs/img{i:03d}.png,{'a' if i % 2 else 'b'},{['train', 'train', 'valid', 'test'][i % 4]}"
            for i in range(12)]
    (root / "list.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    plan = plan_data(DataConfig(source=str(root / "list.csv")))
    # i % 4 == 0, 1 train; 2 val; 3 test; odd i are 'a'
    assert plan.class_names == ["a", "b"]
    assert per_class(plan.splits["train"], 2) == [3, 3]
    assert per_class(plan.splits["val"], 2) == [0, 3] and per_class(plan.splits["test"], 2) == [3, 0]
    (root / "part.csv").write_text("path,label,split\n" + "\n".join(rows[:6] + [r.rsplit(",", 1)[0] + ","
                                                                               for r in rows[6:]]) + "\n")
    with pytest.raises(DatasetError, match=r"Some images have a split \(train/val/test\) and some do not"):
        plan_data(DataConfig(source=str(root / "part.csv")))


# --- 2. bad input, each with a message that says what to do ----------------------------------------

def test_class_without_training_images_is_named(workspace, tmp_path):
    root = split_folder(tmp_path / "d", {"train": {"a": 5, "b": 5},
                                         "val": {"a": 2, "b": 2, "c": 2},
                                         "test": {"a": 2, "b": 2, "c": 2, "d": 3}})
    with pytest.raises(DatasetError) as e:
        plan_data(DataConfig(source=str(root)))
    msg = str(e.value)
    assert msg.startswith("2 class(es) have no training images: 'c' (only in val and test); 'd' (only in test).")
    assert "Add training images for them, or remove them from val/test." in msg


def test_class_in_test_only_is_named(workspace, tmp_path):
    root = split_folder(tmp_path / "d", {"train": {"a": 5, "b": 5}, "test": {"a": 2, "b": 2, "zebra": 2}})
    with pytest.raises(DatasetError, match=r"1 class\(es\) have no training images: 'zebra' \(only in test\)"):
        plan_data(DataConfig(source=str(root)))


@pytest.mark.parametrize("with_class_dirs", [False, True])
def test_empty_val_folder_is_carved_from_train(workspace, tmp_path, with_class_dirs):
    root = split_folder(tmp_path / "d", {"train": {"a": 20, "b": 10}, "test": {"a": 3, "b": 3}})
    (root / "val").mkdir()
    if with_class_dirs:  # val/a/ and val/b/ exist but hold no image
        (root / "val" / "a").mkdir()
        (root / "val" / "b").mkdir()
    plan = plan_data(DataConfig(source=str(root)))
    # 10% of each class's training images: round(2.0) = 2 of a, round(1.0) = 1 of b
    assert per_class(plan.splits["val"], 2) == [2, 1]
    assert per_class(plan.splits["train"], 2) == [18, 9]
    assert per_class(plan.splits["test"], 2) == [3, 3]  # the folder's own test split, untouched
    assert all(p.startswith("train/") for p in plan.splits["val"].paths)
    assert plan.profile.train_counts == (18, 9)
    # the listing's word about the empty class folders comes first, then the split decisions
    empty = ["Class folder(s) without images: val/a, val/b."] if with_class_dirs else []
    assert plan.notes == [*empty, "no val split in the source: 10% of each class's training images became val (seed 0)",
                          PIPELINE_NOTE]
    # the carve is seeded: the same images again
    assert plan_data(DataConfig(source=str(root))).splits["val"].paths == plan.splits["val"].paths


def test_train_folder_alone_gets_val_and_test_carved(workspace, tmp_path):
    root = split_folder(tmp_path / "d", {"train": {"a": 20, "b": 10}})
    plan = plan_data(DataConfig(source=str(root)))
    assert per_class(plan.splits["val"], 2) == [2, 1]
    assert per_class(plan.splits["test"], 2) == [4, 2]
    assert per_class(plan.splits["train"], 2) == [14, 7]
    assert sum("became val" in n for n in plan.notes) == 1 and sum("became test" in n for n in plan.notes) == 1
    assert set(plan.splits["val"].paths).isdisjoint(plan.splits["test"].paths)


def test_folder_one_level_too_deep_names_the_deeper_path(workspace, tmp_path):
    top = tmp_path / "download"
    split_folder(top / "only", {"train": {"a": 3, "b": 3}, "test": {"a": 2, "b": 2}})
    with pytest.raises(DatasetError) as e:
        plan_data(DataConfig(source=str(top)))
    msg = str(e.value)
    assert f"{top} has one class (only); a classifier needs at least two." in msg
    assert "Expected FOLDER/<class>/<image> or FOLDER/train|val|test/<class>/<image>." in msg
    assert f"with the sub-folders test, train: point TailLab at {top / 'only'} (one level deeper)." in msg
    # and the folder it names works
    assert plan_data(DataConfig(source=str(top / "only"))).class_names == ["a", "b"]


def test_folder_of_loose_images_hints_at_the_parent(workspace, tmp_path):
    write_images(tmp_path / "data" / "cats", 4)
    with pytest.raises(DatasetError) as e:
        plan_data(DataConfig(source=str(tmp_path / "data" / "cats")))
    msg = str(e.value)
    assert "holds images directly: put each class's images in a sub-folder named after the class" in msg
    assert (f"'cats' looks like one class's folder: point TailLab at the folder above it, "
            f"{tmp_path / 'data'}, which holds one sub-folder per class.") in msg


def test_class_folder_inside_a_split_folder_hints_at_the_dataset(workspace, tmp_path):
    root = split_folder(tmp_path / "pets", {"train": {"cat": 4, "dog": 4}, "test": {"cat": 2, "dog": 2}})
    with pytest.raises(DatasetError) as e:
        plan_data(DataConfig(source=str(root / "train" / "cat")))
    msg = str(e.value)
    assert (f"'cat' looks like one class's folder inside the split folder 'train': point TailLab at "
            f"{root}, which holds the train / val / test folders.") in msg


def test_split_names_are_never_class_names(workspace, tmp_path):
    # split folders beside a stray folder: the listing does not see a split layout
    root = split_folder(tmp_path / "d", {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2},
                                         "extra": {"z": 2}})
    with pytest.raises(DatasetError) as e:
        plan_data(DataConfig(source=str(root)))
    msg = str(e.value)
    assert f"{root} mixes split folders (test, train) with other folders (extra)" in msg
    assert "would be trained on as class names" in msg
    # val/ and test/ without train/
    root2 = split_folder(tmp_path / "d2", {"val": {"a": 3, "b": 3}, "test": {"a": 3, "b": 3}})
    with pytest.raises(DatasetError, match=r"has the split folder\(s\) test, val but no train/ folder"):
        plan_data(DataConfig(source=str(root2)))
    # a class that happens to be called "train", holding its images directly, is still a class
    for c in ("bus", "car", "train"):
        write_images(tmp_path / "vehicles" / c, 5)
    assert plan_data(DataConfig(source=str(tmp_path / "vehicles"))).class_names == ["bus", "car", "train"]


def test_mixed_greyscale_and_colour_train_on_three_channels(workspace, tmp_path):
    from engine.defaults import resolve

    root = tmp_path / "mixed"
    for c in ("a", "b"):
        split_folder(root, {"train": {c: 6}, "val": {c: 2}, "test": {c: 2}}, mode="L")
        write_images(root / "train" / c, 6, mode="RGB", prefix="rgb")
    plan = plan_data(DataConfig(source=str(root)))
    assert (plan.profile.greyscale, plan.profile.mixed_colour) == (False, True)
    assert plan.profile.train_counts == (12, 12)
    res = resolve(TrainConfig(data=DataConfig(source=str(root))), plan.profile)
    assert res.config.data.channels == 3 and res.reasons["channels"] == "3 channels"
    assert res.summary.endswith("(greyscale and colour images mixed: trained on 3 channels)")
    data = prepare_data(DataConfig(source=str(root)))
    assert data.eval_spec.channels == 3 and data.splits["train"].images.shape == (24, 10, 10, 3)
    # a greyscale file becomes three equal channels
    train = data.splits["train"]
    grey = [i for i, p in enumerate(train.paths) if "/img" in p]
    assert len(grey) == 12
    img = train.images[grey[0]]
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    ref = np.asarray(Image.open(train.root / train.paths[grey[0]]))
    assert (img[..., 0] == ref).all()


def test_all_greyscale_trains_on_one_channel(workspace, tmp_path):
    root = split_folder(tmp_path / "g", {"train": {"a": 5, "b": 5}, "test": {"a": 2, "b": 2}})
    data = prepare_data(DataConfig(source=str(root)))
    # no val/: one of each class's 5 training images is carved (10% rounds to 0, at least 1)
    assert data.counts("train") == [4, 4] and data.counts("val") == [1, 1]
    assert data.eval_spec.channels == 1 and data.splits["train"].images.shape == (8, 10, 10)


def test_images_of_different_sizes_use_the_median(workspace, tmp_path):
    from engine.defaults import resolve

    root = tmp_path / "sizes"
    for c in ("a", "b"):
        for i, side in enumerate((16, 20, 24, 40, 100)):
            write_images(root / "train" / c, 1, size=side, seed=i, prefix=f"s{side}-")
        write_images(root / "val" / c, 2, size=30)
        write_images(root / "test" / c, 2, size=30)
    plan = plan_data(DataConfig(source=str(root)))
    # training sides 16, 16, 20, 20, 24, 24, 40, 40, 100, 100: median 24 (test images not counted)
    assert (plan.profile.side, plan.profile.min_side, plan.profile.max_side) == (24, 16, 100)
    res = resolve(TrainConfig(data=DataConfig(source=str(root))), plan.profile)
    assert res.config.data.image_size == 24 and res.reasons["image_size"] == "24 px (native)"
    assert "(sizes vary from 16 to 100 px: all resized to 24 px (median 24 px))" in res.summary
    data = prepare_data(DataConfig(source=str(root)))
    assert data.eval_spec.size == 24
    assert data.splits["train"].images.shape == (10, 24, 24) and data.splits["test"].images.shape == (4, 24, 24)


def test_side_is_the_longer_side_of_each_image(workspace, tmp_path):
    for c in ("a", "b"):
        write_images(tmp_path / "wide" / "train" / c, 3, size=(12, 30))  # 12 high, 30 wide
    plan = plan_data(DataConfig(source=str(tmp_path / "wide")))
    assert (plan.profile.side, plan.profile.min_side, plan.profile.max_side) == (30, 30, 30)


def test_8px_images_train(workspace, tmp_path):
    from engine.train import fit

    root = tmp_path / "tiny"
    # class "dark" is 0..60, class "bright" 190..255: separable by any working model
    for s, n in (("train", 24), ("val", 4), ("test", 8)):
        for c, lo in (("bright", 190), ("dark", 0)):
            d = root / s / c
            d.mkdir(parents=True)
            rng = np.random.default_rng(lo + n)
            for i in range(n):
                Image.fromarray(rng.integers(lo, lo + 61, (8, 8), dtype=np.uint8)).save(d / f"{i}.png")
    out = fit(TrainConfig(data=DataConfig(source=str(root)), epochs=3, batch_size=8))
    cfg = out.state.cfg
    assert (cfg.model, cfg.data.image_size, cfg.data.channels, cfg.loss) == ("compact_cnn", 8, 1, "ce")
    assert out.state.data.splits["train"].images.shape == (48, 8, 8)
    assert out.state.steps_per_epoch == 6 and out.state.step == 18  # 48 images / batch 8, 3 epochs
    assert out.test_eval.logits.shape == (16, 2)
    assert out.test["bal_acc"] == 1.0


# --- allowed data roots: the dashboard is held to them, the CLI is not ---------------------------

@pytest.fixture
def roots_env(workspace, tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("TAILLAB_DATA_ROOTS", str(allowed))
    layout = {"train": {"a": 6, "b": 6}, "val": {"a": 2, "b": 2}, "test": {"a": 2, "b": 2}}
    outside = split_folder(tmp_path / "outside", layout)
    inside = split_folder(allowed / "inside", layout)
    return allowed, inside, outside


def test_plan_refuses_a_dashboard_path_outside_the_roots(roots_env, tmp_path):
    from engine.data.sources import allowed_roots

    allowed, inside, outside = roots_env
    roots = allowed_roots()
    assert roots == [allowed.resolve(), (tmp_path / "ws" / "datasets").resolve()]
    with pytest.raises(DataError) as e:
        plan_data(DataConfig(source=str(outside)), roots=roots)
    assert f"{outside} is outside the allowed data folders" in str(e.value)
    assert "add its folder to TAILLAB_DATA_ROOTS" in str(e.value)
    # a link inside the allowed folder that points outside it is refused too
    (allowed / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataError, match="is outside the allowed data folders"):
        plan_data(DataConfig(source=str(allowed / "link")), roots=roots)
    # inside: fine; the CLI (roots=None): any readable path
    assert plan_data(DataConfig(source=str(inside)), roots=roots).profile.train_counts == (6, 6)
    assert plan_data(DataConfig(source=str(outside))).profile.train_counts == (6, 6)


def test_dashboard_launch_refused_before_a_run_exists(roots_env, store):
    from engine import jobs

    _, _, outside = roots_env
    cfg = TrainConfig(data=DataConfig(source=str(outside)), epochs=1)
    with pytest.raises(DataError, match="is outside the allowed data folders"):
        jobs.launch(cfg, store, dashboard=True)
    assert store.list_runs() == []


def test_cli_accepts_a_path_outside_the_roots(roots_env, store, capsys):
    from engine import cli, jobs

    _, _, outside = roots_env
    assert cli.main(["train", "--dataset", str(outside), "--epochs", "1", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# auto: 10 px greyscale, 12 images, ratio 1 -> Compact CNN at 10 px, 1 channel, "
                          "cross-entropy, AdamW lr 0.002")
    assert f'source = "{outside}"' in out and 'model = "compact_cnn"' in out
    # and a CLI launch (dashboard=False) of that path trains to the end
    args = cli.build_parser().parse_args(["train", "--dataset", str(outside), "--epochs", "1"])
    cfg = cli.build_train_config(args)
    run = jobs.launch(cfg, store, dashboard=False)
    run = jobs.wait(store, run.id, timeout=180)
    assert run.status == "finished", run.error
    assert run.config["model"] == "compact_cnn" and run.config["data"]["image_size"] == 10
    assert run.tags["auto"].startswith("10 px greyscale, 12 images, ratio 1 -> Compact CNN at 10 px")


# --- 4. decoded pixels: the cache equals a fresh decode -----------------------------------------------

def _exif_jpeg(path, shape):
    """A JPEG stored ``shape`` (h, w) with its top 4 rows white, EXIF orientation 6 (rotate 90°
    clockwise to display): upright it is (w, h) with its right 4 columns white."""
    arr = np.zeros((*shape, 3), np.uint8)
    arr[:4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(path, exif=exif.tobytes(), quality=95)


def _mixed_formats(root):
    """Two classes of every kind of file the decoder has a path for."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:20, 0:30]
    smooth = np.stack([(xx * 8) % 256, (yy * 12) % 256, ((xx + yy) * 5) % 256], -1).astype(np.uint8)
    for c in ("a", "b"):
        d = root / "train" / c
        d.mkdir(parents=True)
        for i in range(2):
            noise = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
            for name, arr in (("smooth", smooth), ("noise", noise)):
                rgb = Image.fromarray(arr)
                for mode in ("L", "RGB"):
                    rgb.convert(mode).save(d / f"{name}{i}-{mode}.png")
                    rgb.convert(mode).save(d / f"{name}{i}-{mode}.jpg", quality=90)
                    rgb.convert(mode).save(d / f"{name}{i}-{mode}.bmp")
            rgb.quantize(16).save(d / f"pal{i}.png")  # palette: Pillow path
            g16 = (rng.integers(0, 65536, (18, 22))).astype(np.uint16)
            Image.fromarray(g16).save(d / f"g16-{i}.png")  # 16-bit greyscale: Pillow path
            _exif_jpeg(d / f"exif{i}.jpg", (20, 30))
            _exif_jpeg(d / f"exifsq{i}.jpg", (24, 24))  # square: the shape check cannot catch it
    return root


def _reference(path, size, channels):
    """What prediction computes from the file: Pillow decode, then the evaluation transform's resize."""
    from engine.data.decode import decode_pillow
    from torchvision.transforms.v2.functional import resize

    arr = decode_pillow(str(path), channels)
    t = torch.from_numpy(arr)[None] if arr.ndim == 2 else torch.from_numpy(arr).permute(2, 0, 1)
    out = resize(t, [size, size], antialias=True)
    return out[0].numpy() if channels == 1 else out.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_cache_equals_a_fresh_pillow_decode(workspace, decode_cache, tmp_path, channels):
    from engine.data.decode import cache_path
    from engine.transforms import EvalTransform

    root = _mixed_formats(tmp_path / "formats")
    cfg = DataConfig(source=str(root), image_size=16, channels=channels)
    first = prepare_data(cfg)
    n = sum(len(s) for s in first.splits.values())
    assert n == 2 * 2 * (12 + 1 + 1 + 2)  # 2 classes x 2 x (12 PNG/JPEG/BMP, palette, 16-bit, 2 EXIF JPEGs)
    assert first.notes[-1].startswith(f"{n} images decoded once into the cache (")
    assert first.notes[-1].endswith(f"16x16x{channels}); later runs reuse it")
    path = cache_path(first_plan_hash(cfg), 16, channels)
    assert path.is_file() and path.parent == decode_cache and path.name.endswith(f"-16px-{channels}ch-v1.npy")
    assert np.load(path).shape == ((n, 16, 16) if channels == 1 else (n, 16, 16, 3))

    again = prepare_data(cfg)
    assert again.notes[-1].startswith(f"{n} images read from the decoded cache (")
    assert again.eval_spec == first.eval_spec and again.in_memory
    spec = first.eval_spec
    eval_t = EvalTransform(spec)
    checked = 0
    for s in ("train", "val", "test"):
        a, b = first.splits[s], again.splits[s]
        assert a.paths == b.paths and (a.images == b.images).all()
        for path_rel, img in zip(a.paths, a.images):
            ref = _reference(a.root / path_rel, 16, channels)
            assert img.dtype == np.uint8 and img.shape == ref.shape
            assert np.array_equal(img, ref), path_rel
            # the model's input from the cache equals prediction's from the full-size file
            t = torch.from_numpy(img)[None] if channels == 1 else torch.from_numpy(img).permute(2, 0, 1)
            from engine.data.decode import decode_pillow
            full = decode_pillow(str(a.root / path_rel), channels)
            tf = torch.from_numpy(full)[None] if channels == 1 else torch.from_numpy(full).permute(2, 0, 1)
            assert torch.equal(eval_t(t.contiguous()), eval_t(tf.contiguous()))
            checked += 1
    assert checked == n
    # the EXIF-rotated files are upright: right quarter white, left quarter black
    for s in ("train", "val", "test"):
        sp = first.splits[s]
        for path_rel, img in zip(sp.paths, sp.images):
            if "/exif" in path_rel:
                grey = img if channels == 1 else img.mean(axis=2)
                assert grey[:, -3:].mean() > 150 and grey[:, :3].mean() < 40, path_rel


def first_plan_hash(cfg):
    return plan_data(cfg).base.hash


def test_exif_orientation_6_decodes_upright(tmp_path):
    from engine.data.decode import _cv2, decode_file, decode_pillow
    from engine.data.scan import _decode_facts

    for shape in ((20, 30), (24, 24)):
        p = tmp_path / f"e{shape[0]}.jpg"
        _exif_jpeg(p, shape)
        ok, _, fmt, mode, w, h, *_ = _decode_facts(p.read_bytes())
        assert ok and (fmt, mode, h, w) == ("JPEG", "RGB", shape[1], shape[0])  # upright facts
        for arr in (decode_pillow(str(p), 3), decode_file(str(p), 3, fmt=fmt, mode=mode, upright=(h, w), cv2=_cv2())):
            assert arr.shape == (shape[1], shape[0], 3)
            assert arr[:, -4:].min() > 200 and arr[:, :-5].max() < 60


def test_damaged_cache_is_decoded_again(workspace, tmp_path, monkeypatch):
    from engine.data.decode import cache_path

    monkeypatch.delenv("TAILLAB_CACHE_DIR")  # the workspace's own cache
    root = split_folder(tmp_path / "d", {"train": {"a": 5, "b": 5}})
    cfg = DataConfig(source=str(root))
    first = prepare_data(cfg)
    assert first.notes[-1].startswith("10 images decoded once into the cache")
    path = cache_path(plan_data(cfg).base.hash, 10, 1)
    assert path.parent == workspace / "cache" / "decoded" and path.is_file()
    path.write_bytes(path.read_bytes()[:100])  # truncated
    again = prepare_data(cfg)
    assert again.notes[-1].startswith("10 images decoded once into the cache")
    for s in first.splits:
        assert (first.splits[s].images == again.splits[s].images).all()


def test_constant_images_give_hand_computed_mean_and_std(workspace, tmp_path):
    root = tmp_path / "const"
    write_images(root / "train" / "dark", 6, value=51)  # 0.2
    write_images(root / "train" / "light", 6, value=204)  # 0.8
    write_images(root / "test" / "dark", 2, value=0)  # test pixels do not count
    write_images(root / "test" / "light", 2, value=0)
    data = prepare_data(DataConfig(source=str(root)))
    # half the training pixels 0.2, half 0.8: mean 0.5, std 0.3 (val carved from train keeps it 5/5)
    assert data.counts("train") == [5, 5]
    assert data.eval_spec.mean == (0.5,) and data.eval_spec.std == (0.3,)


def test_over_the_cache_limit_images_stream_from_files(workspace, decode_cache, tmp_path, monkeypatch):
    root = _mixed_formats(tmp_path / "formats")
    cfg = DataConfig(source=str(root), image_size=16, channels=3)
    cached = prepare_data(cfg)
    monkeypatch.setenv("TAILLAB_DECODE_CACHE_MB", "0.01")  # 10 kB: 64 images of 768 B do not fit
    streamed = prepare_data(cfg)
    assert not streamed.in_memory and all(s.images is None for s in streamed.splits.values())
    assert streamed.notes[-1] == ("images are decoded from their files every epoch: decoded, the 64 images "
                                  "would take 48 kB, over the 0.01 MB cache limit (TAILLAB_DECODE_CACHE_MB)")
    # the same normalisation as from the decoded arrays, computed from the files
    assert streamed.eval_spec == cached.eval_spec
    # and a file-backed dataset item equals the cached pixels after the eval resize
    from engine.data.datasets import ImageDataset
    from engine.transforms import EvalTransform
    t = EvalTransform(streamed.eval_spec)
    ds_file = ImageDataset(streamed.splits["train"], 3, t)
    ds_mem = ImageDataset(cached.splits["train"], 3, t)
    for i in range(len(ds_file)):
        (x1, y1), (x2, y2) = ds_file[i], ds_mem[i]
        assert y1 == y2 and torch.equal(x1, x2)


@pytest.mark.parametrize("fmt", ["png", "jpg", "bmp"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_opencv_decode_within_one_grey_level_of_pillow(tmp_path, monkeypatch, fmt, mode):
    from engine.data import decode

    cv2 = decode._cv2()
    assert cv2 is not None
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:20, 0:30]
    images = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
              np.stack([(xx * 8) % 256, (yy * 12) % 256, ((xx + yy) * 5) % 256], -1).astype(np.uint8)]
    for k, arr in enumerate(images):
        p = tmp_path / f"{k}.{fmt}"
        Image.fromarray(arr).convert(mode).save(p)
        with Image.open(p) as im:
            facts = dict(fmt=im.format, mode=im.mode, upright=(im.height, im.width))
        assert facts["mode"] == mode
        for channels in (1, 3):
            ref = decode.decode_pillow(str(p), channels)
            uses_cv2 = not (mode == "RGB" and channels == 1)  # RGB -> L is Pillow's conversion
            if uses_cv2:  # prove the OpenCV path ran: Pillow would raise
                monkeypatch.setattr(decode, "decode_pillow", lambda *a, **k: pytest.fail("Pillow path taken"))
            got = decode.decode_file(str(p), channels, cv2=cv2, **facts)
            monkeypatch.undo()
            assert got.shape == ref.shape and got.dtype == np.uint8
            assert int(np.abs(got.astype(int) - ref).max()) <= 1, (fmt, mode, channels)


def test_other_formats_and_modes_use_pillow(tmp_path, monkeypatch):
    from engine.data import decode

    rng = np.random.default_rng(4)
    files = {}
    Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).quantize(8).save(tmp_path / "p.png")
    files["p.png"] = "P"
    Image.fromarray(rng.integers(0, 65536, (9, 11)).astype(np.uint16)).save(tmp_path / "g16.png")
    files["g16.png"] = "I;16"
    Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA").save(tmp_path / "a.png")
    files["a.png"] = "RGBA"
    Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(tmp_path / "w.webp")
    files["w.webp"] = "RGB"
    calls = []
    real = decode.decode_pillow
    monkeypatch.setattr(decode, "decode_pillow", lambda p, c: calls.append(p) or real(p, c))
    for name, mode in files.items():
        with Image.open(tmp_path / name) as im:
            assert im.mode == mode
            fmt = im.format
        out = decode.decode_file(str(tmp_path / name), 3, fmt=fmt, mode=mode, upright=(9, 11), cv2=decode._cv2())
        assert out.shape == (9, 11, 3)
    assert len(calls) == 4
    # 16-bit greyscale is scaled to 8 bits (v / 257, rounded)
    g = np.asarray(Image.open(tmp_path / "g16.png")).astype(np.float64)
    assert np.array_equal(real(str(tmp_path / "g16.png"), 1), np.clip(g / 257 + 0.5, 0, 255).astype(np.uint8))


# --- 5. the default recipe on a small real folder -------------------------------------------------

def test_default_recipe_learns_a_small_mnist_folder(workspace, tmp_path):
    from engine.data.builtin import load_builtin
    from engine.train import fit

    d = load_builtin("mnist")
    root = tmp_path / "mnist"
    train_counts = [round(150 * 0.1 ** (i / 9)) for i in range(10)]  # 150 ... 15, ratio 10
    assert train_counts == [150, 116, 90, 70, 54, 42, 32, 25, 19, 15]
    for c in range(10):
        pool = np.flatnonzero(d.train_labels == c)
        for s, idx in (("train", pool[:train_counts[c]]), ("val", pool[-30:])):
            (root / s / d.class_names[c]).mkdir(parents=True)
            for i in idx:
                Image.fromarray(d.train_images[i]).save(root / s / d.class_names[c] / f"{i}.png")
        (root / "test" / d.class_names[c]).mkdir(parents=True)
        for i in np.flatnonzero(d.test_labels == c)[:30]:
            Image.fromarray(d.test_images[i]).save(root / "test" / d.class_names[c] / f"{i}.png")
    out = fit(TrainConfig(data=DataConfig(source=str(root)), epochs=8))
    cfg = out.state.cfg
    assert (cfg.model, cfg.data.image_size, cfg.data.channels) == ("compact_cnn", 28, 1)
    assert (cfg.loss, cfg.optimizer, cfg.lr, cfg.weight_decay) == ("logit_adjusted", "adamw", 2e-3, 0.05)
    assert out.state.auto.startswith("28 px greyscale, 613 images, ratio 10 -> Compact CNN at 28 px, 1 channel, "
                                     "logit-adjusted cross-entropy, AdamW lr 0.002")
    assert out.state.data.counts("train") == train_counts and out.state.data.counts("test") == [30] * 10
    assert out.state.data.class_names == list(d.class_names)
    # measured 0.82 (seed 0, 8 epochs of 5 steps); chance is 0.1
    assert out.test["bal_acc"] > 0.7
