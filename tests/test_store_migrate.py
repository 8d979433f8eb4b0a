"""Opening older, newer, foreign and read-only databases: upgrade with a backup, or refuse with a
clear message and nothing written."""
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from engine.store import StoreError, open_store
from engine.store.db import alembic_config, make_engine, sqlite_path

FLOAT_MAX = sys.float_info.max
ROOT = Path(__file__).resolve().parent.parent


def _at_0001(url: str) -> None:
    """A database at migration 0001 holding two runs, the way TailLab 0001 wrote them."""
    engine = make_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    rows = {
        "dataset_versions": [dict(id="v1", name="mnist", source="builtin:mnist", num_classes=2,
                                  num_images=30, class_counts_json='{"train": {"a": 20, "b": 10}}',
                                  manifest_path=None, config_json="{}", created_at="2026-11-01 10:00:00")],
        "runs": [dict(id=f"run{i}" + "0" * 28, name=f"old-{i}", kind="train", status="finished",
                      config_json='{"model": "resnet18", "loss": "ldam"}', parent_run_id=None,
                      dataset_version_id="v1", created_at=f"2026-11-0{i + 1} 10:00:00",
                      cancel_requested=False) for i in range(2)],
        "params": [dict(run_id=f"run{i}" + "0" * 28, key=k, value=v) for i in range(2)
                   for k, v in (("model", "resnet18"), ("loss", "ldam"), ("lr", "0.1"))],
        "metrics": [dict(run_id="run0" + "0" * 28, key="val/bal_acc", step=s, epoch=float(s),
                         value=v, is_nan=nan, timestamp=1000.0 + s)
                    for s, v, nan in ((1, 0.5, False), (2, None, True), (3, 0.8125, False),
                                      (4, FLOAT_MAX, False))],  # 0001 stored +Inf as float max
        "latest_metrics": [dict(run_id="run0" + "0" * 28, key="val/bal_acc", value=FLOAT_MAX,
                                step=4, timestamp=1004.0),
                           dict(run_id="run0" + "0" * 28, key="test/acc", value=0.75, step=4,
                                timestamp=1004.0)],
        "tags": [dict(run_id="run0" + "0" * 28, key="best_val_bal_acc", value="0.812500"),
                 dict(run_id="run0" + "0" * 28, key="best_epoch", value="3"),
                 dict(run_id="run1" + "0" * 28, key="best_val_bal_acc", value="nan"),
                 dict(run_id="run1" + "0" * 28, key="device", value="cpu")],
        "class_results": [dict(run_id="run0" + "0" * 28, split="test", class_index=i,
                               class_name=n, train_count=c, support=10, correct=k, group=g)
                          for i, (n, c, k, g) in enumerate((("a", 20, 9, "many"), ("b", 10, 4, "few")))],
        "artifacts": [dict(run_id="run0" + "0" * 28, name="best.pt", path="/x/best.pt",
                           kind="checkpoint", created_at="2026-11-01 11:00:00")],
    }
    with engine.begin() as conn:
        for table, items in rows.items():
            cols = list(items[0])
            conn.execute(text(f'INSERT INTO {table} ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)}) '
                              f'VALUES ({", ".join(":" + c for c in cols)})'), items)
    engine.dispose()
    return rows


def _counts(engine) -> dict[str, int]:
    with engine.connect() as c:
        return {t: c.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in (
            "dataset_versions", "runs", "params", "metrics", "latest_metrics", "tags",
            "class_results", "artifacts")}


