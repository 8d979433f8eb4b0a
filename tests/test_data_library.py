"""The data library functions the Data page and the CLI share (engine.data.library)."""
from __future__ import annotations

import io
import json
import os
import time
import zipfile


from engine.data import library
from engine.data.manifest import manifest_from_scan, save_manifest
from engine.data.split import stratified_split

from tests.test_data_scan import data_root, make_counts, run_scan, textured  # noqa: F401 (fixture)


def test_source_signature_changes_when_files_come_and_go(data_root):
    src = make_counts(data_root / "sig", {"a": 2, "b": 1})
    first = library.source_signature(src)
    assert library.source_signature(src) == first and first[0] == 3  # the folder and its two classes
    textured(src / "a" / "new.png", 99)
    assert library.source_signature(src) != first
    second = library.source_signature(src)
    (src / "a" / "new.png").rename(src / "a" / "renamed.png")
    assert library.source_signature(src) != second
    csv = data_root / "labels.csv"
    csv.write_text("a/000.png,a\n", encoding="utf-8")
    sig = library.source_signature(csv)
    csv.write_text("a/000.png,a\na/001.png,a\n", encoding="utf-8")
    os.utime(csv, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert library.source_signature(csv) != sig


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_upload_naming_and_import_once(data_root):
    png = textured(data_root / "x.png", 1).read_bytes()
    data = _zip({"cat/1.png": png, "dog/1.png": textured(data_root / "y.png", 2).read_bytes()})
    name = library.upload_dataset_name("My pets (2024).zip", data)
    assert name.startswith("My-pets-2024-") and len(name.rsplit("-", 1)[1]) == 8
    assert library.upload_dataset_name("My pets (2024).zip", data) == name  # same bytes, same folder
    assert library.upload_dataset_name("My pets (2024).zip", data + b" ") != name
    folder, res = library.import_upload("My pets (2024).zip", data)
    assert res is not None and res.files == 2 and folder == library.datasets_dir() / name
    again, res2 = library.import_upload("My pets (2024).zip", data)
    assert again == folder and res2 is None  # reused, not extracted twice
    assert library.imported_datasets() == [name]


def test_list_versions_newest_first_with_names_and_steps(data_root):
    assert library.list_versions() == [] and library.versions_signature(data_root / "none") == (0, 0)
    base = manifest_from_scan(run_scan(make_counts(data_root / "v", {"a": 6, "b": 4})))
    first = stratified_split(base, val=0.2, test=0.2, seed=0).manifest
    save_manifest(first)
    sig = library.versions_signature()
    time.sleep(0.01)
    second = stratified_split(first, val=0.2, test=0.2, seed=1).manifest
    save_manifest(second)
    assert library.versions_signature() != sig
    rows = library.list_versions({second.hash: "reshuffled"})
    assert [r.hash for r in rows] == [second.hash, first.hash]  # same second: by file time
    top = rows[0]
    assert top.name == "reshuffled" and rows[1].name == "" and top.images == 10 and top.classes == 2
    assert top.parent == first.hash[:16] and top.actions.endswith("seed 1")
    assert top.splits == "train 6 / val 2 / test 2"


def test_cli_versions_uses_the_library(data_root, capsys):
    from engine import cli_data
    from engine.store import open_store

    m = stratified_split(manifest_from_scan(run_scan(make_counts(data_root / "c", {"a": 5, "b": 5}))),
                         val=0.2, test=0.2).manifest
    path = save_manifest(m)
    open_store().add_dataset_version(id=m.hash, name="ten", source=m.source, class_counts=m.class_counts,
                                     manifest_path=str(path), config={})
    assert cli_data.main(["versions", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row == library.list_versions({m.hash: "ten"})[0].to_dict()
    assert row["name"] == "ten" and row["num_images"] == 10 and row["class_counts"]["test"] == {"a": 1, "b": 1}
    assert cli_data.main(["versions"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(m.hash[:16]) and "train 6 / val 2 / test 2" in out and out.rstrip().endswith("ten")
