"""Start-up: the Data page, the first page a user sees, draws its long tail without torch.

torch and torchvision take seconds to import and the Data page needs neither: the modules it uses
import none of them, and a fresh dashboard's first render imports torch only in the background
warm-up thread (dashboard.state.warm_up), after the page is drawn. Each check runs in a fresh
interpreter, since this test session has imported torch long ago."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "sklearn", "scipy", "onnx", "onnxruntime")
DATA_PAGE_MODULES = ("dashboard.state", "dashboard.ui", "dashboard.data_ui", "dashboard.charts",
                     "engine.workspace", "engine.store", "engine.recipes", "engine.config",
                     "engine.data.datasets", "engine.data.stats", "engine.data.sources",
                     "engine.data.library", "engine.data.prepare", "engine.data.scan")


def _fresh_python(code: str, home: Path) -> dict:
    """Run ``code`` in a new interpreter (in tests/, as AppTest wants); it prints one JSON line."""
    env = dict(os.environ, TAILLAB_HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("TAILLAB_DB_URL", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT / "tests", env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_data_page_modules_import_no_heavy_library(tmp_path):
    got = _fresh_python(f"""
        import json, sys
        for m in {DATA_PAGE_MODULES!r}:
            __import__(m)
        print(json.dumps(sorted(m for m in {HEAVY + ("pandas",)!r} if m in sys.modules)))
    """, tmp_path)
    assert got == []


def test_imagedataset_still_importable_from_datasets(tmp_path):
    # the torch half moved to engine.data.tensors; callers' old import keeps working
    got = _fresh_python("""
        import json, sys
        from engine.data import datasets
        before = "torch" in sys.modules
        from engine.data.datasets import ImageDataset
        from engine.data.tensors import ImageDataset as Home
        print(json.dumps([before, ImageDataset is Home, "torch" in sys.modules]))
    """, tmp_path)
    assert got == [False, True, True]


def test_first_render_draws_the_histogram_with_torch_only_in_the_background(tmp_path):
    # An import hook notes which thread first imports each heavy library.
    got = _fresh_python(f"""
        import json, sys, threading
        first = {{}}

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name in {HEAVY + ("pandas",)!r}:
                    first.setdefault(name, threading.current_thread().name)
                return None

        sys.meta_path.insert(0, Watch())
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file("../dashboard/app.py", default_timeout=120)
        at.run()
        drawn = dict(first)  # when the script ended
        warm = [t for t in threading.enumerate() if t.name == "taillab-warm-up"]
        for t in warm:
            t.join(120)
        print(json.dumps(dict(errors=[e.value for e in at.exception], charts=len(at.get("plotly_chart")),
                              metrics={{m.label: m.value for m in at.metric}}, drawn=drawn,
                              warmed=[m for m in ("engine.augment", "engine.models", "engine.imbalance")
                                      if m in sys.modules], warm_threads=len(warm))))
    """, tmp_path)
    assert got["errors"] == []
    assert got["charts"] == 1  # the long-tail histogram
    assert got["metrics"]["Training images"] == "2,478"  # MNIST-LT: sum of floor(1000 · 100^(-i/9))
    script_threads = {name: thread for name, thread in got["drawn"].items() if thread != "taillab-warm-up"}
    assert script_threads == {}, f"imported while drawing the first page: {script_threads}"
    assert got["warm_threads"] == 1
    assert got["warmed"] == ["engine.augment", "engine.models", "engine.imbalance"]


@pytest.fixture
def data_page(tmp_path, monkeypatch):
    monkeypatch.setenv("TAILLAB_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("TAILLAB_DB_URL", raising=False)
    monkeypatch.chdir(ROOT / "tests")
    return AppTest.from_file("../dashboard/app.py", default_timeout=120)


def _images(node) -> int:
    kids = getattr(node, "children", {}).values()
    return (type(node).__name__ == "Image") + sum(_images(k) for k in kids)


def test_builtin_table_and_samples_are_drawn_once_opened(data_page):
    at = data_page
    at.run()
    table, samples = at.expander
    assert (table.label, samples.label) == ("Images per class and split", "Sample images (tail classes first)")
    assert len(at.dataframe) == 0 and _images(samples) == 0  # closed: nothing sent to the browser
    at.session_state["data.b.table"] = True
    at.session_state["data.b.samples"] = True
    at.run()
    assert not at.exception
    df = at.dataframe[0].value
    # CIFAR-LT counts floor(1000 · 100^(-i/9)); head > 100, tail < 20 training images
    assert df["train"].tolist() == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert df["group"].tolist() == ["head"] * 5 + ["medium"] * 3 + ["tail"] * 2
    assert set(df["val"]) == {100}
    assert _images(at.expander[1]) == 6 * 8  # the six smallest classes, eight images each
    firsts = [m.value for m in at.expander[1].markdown][:2]
    assert firsts == ["**9**  \n10 imgs · tail", "**8**  \n16 imgs · tail"]


@pytest.mark.parametrize("page", [None, "../pages/predict.py"])  # Data; a page that stops early
def test_training_now_is_drawn_after_the_page(data_page, page):
    from dashboard import state
    from engine.store import RunStatus

    store = state.store()
    run = store.create_run({"model": "compact_cnn"}, name="still-training")
    store.mark_running(run.id)
    store.set_pid(run.id, os.getpid())  # a live worker on this host
    store.heartbeat(run.id)
    at = data_page
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception
    if page:
        assert any("No finished run yet" in i.value for i in at.info)  # the page stopped early
    side = [m.value for m in at.sidebar.markdown] + [c.value for c in at.sidebar.caption]
    assert "**Training now**" in side
    assert f"🏃 {RunStatus.RUNNING} still-training" in side
    # the slot keeps its place: dataset line, then Training now, then the workspace
    assert side.index("**Training now**") > next(i for i, v in enumerate(side) if v.startswith("**Dataset:**"))
