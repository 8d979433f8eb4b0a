"""The Data studio under AppTest, through the real router: own folders and CSVs -> statistics and
problems -> a saved, split dataset version (manifest + store) -> the versions list and comparison."""
import os

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from engine.data.manifest import load_manifest

APP = "../dashboard/app.py"
COLOURS = {"ant": (200, 40, 40), "bee": (230, 210, 60), "cat": (40, 160, 60), "dog": (50, 60, 200)}


def make_folder(root, counts, *, corrupt=True, duplicate=True):
    """Class folders of noisy single-colour PNGs; plus one truncated file and one byte copy."""
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            a = np.clip(rng.normal(COLOURS[name], 30, (24 + i % 5, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / name / f"{name}{i:02d}.png")
    if corrupt:
        data = (root / "ant" / "ant00.png").read_bytes()
        (root / "ant" / "broken.png").write_bytes(data[: len(data) // 2])
    if duplicate:
        (root / "bee" / "bee_copy.png").write_bytes((root / "bee" / "bee00.png").read_bytes())
    return root


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "ws"
    home.mkdir()
    monkeypatch.setenv("TAILLAB_HOME", str(home))
    monkeypatch.delenv("TAILLAB_DB_URL", raising=False)
    monkeypatch.delenv("TAILLAB_DATA_ROOTS", raising=False)  # default roots: the workspace and ~
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
    return home


def open_source(kind, key, value):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["data.kind"] = kind  # straight to the studio, no built-in dataset loaded
    at.run()
    at.text_input(key=key).set_value(str(value)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def frame_with(at, column):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_folder_shows_figures_and_problems(home):
    root = make_folder(home / "data" / "bugs", {"ant": 30, "bee": 12, "cat": 6, "dog": 3})
    at = open_source("Folder on the server", "data.folder", root)
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Images") == str(30 + 13 + 6 + 3)  # the broken file is not counted
    assert metric(at, "Classes") == "4"
    assert float(metric(at, "Imbalance ratio")) == pytest.approx(30 / 3, rel=0.01)
    assert metric(at, "Tail classes") == "3" and metric(at, "Medium classes") == "1"
    assert {"Gini", "Norm. entropy", "Head classes"} <= {m.label for m in at.metric}
    table = frame_with(at, "group")
    assert dict(zip(table["class"], table["images"])) == {"ant": 30, "bee": 13, "cat": 6, "dog": 3}

    labels = [e.label for e in at.expander]
    assert any(label.startswith("❌ Unreadable files (1)") for label in labels), labels
    assert any(label.startswith("👯 Exact duplicates (1 group") for label in labels), labels
    broken = frame_with(at, "reason")
    assert list(broken["file"]) == ["ant/broken.png"] and "truncated" in broken["reason"][0]
    dupes = frame_with(at, "paths")
    assert "bee/bee00.png" in dupes["paths"][0] and "bee/bee_copy.png" in dupes["paths"][0]
    assert any("cannot be read" in w.value for w in at.warning)

    # the normalisation of the training images is offered
    assert any("mean=(" in c.value for c in at.code)
    # a rerun is served from the scan cache: same figures, no error
    at.run()
    assert metric(at, "Images") == "52" and not at.exception


def test_path_outside_the_allowed_roots_is_refused(home, tmp_path):
    outside = make_folder(tmp_path / "elsewhere", {"ant": 3, "bee": 3}, corrupt=False, duplicate=False)
    at = open_source("Folder on the server", "data.folder", outside)
    assert any("outside the allowed data folders" in e.value for e in at.error), [e.value for e in at.error]
    assert not [m for m in at.metric if m.label == "Images"]
    at.text_input(key="data.folder").set_value(str(home / "nothing-here")).run()
    assert any("does not exist" in e.value for e in at.error)


def test_split_and_save_a_version_then_train_on_it(home):
    from engine.store import open_store

    root = make_folder(home / "data" / "bugs", {"ant": 30, "bee": 12, "cat": 6, "dog": 3})
    at = open_source("Folder on the server", "data.folder", root)
    at.checkbox(key="data.fix.dedupe").check().run()
    at.slider(key="data.split.val").set_value(0.2).run()
    at.number_input(key="data.split.min_test").set_value(2).run()
    assert any("Class 'dog' has 3 image(s)" in w.value for w in at.warning)  # cannot give 2 test + 1 val
    assert metric(at, "Images in the version") == "51"  # 52 readable - 1 duplicate copy
    at.button(key="data.save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    saved = next(s.value for s in at.success if s.value.startswith("Saved version"))
    short = saved.split("`")[1]

    m = load_manifest(short)
    assert m.num_images == 51 and m.is_split and "bee/bee_copy.png" not in {r.path for r in m.rows}
    assert m.class_counts["val"]["ant"] == 6 and m.class_counts["test"]["ant"] == 6  # 20% each of 30
    versions = frame_with(at, "parent")
    assert list(versions["version"]) == [short] and versions["images"][0] == 51
    stored = {v.id: v for v in open_store().list_dataset_versions()}
    assert m.hash in stored and stored[m.hash].num_images == 51 and stored[m.hash].name == "bugs"
    assert stored[m.hash].manifest_path.endswith(f"{short}.json")

    at.button(key="data.train").click().run()
    assert at.session_state["data.config"]["source"] == f"version:{short}"
    assert any("open **Train**" in s.value for s in at.success)

    # the saved version opens in the studio as a source of its own
    at.button(key="data.versions.open").click().run()
    assert not at.exception and at.radio(key="data.kind").value == "Saved version"
    assert metric(at, "Images") == "51"


def test_compare_two_versions(home):
    root = make_folder(home / "data" / "bugs", {"ant": 30, "bee": 12, "cat": 6, "dog": 3}, corrupt=False)
    at = open_source("Folder on the server", "data.folder", root)
    at.button(key="data.save").click().run()
    first = next(s.value for s in at.success if s.value.startswith("Saved version")).split("`")[1]
    drop_key = next(w.key for w in at.multiselect if w.key.startswith("data.act.drop."))
    at.multiselect(key=drop_key).select("dog").run()
    at.button(key="data.save").click().run()
    second = next(s.value for s in at.success if s.value.startswith("Saved version")).split("`")[1]
    assert first != second

    assert at.selectbox(key="data.cmp.a").value.startswith(first)  # older on the left
    assert at.selectbox(key="data.cmp.b").value.startswith(second)
    assert at.selectbox(key="data.cmp.split").value == "all"
    table = frame_with(at, "change")
    assert list(table["class"])[0] == "dog"  # changed classes first
    total = table.set_index("class")
    assert total.loc["dog", "A"] == 3 and total.loc["dog", "B"] == 0 and total.loc["dog", "change"] == -3
    assert total.loc["ant", "change"] == 0 and total.loc["bee", "A"] == 13
    assert any("1 of 4 classes differ" in c.value for c in at.caption)
    at.selectbox(key="data.cmp.split").set_value("train").run()
    train = frame_with(at, "change").set_index("class")
    assert train.loc["ant", "A"] == train.loc["ant", "B"] == 21  # 30 - 3 val - 6 test, same seed
    versions = frame_with(at, "parent")
    assert list(versions["version"]) == [second, first]


def test_csv_manifest_keeps_its_splits(home):
    root = make_folder(home / "data" / "csv", {"ant": 8, "bee": 6}, corrupt=False, duplicate=False)
    rows = ["path,label,split"] + [f"{c}/{c}{i:02d}.png,{c},{'test' if i < 2 else 'train'}"
                                   for c, n in (("ant", 8), ("bee", 6)) for i in range(n)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    at = open_source("CSV manifest", "data.csv", root / "labels.csv")
    assert metric(at, "Images") == "14" and not at.error
    at.radio(key="data.split.mode").set_value("Keep the source's splits").run()
    # 10% of each class's training images (at least one) moved to val; the CSV's test split kept
    assert [metric(at, x) for x in ("Train", "Val", "Test")] == ["8", "2", "4"]
    at.text_input(key="data.csv").set_value(str(root / "missing.csv")).run()
    assert any("does not exist" in e.value for e in at.error)


def test_a_fix_dropping_much_of_a_split_asks_first(home):
    root = make_folder(home / "data" / "big", {"ant": 30, "bee": 12, "cat": 6, "dog": 3}, duplicate=False)
    at = open_source("Folder on the server", "data.folder", root)
    assert any("from all 51 images" in c.value for c in at.caption)  # no training split: all images
    assert at.button(key="data.save").disabled is False
    at.checkbox(key="data.fix.small").check().run()  # classes under 10 images: cat and dog, 9 files
    warning = next(w.value for w in at.warning if "leave out more than 5%" in w.value)
    assert "unsplit: 9 of 51 files (17.6%), e.g. cat/cat00.png" in warning
    assert at.button(key="data.save").disabled
    confirm = next(c for c in at.checkbox if str(c.key).startswith("data.confirm."))
    assert confirm.label == "Yes, leave these 9 files out"
    confirm.check().run()
    assert not at.button(key="data.save").disabled
    at.button(key="data.save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    short = next(s.value for s in at.success if s.value.startswith("Saved version")).split("`")[1]
    assert load_manifest(short).num_images == 42
