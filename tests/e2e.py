"""Helpers for browser tests and screenshots: a real Streamlit server and headless Chromium.

    python -m tests.e2e shots OUT_DIR     # screenshot every page (uses $TAILLAB_HOME)
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("TAILLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def require_chromium():
    """For browser test modules: skip without Chromium, except in CI (CI=true), where a missing
    browser is a failure. Returns playwright.sync_api."""
    import pytest
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs Chromium at {CHROMIUM} for the browser tests (apt-get install chromium).")
        pytest.skip(f"Chromium not installed at {CHROMIUM}", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(home: Path, port: int | None = None, timeout: float = 90):
    """Start `streamlit run dashboard/app.py` on a free port; yield its URL; stop it."""
    port = port or free_port()
    env = dict(os.environ, TAILLAB_HOME=str(home), PYTHONPATH=str(ROOT))
    log = open(Path(home) / "dashboard.log", "ab") if Path(home).is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true"], cwd=str(ROOT), env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"The dashboard did not start (exit code {proc.poll()}).")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def browser(playwright):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium chromium-driver")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' indicator)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def shots(out: Path, pages=("data", "train", "runs", "predict"), extra=None) -> list[Path]:
    from playwright.sync_api import sync_playwright
    out.mkdir(parents=True, exist_ok=True)
    home = Path(os.environ.get("TAILLAB_HOME", "taillab-workspace")).resolve()
    files = []
    with dashboard(home) as url, sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        for name in pages:
            page.goto(f"{url}/{'' if name == 'data' else name}")
            page.wait_for_selector("h1", timeout=60_000)
            wait_idle(page)
            page.wait_for_timeout(2000)
            f = out / f"{name}.png"
            page.screenshot(path=str(f), full_page=True)
            files.append(f)
        b.close()
    return files


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "shots":
        for f in shots(Path(sys.argv[2]), tuple(sys.argv[3:]) or ("data", "train", "runs", "predict")):
            print(f)
    else:
        print(__doc__)
