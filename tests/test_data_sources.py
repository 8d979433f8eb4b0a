"""Sources: zip import (and every way a zip can be hostile), CSV manifests, allowed roots."""
from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from engine.data.scan import scan_folder
from engine.data.sources import (DataError, allowed_roots, check_allowed, import_source, import_zip,
                                 list_folder, read_csv_manifest)
from engine.data.stats import compute_stats
from tests.test_data_scan import data_root, make_counts, textured  # noqa: F401  (fixture)


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(path: Path, members: dict[str, bytes], **kw) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **kw) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def leftovers(ws: Path) -> list[str]:
    d = ws / "datasets"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# --- zip -----------------------------------------------------------------------------------------

def test_zip_with_wrapper_folder_and_mac_noise(data_root):
    z = make_zip(data_root / "pets.zip", {
        "pets/cat/1.png": png_bytes(1), "pets/cat/2.png": png_bytes(2),
        "pets/dog/sub/3.png": png_bytes(3),
        "pets/.DS_Store": b"\0\0", "__MACOSX/pets/cat/._1.png": b"junk", "pets/cat/._2.png": b"junk",
        "pets/dog/Thumbs.db": b"x",
    })
    res = import_zip(z)
    ws = data_root.parent / "ws"
    assert res.path == ws / "datasets" / "pets" and res.unwrapped == "pets"
    assert sorted(p.relative_to(res.path).as_posix() for p in res.path.rglob("*") if p.is_file()) == [
        "cat/1.png", "cat/2.png", "dog/sub/3.png"]
    st = compute_stats(scan_folder(res.path, workers=1))
    assert [(c.name, c.count) for c in st.classes] == [("cat", 2), ("dog", 1)]
    assert leftovers(ws) == ["pets"]


def test_zip_upload_bytes_and_no_overwrite(data_root):
    data = make_zip(data_root / "a.zip", {"x/1.png": png_bytes(1), "y/2.png": png_bytes(2)}).read_bytes()
    res = import_zip(data, name="my set")
    assert res.name == "my-set" and res.unwrapped is None and (res.path / "x" / "1.png").is_file()
    before = (res.path / "x" / "1.png").read_bytes()
    with pytest.raises(DataError, match="already exists"):
        import_zip(data, name="my set")
    assert (res.path / "x" / "1.png").read_bytes() == before


@pytest.mark.parametrize("name, match", [
    ("../evil/1.png", "leaves its folder"),
    ("cls/../../evil.png", "leaves its folder"),
    ("/etc/evil.png", "absolute path"),
    ("C:/evil.png", "absolute path"),
    ("..\\evil\\1.png", "leaves its folder"),
])
def test_zip_path_traversal_refused(data_root, name, match):
    z = make_zip(data_root / "bad.zip", {"cls/ok.png": png_bytes(1), name: png_bytes(2)})
    with pytest.raises(DataError, match=match):
        import_zip(z)
    assert leftovers(data_root.parent / "ws") == []
    assert not (data_root.parent / "evil").exists() and not (data_root / "evil").exists()


