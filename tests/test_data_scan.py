"""Scanning and statistics against hand-computed values on small generated folders."""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import scan as scan_mod
from engine.data.scan import scan_folder
from engine.data.sources import DataError
from engine.data.stats import compute_stats, gini, near_pairs, normalised_entropy, summarize_counts


# --- helpers (also used by the other test_data_* files) ------------------------------------------

def solid(path: Path, color, size=(20, 20), mode="RGB", **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save)
    return path


def textured(path: Path, seed: int, size=(64, 48), **save) -> Path:
    """A smooth random picture (distinct dHash per seed)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    coarse.resize(size, Image.Resampling.BILINEAR).save(path, **save)
    return path


def make_counts(root: Path, counts: dict[str, int], ext=".png") -> Path:
    k = 0
    for label, n in counts.items():
        for i in range(n):
            textured(root / label / f"{i:03d}{ext}", seed=k)
            k += 1
    return root


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """An allowed data root and a workspace, both under tmp_path."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("TAILLAB_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv("TAILLAB_DATA_ROOTS", str(root))
    return root


def run_scan(root, **kw):
    kw.setdefault("workers", 1)
    return scan_folder(root, **kw)


# --- class-count figures -------------------------------------------------------------------------

def test_count_figures_by_hand(data_root):
    src = make_counts(data_root / "three", {"a": 8, "b": 4, "c": 2})
    st = compute_stats(run_scan(src), many=5, few=3)
    assert st.num_images == 14 and st.num_classes == 3
    assert [(c.name, c.count) for c in st.classes] == [("a", 8), ("b", 4), ("c", 2)]
    assert st.summary.imbalance_ratio == 4
    # sum |x_i - x_j| over ordered pairs = 2 * (4 + 6 + 2) = 24; 2 * C^2 * mean = 2 * 9 * 14/3 = 84
    assert st.summary.gini == pytest.approx(24 / 84)
    p = np.array([8, 4, 2]) / 14
    assert st.summary.entropy == pytest.approx(-(p * np.log(p)).sum() / math.log(3))
    assert (st.summary.many, st.summary.medium, st.summary.few) == (1, 1, 1)  # 8 > 5; 3 <= 4 <= 5; 2 < 3
    assert [c.group for c in st.classes] == ["many", "medium", "few"]
    assert st.summary.cumulative_share == pytest.approx([8 / 14, 12 / 14, 1.0])
    assert st.summary.classes_for_80 == 2
    assert st.counts == {"unsplit": {"a": 8, "b": 4, "c": 2}}


def test_count_figures_edge_cases():
    assert gini([5, 5, 5]) == 0 and normalised_entropy([5, 5, 5]) == pytest.approx(1)
    assert gini([0, 0, 10]) == pytest.approx(2 / 3)  # (2 * (10 + 10)) / (2 * 9 * 10/3)
    s = summarize_counts([7])
    assert (s.imbalance_ratio, s.gini, s.entropy, s.classes_for_80) == (1, 0, 1, 1)
    s = summarize_counts([80, 10, 10])
    assert s.classes_for_80 == 1  # exactly 80%
    assert math.isnan(summarize_counts([]).imbalance_ratio)


# --- image properties ----------------------------------------------------------------------------

def test_mean_std_of_solid_colours_exact(data_root):
    colours = {"red": (255, 0, 0), "grey": (128, 128, 128), "mix": (10, 200, 60)}
    src = data_root / "solid"
    for i, (name, c) in enumerate(colours.items()):
        solid(src / name / "a.png", c, size=(20 + i, 30))
        solid(src / name / "b.jpg", c, size=(40, 40), quality=100, subsampling=0)
    st = compute_stats(run_scan(src))
    # JPEG keeps a flat colour within +-1 level; each image counts once.
    rgb = np.array([c for c in colours.values() for _ in range(2)], dtype=np.float64) / 255
    assert st.mean == pytest.approx(rgb.mean(axis=0), abs=1.5 / 255)
    assert st.std == pytest.approx(rgb.std(axis=0), abs=1.5 / 255)
    grey = np.array([Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0))
                     for c in colours.values() for _ in range(2)]) / 255
    assert st.grey_mean == pytest.approx(grey.mean(), abs=1.5 / 255)
    assert st.grey_std == pytest.approx(grey.std(), abs=1.5 / 255)
    assert st.stats_split == "all"


