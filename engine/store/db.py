"""Engine creation, the checks before a database is opened, backups and schema migration.

SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL (or any other SQLAlchemy URL) gets
none of that. Before anything is written ``prepare`` refuses, with a StoreError that says what to
do, a file that is not a TailLab database, a database from a newer TailLab and a read-only
database or workspace; a SQLite database behind the newest migration is copied aside first.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("engine.store")


class StoreError(Exception):
    """The store cannot be opened; the message says why and what to do (shown as is)."""


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean the psycopg 3 driver TailLab installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    path = sqlite_path(url)
    if url.startswith("sqlite"):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str):  # -> alembic.config.Config
    from alembic.config import Config  # only when a schema is created or upgraded
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a '%' in a URL (an encoded password) must be doubled
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_REVISIONS: tuple[list[str], str] | None = None


def known_revisions() -> tuple[list[str], str]:
    """(every revision this TailLab has, the newest), read from the migration files' own
    ``revision`` / ``down_revision`` lines: opening an up-to-date database never imports alembic
    (a third of a second on every first page a dashboard process shows)."""
    global _REVISIONS
    if _REVISIONS is None:
        import re
        down: dict[str, str | None] = {}
        for f in (MIGRATIONS / "versions").glob("*.py"):
            text = f.read_text()
            rev = re.search(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
            if rev:
                prev = re.search(r"^down_revision\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
                down[rev.group(1)] = prev.group(1) if prev else None
        heads = set(down) - set(down.values())
        if len(heads) != 1:
            raise StoreError(f"The migrations in {MIGRATIONS} have {len(heads)} heads: {sorted(heads)}.")
        _REVISIONS = (sorted(down), heads.pop())
    return _REVISIONS


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is already there)."""
    if current_revision(engine) == known_revisions()[1]:
        return  # the common case: nothing to do, and no foreign_key_check over a big database
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return
    # SQLite, on its own connection in the driver's autocommit mode so that TailLab, not
    # Python's sqlite3 module, decides where the transaction is:
    # - foreign keys off: a batch migration copies a table into a new one and drops the old; with
    #   foreign keys on, that drop cascades into every child table (runs -> metrics, params, ...).
    #   The pragma only takes effect outside a transaction, so it is set before BEGIN.
    # - BEGIN IMMEDIATE ... COMMIT around the whole upgrade: SQLite's DDL is transactional, so a
    #   failed or killed upgrade leaves the old schema intact (sqlite3 would otherwise commit each
    #   ALTER on its own), and a second process opening the old database at the same moment
    #   waits for the write lock, then finds it upgraded and does nothing.
    mig = create_engine(engine.url, poolclass=NullPool,
                        connect_args={"timeout": 30, "isolation_level": None})
    try:
        with mig.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StoreError(f"The schema upgrade left {len(broken)} rows pointing at "
                                     f"missing rows (first: {broken[0]}).")
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
    finally:
        mig.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


# --- checks before opening ------------------------------------------------------------------------

def _refuse_newer(where: str, rev: str | None) -> None:
    revs, head = known_revisions()
    if rev is not None and rev not in revs:
        raise StoreError(
            f"{where} was written by a newer TailLab (schema revision {rev!r}; this TailLab knows "
            f"revisions up to {head!r}). Upgrade TailLab to open it, or point TAILLAB_HOME / "
            "TAILLAB_DB_URL elsewhere. Nothing was changed.")


def _read_only(path: Path, why: str) -> StoreError:
    return StoreError(
        f"The TailLab database {path} is read-only ({why}). TailLab writes to it on every run; "
        "make it and its folder writable, or set TAILLAB_HOME to a writable folder. Nothing was "
        "changed.")


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite. Asked through SQLite itself, never with open(): closing
    any descriptor of a database file drops every POSIX lock this process holds on it, and the
    store (or a dashboard) in this process may have it open."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            con.execute("PRAGMA schema_version").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if "not a database" not in str(e):
            if "readonly" in str(e) or "read-only" in str(e) or "unable to open" in str(e):
                raise _read_only(path, f"SQLite says: {e}") from None
            raise StoreError(f"{path} is not a TailLab database: SQLite cannot read it ({e}). "
                             "Nothing was changed.") from None
        with open(path, "rb") as f:  # not SQLite, so no SQLite lock to lose
            header = f.read(16)
        raise StoreError(f"{path} is not a TailLab database: it is not a SQLite file "
                         f"(it starts with {header!r}). Move it away or set TAILLAB_HOME / "
                         "TAILLAB_DB_URL to another place. Nothing was changed.") from None


