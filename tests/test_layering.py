"""The import direction pages -> dashboard -> engine, checked on the source."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_engine_never_imports_streamlit_or_dashboard():
    files = list((ROOT / "engine").rglob("*.py"))
    assert files
    bad = {str(f.relative_to(ROOT)): _imports(f) & {"streamlit", "dashboard", "pages"} for f in files}
    assert not {k: v for k, v in bad.items() if v}


def test_pages_do_not_touch_torch_or_sql():
    for f in (ROOT / "pages").glob("*.py"):
        assert not _imports(f) & {"torch", "sqlalchemy", "torchvision"}, f


def test_pages_stay_thin():
    for f in (ROOT / "pages").glob("*.py"):
        assert len(f.read_text().splitlines()) <= 250, f