def test_upgrade_from_0001_keeps_every_row_backfills_and_backs_up(db_url):
    rows = _at_0001(db_url)
    path = sqlite_path(db_url)
    store = open_store(db_url)
    try:
        assert _counts(store.engine) == {t: len(v) for t, v in rows.items()}
        r0, r1 = store.get_run("run0" + "0" * 28), store.get_run("run1" + "0" * 28)
        assert (r0.best_val, r0.best_epoch) == (0.8125, 3)  # backfilled from the tags
        assert (r1.best_val, r1.best_epoch) == (None, None)  # a "nan" tag is no best
        assert r0.tags["best_val_bal_acc"] == "0.812500" and r1.tags == {
            "best_val_bal_acc": "nan", "device": "cpu"}  # tags kept as they were
        assert r0.latest == {"val/bal_acc": None, "test/acc": 0.75}  # old +Inf -> None
        assert [p.value for p in store.metric_history(r0.id)] == [0.5, None, 0.8125, None]
        assert (r0.starred, r0.notes, r0.labels) == (False, "", ())
        assert store.facets()["model"] == ["resnet18"] and store.facets()["loss"] == ["ldam"]
        assert [(c.class_name, c.correct) for c in store.class_results(r0.id)] == [("a", 9), ("b", 4)]
        if path is None:
            assert "from schema 0001 to 0003" in store.upgrade_notice and "pg_dump" in store.upgrade_notice
            return
        backups = list(path.parent.glob(path.name + ".backup-0001-*"))
        assert len(backups) == 1 and str(backups[0]) in store.upgrade_notice
        assert "from schema 0001 to 0003" in store.upgrade_notice
        con = sqlite3.connect(backups[0])  # a valid 0001 database with every row
        try:
            assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            for table, items in rows.items():
                assert con.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (len(items),), table
            assert "best_val" not in {r[1] for r in con.execute("PRAGMA table_info(runs)")}
        finally:
            con.close()
    finally:
        store.engine.dispose()
    again = open_store(db_url)  # at head now: no second backup, no notice
    assert again.upgrade_notice is None
    assert len(list(path.parent.glob(path.name + ".backup-*"))) == 1
    again.engine.dispose()


def test_backup_includes_what_is_still_in_the_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    _at_0001(url)
    con = sqlite3.connect(tmp_path / "w.db")  # a writer that has not checkpointed yet
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("INSERT INTO tags (run_id, key, value) VALUES (?, 'late', 'x')", ("run1" + "0" * 28,))
    con.commit()
    assert (tmp_path / "w.db-wal").stat().st_size > 0
    store = open_store(url)
    backup = next(tmp_path.glob("w.db.backup-0001-*"))
    b = sqlite3.connect(backup)
    assert b.execute("SELECT value FROM tags WHERE key = 'late'").fetchone() == ("x",)
    b.close()
    con.close()
    store.engine.dispose()