def test_zip_symlink_refused(data_root):
    path = data_root / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cls/ok.png", png_bytes(1))
        info = zipfile.ZipInfo("cls/passwd.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        import_zip(path)
    assert leftovers(data_root.parent / "ws") == []


def test_zip_bomb_limits(data_root):
    bomb = make_zip(data_root / "bomb.zip", {"cls/a.png": png_bytes(1), "cls/zeros.png": b"\0" * (8 * 1024**2)})
    with pytest.raises(DataError, match="zip bomb"):
        import_zip(bomb)
    ok = make_zip(data_root / "many.zip", {f"c{i % 2}/{i}.png": png_bytes(i) for i in range(12)})
    with pytest.raises(DataError, match="over the limit of 10"):
        import_zip(ok, max_files=10)
    with pytest.raises(DataError, match="GiB"):
        import_zip(ok, max_total_bytes=500)
    assert leftovers(data_root.parent / "ws") == []


def test_not_a_zip_and_zip_without_images(data_root):
    fake = data_root / "fake.zip"
    fake.write_text("this is not a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        import_zip(fake)
    with pytest.raises(DataError, match="not a readable zip"):
        import_zip(b"PK\x03\x04 truncated")
    docs = make_zip(data_root / "docs.zip", {"a/readme.txt": b"hi"})
    with pytest.raises(DataError, match="no image files"):
        import_zip(docs)
    flat = make_zip(data_root / "flat.zip", {"1.png": png_bytes(1), "2.png": png_bytes(2)})
    with pytest.raises(DataError, match="sub-folder named after the class"):
        import_zip(flat)
    assert leftovers(data_root.parent / "ws") == []


def test_zip_with_broken_images_imports_and_lists_them(data_root):
    png = png_bytes(1)
    z = make_zip(data_root / "mixed.zip", {"a/ok.png": png, "a/empty.png": b"", "b/half.png": png[:40],
                                           "b/ok.png": png_bytes(2), "b/fake.jpg": b"GIF89a nope"})
    res = import_zip(z)
    st = compute_stats(scan_folder(res.path, workers=1))
    assert sorted(p for p, _ in st.corrupt) == ["a/empty.png", "b/fake.jpg", "b/half.png"]
    assert st.num_images == 2


def test_zip_outside_allowed_roots(data_root, tmp_path):
    z = make_zip(tmp_path / "outside.zip", {"a/1.png": png_bytes(1)})
    with pytest.raises(DataError, match="outside the allowed"):
        import_zip(z)


def test_import_source_zip_folder_and_csv(data_root):
    z = make_zip(data_root / "set.zip", {"set/a/1.png": png_bytes(1), "set/b/2.png": png_bytes(2)})
    listing = import_source(z)
    assert listing.root.name == "set" and listing.classes == ["a", "b"]
    assert any("Unwrapped" in w for w in listing.warnings)
    folder = make_counts(data_root / "f", {"a": 2, "b": 1})
    before = sorted((p, p.stat().st_mtime_ns) for p in folder.rglob("*"))
    assert import_source(folder).root == folder
    assert sorted((p, p.stat().st_mtime_ns) for p in folder.rglob("*")) == before
    with pytest.raises(DataError, match="neither"):
        (data_root / "x.txt").write_text("x")
        import_source(data_root / "x.txt")


# --- folders -------------------------------------------------------------------------------------

def test_folder_layouts(data_root):
    src = data_root / "lay"
    textured(src / "training" / "cat" / "1.png", 1)
    textured(src / "Validation" / "cat" / "2.png", 2)
    textured(src / "test" / "dog" / "3.png", 3)
    lst = list_folder(src)
    assert [(e.rel, e.label, e.split) for e in lst.entries] == [
        ("training/cat/1.png", "cat", "train"), ("Validation/cat/2.png", "cat", "val"),
        ("test/dog/3.png", "dog", "test")]
    plain = data_root / "plain"
    textured(plain / "train" / "1.png", 1)  # a class that happens to be called "train"...
    textured(plain / "zebra" / "2.png", 2)  # ...next to a normal class: not a split layout
    assert {e.split for e in list_folder(plain).entries} == {""}
    textured(plain / "loose.png", 3)
    assert any("not in a class folder" in w for w in list_folder(plain).warnings)


def test_symlinks_inside_a_folder(data_root, tmp_path):
    src = make_counts(data_root / "links", {"a": 2, "b": 1})
    secret = textured(tmp_path / "secret.png", 9)
    (src / "a" / "escape.png").symlink_to(secret)
    (src / "b" / "inside.png").symlink_to(src / "a" / "000.png")
    lst = list_folder(src)
    assert "a/escape.png" not in {e.rel for e in lst.entries}
    assert ("a/escape.png", "symbolic link pointing outside the data folder") in lst.ignored
    assert "b/inside.png" in {e.rel for e in lst.entries}


# --- CSV -----------------------------------------------------------------------------------------

def test_csv_manifest(data_root):
    src = make_counts(data_root / "csvset", {"imgs": 4})
    (src / "labels.csv").write_text(
        "path,label,split\nimgs/000.png,cat,train\nimgs/001.png,cat,validation\n"
        "imgs/002.png,dog,train\n./imgs/003.png,dog,test\n", encoding="utf-8")
    lst = read_csv_manifest(src / "labels.csv")
    assert [(e.rel, e.label, e.split) for e in lst.entries] == [
        ("imgs/000.png", "cat", "train"), ("imgs/001.png", "cat", "val"),
        ("imgs/002.png", "dog", "train"), ("imgs/003.png", "dog", "test")]
    st = compute_stats(scan_folder(src / "labels.csv", workers=1))
    assert st.counts == {"train": {"cat": 1, "dog": 1}, "val": {"cat": 1, "dog": 0}, "test": {"cat": 0, "dog": 1}}
    assert st.kind == "csv" and st.stats_split == "train"
    (src / "nohead.csv").write_text("imgs/000.png;x\nimgs/001.png;y\n")
    assert [e.label for e in read_csv_manifest(src / "nohead.csv").entries] == ["x", "y"]


def test_csv_bad_rows_are_listed(data_root, tmp_path):
    src = make_counts(data_root / "badcsv", {"imgs": 2})
    outside = textured(tmp_path / "outside.png", 1)
    (src / "m.csv").write_text(
        "path,label\nimgs/000.png,a\nimgs/nope1.png,a\nimgs/nope2.png,b\n../x.png,a\n"
        f"{outside},b\nimgs/001.png,\n")
    with pytest.raises(DataError) as e:
        read_csv_manifest(src / "m.csv")
    msg = str(e.value)
    assert "2 missing file(s): imgs/nope1.png, imgs/nope2.png" in msg
    assert "2 path(s) outside" in msg and "../x.png" in msg
    assert "1 malformed row(s)" in msg
    (src / "s.csv").write_text("imgs/000.png,a,holdout\n")
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        read_csv_manifest(src / "s.csv")
    (src / "d.csv").write_text("imgs/000.png,a\nimgs/000.png,b\n")
    with pytest.raises(DataError, match="more than once"):
        read_csv_manifest(src / "d.csv")
    (src / "e.csv").write_text("path,label\n")
    with pytest.raises(DataError, match="lists no images"):
        read_csv_manifest(src / "e.csv")


# --- allowed roots -------------------------------------------------------------------------------

def test_allowed_roots_default_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TAILLAB_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("TAILLAB_DATA_ROOTS", raising=False)
    roots = allowed_roots()
    assert Path(os.path.realpath(tmp_path / "ws")) in roots and Path(os.path.realpath(Path.home())) in roots
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv("TAILLAB_DATA_ROOTS", f"{a}{os.pathsep}{b}")
    assert check_allowed(b / "x") == Path(os.path.realpath(b / "x"))
    with pytest.raises(DataError, match="TAILLAB_DATA_ROOTS"):
        check_allowed(tmp_path / "c")
    with pytest.raises(DataError):
        check_allowed(a / ".." / "c")
