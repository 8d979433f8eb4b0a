"""The workspace's data library: imported datasets, saved versions, and the key that tells a
cached scan from a stale one. Shared by the Data page (which only adds caching and widgets) and
``taillab data ...``; no Streamlit here.

    source_signature(path)          # changes when files are added, removed or renamed
    upload_dataset_name(name, data) # "<zip name>-<8 hex of its sha256>": one folder per content
    import_upload(name, data)       # extract once; the same bytes again reuse the folder
    imported_datasets()             # folder names under <workspace>/datasets
    list_versions(names)            # saved manifests, newest first, each read once
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from engine import workspace
from engine.data import sources
from engine.data.manifest import list_manifests


def datasets_dir() -> Path:
    return workspace.home() / "datasets"


# --- scan-cache key ------------------------------------------------------------------------------

def source_signature(path: str | os.PathLike, *, max_dirs: int = 5000) -> tuple:
    """A key that changes when files are added, removed or renamed in a source.

    For a file (a CSV): its mtime and size and its folder's mtime. For a folder: the mtimes of the
    folder and of the folders up to two levels below (at most ``max_dirs`` read per level), as
    (count, short hash). Editing a file in place changes none of these; the scan cache catches that
    (it keys every file on size and mtime).
    """
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return st.st_mtime_ns, st.st_size, path.parent.stat().st_mtime_ns
    out, level = [path.stat().st_mtime_ns], [str(path)]
    for _ in range(2):
        nxt = []
        for d in level[:max_dirs]:
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            out.append(e.stat(follow_symlinks=False).st_mtime_ns)
                            nxt.append(e.path)
            except OSError:
                continue
        level = nxt
    return len(out), hashlib.blake2b(repr(out).encode(), digest_size=8).hexdigest()


# --- uploads -------------------------------------------------------------------------------------

def upload_dataset_name(filename: str, data: bytes) -> str:
    """The dataset folder an uploaded zip goes to: its name (48 characters at most) and 8 hex
    digits of its content's sha256, so the same bytes always land in the same folder."""
    return sources.dataset_name(f"{Path(filename).stem[:48]}-{hashlib.sha256(data).hexdigest()[:8]}")


def import_upload(filename: str, data: bytes) -> tuple[Path, sources.ImportResult | None]:
    """(folder, import result) of an uploaded zip, extracted into the workspace once; the result is
    None when the same bytes were imported before and the folder is reused."""
    name = upload_dataset_name(filename, data)
    target = datasets_dir() / name
    if target.is_dir():
        return target, None
    res = sources.import_zip(data, name=name)
    return res.path, res


def imported_datasets() -> list[str]:
    """Folder names of the datasets in the workspace (imported zips), sorted."""
    d = datasets_dir()
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.is_dir() else []


# --- saved versions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionSummary:
    """One saved version as the versions lists show it."""

    hash: str
    name: str  # given when it was saved from the Data page ("" if none)
    source: str
    images: int
    classes: int
    splits: str  # "train 700 / val 100 / test 200"
    created: str  # "YYYY-MM-DD HH:MM:SS" (UTC)
    parent: str  # hash[:16] of the version it was made from, "" for a scanned source
    actions: str  # the steps that made it, joined by " → "
    path: Path
    class_counts: dict  # split -> class -> images

    def to_dict(self) -> dict:
        return {"hash": self.hash, "name": self.name, "source": self.source, "images": self.images,
                "classes": self.classes, "splits": self.splits, "created": self.created,
                "parent": self.parent, "actions": self.actions, "path": str(self.path),
                # the keys `taillab data versions --json` had before
                "num_images": self.images, "num_classes": self.classes, "class_counts": self.class_counts}


def versions_signature(directory: str | os.PathLike | None = None) -> tuple[int, int]:
    """(mtime, number of files) of the manifests folder: changes when a version is saved."""
    d = Path(directory) if directory is not None else workspace.home() / "manifests"
    if not d.is_dir():
        return 0, 0
    return d.stat().st_mtime_ns, len(os.listdir(d))


def list_versions(names: Mapping[str, str] | None = None,
                  directory: str | os.PathLike | None = None) -> list[VersionSummary]:
    """Saved versions, newest first (saved within the same second: by file time), each manifest
    read once; ``names`` maps a version hash to the name it was saved under (the store's)."""
    names = names or {}
    infos = list_manifests(directory)

    def mtime(p: Path) -> int:
        try:
            return p.stat().st_mtime_ns
        except OSError:
            return 0

    infos.sort(key=lambda i: (i.created, mtime(i.path)), reverse=True)
    return [VersionSummary(
        hash=i.hash, name=names.get(i.hash, ""), source=i.source, images=i.num_images, classes=i.num_classes,
        splits=" / ".join(f"{k} {sum(v.values()):,}" for k, v in i.class_counts.items()),
        created=i.created.replace("T", " ")[:19], parent=(i.parent or "")[:16], actions=" → ".join(i.actions),
        path=i.path, class_counts=i.class_counts) for i in infos]