def _checkpoint(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()  # the last connection: SQLite removes the -wal and -shm files


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_newer_schema_is_refused_and_nothing_written(db_url):
    store = open_store(db_url)
    with store.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    store.engine.dispose()
    path = sqlite_path(db_url)
    if path is not None:
        _checkpoint(path)
        before = _fingerprint(path.parent)
    with pytest.raises(StoreError, match="newer TailLab") as e:
        open_store(db_url)
    assert "'0099'" in str(e.value) and "'0003'" in str(e.value) and "Nothing was changed" in str(e.value)
    if path is not None:
        assert _fingerprint(path.parent) == before  # no backup, no -wal / -shm, same bytes


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    bad = tmp_path / "taillab.db"
    bad.write_text("name,count\na,1\n")
    with pytest.raises(StoreError, match="is not a TailLab database: it is not a SQLite file") as e:
        open_store(f"sqlite:///{bad}")
    assert str(bad) in str(e.value)
    assert bad.read_text() == "name,count\na,1\n" and sorted(os.listdir(tmp_path)) == ["taillab.db"]


def test_another_programs_sqlite_database_is_refused(tmp_path):
    other = tmp_path / "taillab.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(StoreError, match=r"not a TailLab database: .*other tables \(invoices\)"):
        open_store(f"sqlite:///{other}")
    assert other.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["taillab.db"]


def test_workspace_env_reaches_the_refusal(tmp_path, monkeypatch):
    """open_store() with no URL uses TAILLAB_HOME: the message names the workspace's file."""
    home = tmp_path / "ws"
    home.mkdir()
    (home / "taillab.db").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    monkeypatch.setenv("TAILLAB_HOME", str(home))
    monkeypatch.delenv("TAILLAB_DB_URL", raising=False)
    with pytest.raises(StoreError, match=str(home / "taillab.db")):
        open_store()


def test_read_only_database_file_is_refused(tmp_path):
    db = tmp_path / "taillab.db"
    store = open_store(f"sqlite:///{db}")
    store.create_run({}, name="keep me")
    store.engine.dispose()
    _checkpoint(db)
    for side in tmp_path.glob("taillab.db-*"):
        side.unlink()
    before = db.read_bytes()
    if os.geteuid() == 0:  # root ignores permission bits: make the file immutable instead
        if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
            pytest.skip("running as root and chattr +i is not supported here")
        undo = ["chattr", "-i", str(db)]
    else:
        db.chmod(0o444)
        undo = None
    try:
        with pytest.raises(StoreError, match="is read-only") as e:
            open_store(f"sqlite:///{db}")
        assert str(db) in str(e.value) and "Nothing was changed" in str(e.value)
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            db.chmod(0o644)
    assert db.read_bytes() == before
    assert [r.name for r in open_store(f"sqlite:///{db}").list_runs()] == ["keep me"]


def test_read_only_workspace_folder_is_refused(tmp_path):
    """A workspace folder this user cannot write (SQLite needs its -wal / -shm files there). As
    root, the check runs in a child process as the unprivileged user nobody."""
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop privileges")
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if subprocess.run([*drop, sys.executable, "-c", "import engine.store"], cwd=ROOT,
                          capture_output=True, timeout=120).returncode != 0:
            pytest.skip(f"the user nobody cannot run {sys.executable} on {ROOT} (a private "
                        "checkout); test_read_only_database_file_is_refused covers root")
        folder = Path(tempfile.mkdtemp(prefix="taillab-ro-"))
        try:
            folder.chmod(0o755)  # root's folder: nobody may read it, not write it
            open_store(f"sqlite:///{folder / 'taillab.db'}").engine.dispose()
            (folder / "taillab.db").chmod(0o666)  # the file is writable, its folder is not
            before = sorted(os.listdir(folder))
            code = ("import sys\nfrom engine.store import open_store, StoreError\n"
                    f"try:\n    open_store('sqlite:///{folder / 'taillab.db'}')\n"
                    "except StoreError as e:\n    print(e); sys.exit(3)\n")
            p = subprocess.run([*drop, sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                               text=True, timeout=120)
            assert p.returncode == 3, p.stdout + p.stderr
            assert f"{folder / 'taillab.db'} is read-only" in p.stdout
            assert f"its folder {folder} has no write permission" in p.stdout
            assert sorted(os.listdir(folder)) == before
        finally:
            shutil.rmtree(folder)
        return
    folder = tmp_path / "ws"
    folder.mkdir()
    open_store(f"sqlite:///{folder / 'taillab.db'}").engine.dispose()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="has no write permission"):
            open_store(f"sqlite:///{folder / 'taillab.db'}")
    finally:
        folder.chmod(0o755)


def test_a_failing_upgrade_is_rolled_back_whole(tmp_path):
    """The upgrade is one transaction: when 0002 fails half-way (here: a table of the same name
    someone added by hand), the database is exactly the 0001 one, and the backup is named."""
    db = tmp_path / "taillab.db"
    url = f"sqlite:///{db}"
    rows = _at_0001(url)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE run_labels (x INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"to schema 0003 failed: OperationalError: .*run_labels "
                                         r"already exists.*rolled back.*a copy is at") as e:
        open_store(url)
    assert ".backup-0001-" in str(e.value)
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
        assert "starred" not in {r[1] for r in con.execute("PRAGMA table_info(runs)")}
        assert con.execute("PRAGMA foreign_keys").fetchone() == (0,)  # a fresh connection's default
        for table, items in rows.items():
            assert con.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (len(items),), table
    finally:
        con.close()


def test_processes_opening_an_old_database_at_once_upgrade_it_once(tmp_path):
    db = tmp_path / "taillab.db"
    rows = _at_0001(f"sqlite:///{db}")
    code = ("from engine.store import open_store\n"
            f"s = open_store('sqlite:///{db}')\n"
            "print(len(s.list_runs()))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-800:] for o in outs]
    assert [o[0].strip() for o in outs] == ["2", "2", "2"]
    store = open_store(f"sqlite:///{db}")
    assert _counts(store.engine) == {t: len(v) for t, v in rows.items()}
    assert store.get_run("run0" + "0" * 28).best_val == 0.8125
    store.engine.dispose()