def test_mean_std_png_exact_and_train_split_only(data_root):
    src = data_root / "splits"
    solid(src / "train" / "a" / "1.png", (100, 50, 0))
    solid(src / "train" / "a" / "2.png", (200, 150, 20), size=(35, 17))
    solid(src / "test" / "a" / "3.png", (0, 0, 0))  # not part of the training statistics
    st = compute_stats(run_scan(src))
    assert st.stats_split == "train" and st.splits == ["train", "test"]
    assert st.mean == pytest.approx((150 / 255, 100 / 255, 10 / 255), abs=1e-9)
    assert st.std == pytest.approx((50 / 255, 50 / 255, 10 / 255), abs=1e-7)
    assert st.counts == {"train": {"a": 2}, "test": {"a": 1}}


def test_downscaled_statistics_close_to_full_resolution(data_root):
    src = data_root / "big"
    _mk(src / "c")
    arrays = []
    for i in range(4):
        rng = np.random.default_rng(i)
        base = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((640, 480), Image.Resampling.BICUBIC)
        arr = np.clip(np.asarray(base, dtype=np.int16) + rng.integers(-20, 21, (480, 640, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(src / "c" / f"{i}.png")
        arrays.append(arr.astype(np.float64) / 255)
    st = compute_stats(run_scan(src))
    full_mean = np.mean([a.mean(axis=(0, 1)) for a in arrays], axis=0)
    full_sq = np.mean([(a**2).mean(axis=(0, 1)) for a in arrays], axis=0)
    assert np.abs(np.array(st.mean) - full_mean).max() < 0.002
    # pixel noise of +-20 levels is what a 7x reduction removes; it stays a small part of the std
    assert np.abs(np.array(st.std) - np.sqrt(full_sq - full_mean**2)).max() < 0.01
    assert st.width["max"] == 640 and st.height["max"] == 480


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_modes_formats_and_odd_images_read(data_root):
    src = data_root / "modes"
    solid(src / "k" / "rgb.png", (1, 2, 3))
    solid(src / "k" / "grey.png", 77, mode="L")
    solid(src / "k" / "rgba.png", (10, 20, 30, 255), mode="RGBA")
    Image.new("RGB", (20, 20), (200, 10, 10)).convert("P").save(src / "k" / "palette.png")
    solid(src / "k" / "cmyk.jpg", (0, 255, 255, 0), mode="CMYK")
    Image.fromarray(np.full((20, 20), 65535 // 2, dtype=np.uint16)).save(src / "k" / "deep.png")
    solid(src / "k" / "x.bmp", (5, 5, 5))
    solid(src / "k" / "w.webp", (9, 9, 9))
    sc = run_scan(src)
    assert all(f.ok for f in sc.images), [(f.rel, f.error) for f in sc.images if not f.ok]
    st = compute_stats(sc)
    assert st.modes == {"RGB": 3, "L": 1, "RGBA": 1, "P": 1, "CMYK": 1, "16-bit": 1}
    assert st.formats == {"PNG": 5, "JPEG": 1, "BMP": 1, "WEBP": 1}
    by = {f.rel.split("/")[-1]: f for f in sc.images}
    assert by["deep.png"].mean[0] == pytest.approx((65535 // 2) / 257 / 255, abs=1 / 255)
    assert by["cmyk.jpg"].mean[:3] == pytest.approx((1.0, 0.0, 0.0), abs=3 / 255)  # C,M,Y,K = red
    assert by["palette.png"].mean[:3] == pytest.approx((200 / 255, 10 / 255, 10 / 255), abs=3 / 255)


def test_exif_rotation_gives_upright_size(data_root):
    img = Image.new("RGB", (60, 20), (50, 60, 70))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    _mk(data_root / "rot" / "a")
    img.save(data_root / "rot" / "a" / "r.jpg", exif=exif.tobytes())
    f = run_scan(data_root / "rot").images[0]
    assert (f.width, f.height) == (20, 60) and f.ok


# --- problems ------------------------------------------------------------------------------------

def _png_bomb(path: Path, w: int, h: int) -> None:
    """A tiny PNG whose header claims w x h pixels."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


def test_broken_files_are_listed_with_reasons(data_root):
    src = data_root / "broken"
    good = textured(src / "ok" / "good.png", 1)
    textured(src / "ok" / "good2.jpg", 2, quality=90)
    (src / "bad").mkdir()
    (src / "bad" / "empty.png").write_bytes(b"")
    data = good.read_bytes()
    (src / "bad" / "trunc.png").write_bytes(data[: len(data) // 2])
    (src / "bad" / "lost_end.png").write_bytes(data[:-20])
    jpg = (src / "ok" / "good2.jpg").read_bytes()
    (src / "bad" / "trunc.jpg").write_bytes(jpg[: len(jpg) // 2])
    (src / "bad" / "text.jpg").write_text("hello, not a picture")
    _png_bomb(src / "bad" / "bomb.png", 12_000, 10_000)  # 120 Mpx: over the limit, under Pillow's error
    _png_bomb(src / "bad" / "huge.png", 40_000, 40_000)  # over Pillow's own hard limit
    (src / "bad" / "notes.txt").write_text("ignored: not an image name")
    st = compute_stats(run_scan(src), min_class_images=1)
    reasons = dict(st.corrupt)
    assert set(reasons) == {f"bad/{n}" for n in ("empty.png", "trunc.png", "lost_end.png", "trunc.jpg",
                                                  "text.jpg", "bomb.png", "huge.png")}
    assert "empty" in reasons["bad/empty.png"]
    assert "truncated" in reasons["bad/trunc.png"] and "truncated" in reasons["bad/trunc.jpg"]
    assert "truncated" in reasons["bad/lost_end.png"]
    assert "not an image" in reasons["bad/text.jpg"]
    assert "decompression bomb" in reasons["bad/bomb.png"] and "decompression bomb" in reasons["bad/huge.png"]
    assert st.num_images == 2 and st.num_files == 9
    assert st.empty_classes == ["bad"]
    d = st.to_dict()
    assert sorted(d["corrupt"]) == sorted(reasons)
    assert [c["name"] for c in d["classes"]] == ["ok", "bad"]


def test_duplicates_within_across_classes_and_splits(data_root):
    src = data_root / "dups"
    a = textured(src / "train" / "cat" / "a.png", 1)
    textured(src / "train" / "cat" / "b.png", 2)
    textured(src / "train" / "dog" / "c.png", 3)
    shutil.copy(a, src / "train" / "cat" / "a_copy.png")  # within class
    shutil.copy(a, src / "train" / "dog" / "a_as_dog.png")  # label conflict
    shutil.copy(src / "train" / "dog" / "c.png", _mk(src / "test" / "dog") / "c_leak.png")  # leakage
    # near duplicates: b re-encoded as JPEG at a smaller size, in the same class
    Image.open(src / "train" / "cat" / "b.png").resize((48, 36)).save(src / "train" / "cat" / "b_small.jpg", quality=80)
    st = compute_stats(run_scan(src), near_threshold=6)
    exact = {g.paths: g for g in st.duplicates}
    assert set(exact) == {
        ("train/cat/a.png", "train/cat/a_copy.png", "train/dog/a_as_dog.png"),
        ("test/dog/c_leak.png", "train/dog/c.png"),
    }
    g1 = exact[("train/cat/a.png", "train/cat/a_copy.png", "train/dog/a_as_dog.png")]
    assert g1.label_conflict and not g1.leakage
    g2 = exact[("test/dog/c_leak.png", "train/dog/c.png")]
    assert g2.leakage and not g2.label_conflict
    assert [g.paths for g in st.near_duplicates] == [("train/cat/b.png", "train/cat/b_small.jpg")]
    assert not st.near_duplicates[0].label_conflict and st.near_duplicates[0].distance <= 6
    d = st.to_dict()
    assert sorted(map(sorted, d["duplicates"])) == sorted(map(sorted, exact))
    assert any("leakage" in w for w in st.warnings) and any("conflict" in w for w in st.warnings)


def test_tiny_extreme_and_small_classes(data_root):
    src = data_root / "shapes"
    solid(src / "a" / "tiny.png", (1, 1, 1), size=(10, 40))
    solid(src / "a" / "wide.png", (2, 2, 2), size=(200, 40))
    solid(src / "a" / "fine.png", (3, 3, 3), size=(40, 40))
    make_counts(src, {"b": 12})
    st = compute_stats(run_scan(src), min_side=16, max_aspect=4, min_class_images=5)
    assert st.tiny == [("a/tiny.png", 10, 40)]
    assert st.extreme_aspect == [("a/wide.png", 200, 40)]
    assert st.small_classes == [("a", 3)]


def test_unicode_names_single_class_warning_and_json(data_root, capsys):
    from engine import cli_data

    src = data_root / "uni"
    textured(src / "chat noir é" / "photo 1.png", 1)
    textured(src / "chat noir é" / "日本.jpg", 2, quality=90)
    st = compute_stats(run_scan(src))
    assert st.num_classes == 1 and any("at least 2" in w for w in st.warnings)
    assert cli_data.main(["stats", str(src), "--json", "--workers", "1"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("num_images", "num_classes", "classes", "imbalance_ratio", "gini", "corrupt",
                "duplicates", "near_duplicates", "formats", "modes"):
        assert key in d
    assert d["classes"] == [{"name": "chat noir é", "count": 2, "per_split": {"unsplit": 2}, "group": "few"}]
    assert d["formats"] == {"PNG": 1, "JPEG": 1} and d["imbalance_ratio"] == 1


def test_cli_readable_report_and_errors(data_root, capsys):
    from engine import cli_data

    make_counts(data_root / "r", {"x": 3, "y": 2})
    assert cli_data.main(["stats", str(data_root / "r"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "Imbalance ratio 1.50" in out and "Problems:" in out
    assert cli_data.main(["stats", str(data_root / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_reads_a_folder_outside_the_allowed_roots(data_root, tmp_path, capsys):
    # the roots guard the dashboard; the CLI runs as the user on their own machine
    from engine import cli_data

    outside = make_counts(tmp_path / "elsewhere", {"x": 4, "y": 2})
    with pytest.raises(DataError, match="outside the allowed data folders"):
        run_scan(outside)
    assert cli_data.main(["stats", str(outside), "--workers", "1"]) == 0
    assert "Imbalance ratio 2.00" in capsys.readouterr().out
    assert cli_data.main(["import", str(outside), "--workers", "1"]) == 0
    assert f"Ready: {outside}" in capsys.readouterr().out


def test_empty_and_disallowed_folders(data_root, tmp_path):
    (data_root / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        run_scan(data_root / "empty")
    (data_root / "no_img" / "cls").mkdir(parents=True)
    (data_root / "no_img" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        run_scan(data_root / "no_img")
    outside = make_counts(tmp_path / "elsewhere", {"a": 1, "b": 1})
    with pytest.raises(DataError, match="outside the allowed data folders"):
        run_scan(outside)
    (data_root / "link").symlink_to(outside)  # a link inside the root that leads out of it
    with pytest.raises(DataError, match="outside the allowed"):
        run_scan(data_root / "link")


def test_scan_never_modifies_the_folder(data_root):
    src = make_counts(data_root / "ro", {"a": 3, "b": 3})
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.rglob("*") if p.is_file()}
    compute_stats(run_scan(src))
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.rglob("*") if p.is_file()}
    assert before == after


# --- cache and progress --------------------------------------------------------------------------

def test_rescan_uses_cache_and_decodes_nothing(data_root, monkeypatch):
    src = make_counts(data_root / "cached", {"a": 5, "b": 4})
    (src / "a" / "bad.png").write_bytes(b"")
    calls = []
    first = run_scan(src, progress=lambda d, t: calls.append((d, t)))
    assert first.computed == 10 and first.cached == 0
    assert calls[0] == (0, 10) and calls[-1] == (10, 10)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    def no_decoding(*a, **k):
        raise AssertionError("an image was decoded on a re-scan")

    monkeypatch.setattr(scan_mod, "_decode_facts", no_decoding)
    second = run_scan(src)
    assert second.computed == 0 and second.cached == 10
    assert second.images == first.images
    monkeypatch.undo()
    monkeypatch.setenv("TAILLAB_HOME", str(data_root.parent / "ws"))
    monkeypatch.setenv("TAILLAB_DATA_ROOTS", str(data_root))
    p = src / "b" / "000.png"
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))  # touched: decoded again
    third = run_scan(src)
    assert third.computed == 1 and third.images == first.images[:5] + [
        f._replace(mtime_ns=p.stat().st_mtime_ns) if f.rel == "b/000.png" else f for f in first.images[5:]]
    from engine import workspace
    assert (workspace.cache_dir() / "scan-facts.sqlite").is_file()


def test_worker_pool_gives_the_same_facts(data_root, monkeypatch):
    src = make_counts(data_root / "pool", {"a": 12, "b": 10})
    monkeypatch.setattr(scan_mod, "MIN_PARALLEL", 4)
    monkeypatch.setattr(scan_mod, "CHUNK", 5)
    done = []
    pooled = scan_folder(src, workers=2, use_cache=False, progress=lambda d, t: done.append(d))
    inline = scan_folder(src, workers=1, use_cache=False)
    assert pooled.images == inline.images and pooled.computed == 22
    assert done[-1] == 22 and len(done) >= 5


# --- near-duplicate search -----------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [1, 4, 7])
def test_near_pairs_equals_brute_force(threshold):
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    near = []
    for x in base[:60]:  # copies with 1 .. threshold + 2 bits flipped
        for bit in rng.choice(64, size=int(rng.integers(1, threshold + 3)), replace=False):
            x = x ^ (np.uint64(1) << np.uint64(bit))
        near.append(x)
    long_run = np.arange(60, dtype=np.uint64) << np.uint64(40)  # 60 hashes sharing their low block
    h = np.unique(np.concatenate([base, np.array(near, dtype=np.uint64), long_run]))
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(d <= threshold, 1))
    pairs, complete = near_pairs(h, threshold)
    assert complete and np.array_equal(pairs, np.stack([i, j], axis=1))