def _inspect_sqlite(path: Path) -> str | None:
    """The Alembic revision of an existing SQLite file, refusing what TailLab must not touch."""
    try:
        # read-write (writability was checked just before): a read-only connection that is the
        # last one to close cannot remove the -wal and -shm files it made; this one does
        con = sqlite3.connect(str(path), timeout=30)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            rev = (con.execute("SELECT version_num FROM alembic_version").fetchone() or [None])[0] \
                if "alembic_version" in tables else None
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if "readonly" in str(e) or "read-only" in str(e):
            raise _read_only(path, f"SQLite says: {e}") from None
        raise StoreError(f"{path} is not a TailLab database: SQLite cannot read it ({e}). "
                         "Nothing was changed.") from None
    if rev is None and tables - {"sqlite_sequence"}:
        shown = ", ".join(sorted(tables)[:5])
        raise StoreError(f"{path} is not a TailLab database: it is a SQLite file with other "
                         f"tables ({shown}) and no TailLab schema. Set TAILLAB_HOME or "
                         "TAILLAB_DB_URL to another place. Nothing was changed.")
    return rev


def _check_permissions(path: Path) -> None:
    """Refuse a database or folder this user may not write (checked first: no file opened)."""
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        raise _read_only(path, "the file has no write permission for this user")
    if not os.access(folder, os.W_OK):
        raise _read_only(path, f"its folder {folder} has no write permission for this user, and "
                               "SQLite needs to create its -wal and -shm files there")


def _probe_writable(path: Path) -> None:
    """Refuse a database that cannot be written although permissions allow it (an immutable
    file, a read-only mount), before Alembic or a worker half-writes anything."""
    existed = path.exists()
    try:
        con = sqlite3.connect(str(path), timeout=30)
        try:
            con.execute("BEGIN IMMEDIATE")  # takes the write lock without writing a row
            con.rollback()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if not existed and path.exists() and path.stat().st_size == 0:
            path.unlink(missing_ok=True)
        raise _read_only(path, f"SQLite says: {e}") from None


def backup_sqlite(path: Path, rev: str) -> Path:
    """A consistent copy (sqlite3 backup API: committed WAL content included) next to the file,
    named ``<db>.backup-<rev>-<UTC timestamp>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = path.with_name(f"{path.name}.backup-{rev}-{stamp}")
    n = 1
    while dest.exists():  # two upgrades within one second
        dest = path.with_name(f"{path.name}.backup-{rev}-{stamp}-{n}")
        n += 1
    src = sqlite3.connect(str(path), timeout=30)
    try:
        out = sqlite3.connect(str(dest))
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()
    return dest


def prepare(url: str) -> tuple[Engine, str | None]:
    """Check, back up when behind, create the engine and migrate to the newest schema.

    Returns (engine, notice): notice says where the backup went when the schema was upgraded
    (None otherwise); it is logged once too."""
    url = normalise_url(url)
    path = sqlite_path(url)
    notice = backup = None
    head = known_revisions()[1]
    if path is not None:
        rev = None
        existing = path.exists() and path.stat().st_size > 0
        if path.parent.exists():
            _check_permissions(path)
        if existing:
            _check_header(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        _probe_writable(path)
        if existing:
            rev = _inspect_sqlite(path)
            _refuse_newer(str(path), rev)
        if rev is not None and rev != head:
            backup = backup_sqlite(path, rev)
            notice = (f"Upgraded the TailLab database {path} from schema {rev} to {head}; "
                      f"the old database was copied to {backup}.")
        engine = make_engine(url)
    else:
        engine = make_engine(url)
        try:
            rev = current_revision(engine)
        except Exception as e:  # noqa: BLE001 - any driver error: say where and why, plainly
            where = engine.url.render_as_string(hide_password=True)
            engine.dispose()
            raise StoreError(f"Cannot open the TailLab database at {where}: "
                             f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
        _refuse_newer(engine.url.render_as_string(hide_password=True), rev)
        if rev is not None and rev != head:
            notice = (f"Upgraded the TailLab database at "
                      f"{engine.url.render_as_string(hide_password=True)} from schema {rev} to "
                      f"{head} (no automatic backup on this server: take one with its own tools, "
                      "e.g. pg_dump, before upgrading TailLab).")
    try:
        upgrade(engine)
    except StoreError as e:
        engine.dispose()
        raise StoreError(f"{e} The upgrade was rolled back; the database is as it was."
                         + (f" A copy is at {backup}." if backup else "")) from None
    except Exception as e:  # noqa: BLE001 - a migration that fails: say what and keep the data
        engine.dispose()
        raise StoreError(
            f"Upgrading the TailLab database "
            f"{path or engine.url.render_as_string(hide_password=True)} to schema {head} failed: "
            f"{type(e).__name__}: {str(e).splitlines()[0]}. The upgrade was rolled back; the "
            "database is as it was" + (f" (a copy is at {backup})." if backup else ".")) from None
    if notice:
        log.warning(notice)
    return engine, notice
