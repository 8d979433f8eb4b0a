"""Dataset versions: immutable manifests of (file, class, split) with a content hash.

A manifest never copies images: its rows name files relative to a root folder, each with the
content hash (blake2b) the scan computed. The version hash is a sha256 over the sorted rows
including those file hashes, so

- the same files with the same labels and splits give the same hash, whatever the row order and
  wherever the folder lives (the root is not hashed);
- one changed byte in one image, a renamed class or a moved split gives a different hash.

A manifest may carry a second label per file (multi-task training, ``aux_name`` / ``aux``, read
from a CSV column); it is hashed too, so another second label gives another version. Manifests
without one hash exactly as before.

Manifests are saved as JSON in ``<workspace>/manifests/<hash[:16]>.json`` and never rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple

from engine import workspace
from engine.data.sources import SPLITS, DataError, Entry, Listing

if TYPE_CHECKING:
    from engine.data.scan import ScanResult

FORMAT = "taillab-manifest"
FORMAT_VERSION = 2  # 2: an optional second label per file (written as 1 when there is none)


class Row(NamedTuple):
    path: str  # relative to the manifest root, '/'-separated
    label: str  # class name
    split: str  # "train" | "val" | "test", or "" before splitting
    sha: str  # blake2b of the file's bytes (hex), from the scan


def manifest_hash(rows: Iterable[Row], aux_name: str = "",
                  aux: Iterable[tuple[str, str]] = ()) -> str:
    """sha256 over the sorted rows (each one JSON line, so no separator can be ambiguous), then,
    when there is a second label, its name and the sorted (path, second label) pairs."""
    h = hashlib.sha256(f"{FORMAT} v1\n".encode())  # v1: the rows' hashes never change
    for r in sorted(rows):
        h.update(json.dumps(list(r), ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    if aux_name:
        h.update(json.dumps(["aux", aux_name], ensure_ascii=False).encode("utf-8") + b"\n")
        for pair in sorted(aux):
            h.update(json.dumps(list(pair), ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """One dataset version. Build new ones with the functions of ``engine.data.split``."""

    root: str  # absolute folder the row paths are relative to
    rows: tuple[Row, ...]  # sorted by path
    source: str = ""  # where it came from, in words (a folder, a CSV, a zip)
    parent: str | None = None  # hash of the manifest it was derived from
    actions: tuple[str, ...] = ()  # what was done to get here, oldest first
    created: str = ""  # ISO 8601, UTC
    aux_name: str = ""  # the second label's task name ("" = none; engine.multitask)
    aux: tuple[tuple[str, str], ...] = ()  # (path, second label) for every row, sorted by path
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        rows = tuple(sorted(Row(*r) for r in self.rows))
        if len({r.path for r in rows}) != len(rows):
            dup = sorted(p for p, n in Counter(r.path for r in rows).items() if n > 1)[:5]
            raise DataError(f"A manifest lists each file once; listed twice: {', '.join(dup)}.")
        bad = sorted({r.split for r in rows} - set(SPLITS) - {""})
        if bad:
            raise DataError(f"Unknown split(s) {', '.join(map(repr, bad))}: use train, val or test.")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "created", self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if self.aux_name:
            given = dict(self.aux)
            lacking = [r.path for r in rows if not given.get(r.path)]
            if lacking:
                raise DataError(f"{len(lacking)} file(s) have no {self.aux_name!r} label (the second "
                                f"label): {', '.join(lacking[:5])}.")
            object.__setattr__(self, "aux", tuple((r.path, given[r.path]) for r in rows))
        else:
            object.__setattr__(self, "aux", ())
        object.__setattr__(self, "hash", manifest_hash(rows, self.aux_name, self.aux))

    @property
    def short_hash(self) -> str:
        return self.hash[:16]

    @property
    def num_images(self) -> int:
        return len(self.rows)

    @property
    def classes(self) -> list[str]:
        """Sorted class names; a class's index in this list is its label index."""
        return sorted({r.label for r in self.rows})

    @property
    def aux_classes(self) -> list[str]:
        """Sorted second-label values (empty without a second label); index = label index."""
        return sorted({a for _, a in self.aux})

    @property
    def splits(self) -> list[str]:
        present = {r.split for r in self.rows}
        return [s for s in (*SPLITS, "") if s in present]

    @property
    def is_split(self) -> bool:
        """Every row has a split and there is a training split."""
        return bool(self.rows) and all(r.split for r in self.rows) and any(r.split == "train" for r in self.rows)

    @property
    def class_counts(self) -> dict[str, dict[str, int]]:
        """split -> class -> images (the split "" of an unsplit manifest is called "unsplit")."""
        out: dict[str, dict[str, int]] = {}
        classes = self.classes
        for s in self.splits:
            out[s or "unsplit"] = dict.fromkeys(classes, 0)
        for r in self.rows:
            out[r.split or "unsplit"][r.label] += 1
        return out

    def items(self, split: str | None = None) -> list[tuple[str, int]]:
        """(absolute path, class index) of the rows of one split (all rows for None)."""
        index = {c: i for i, c in enumerate(self.classes)}
        root = self.root.rstrip(os.sep) + os.sep
        return [(root + r.path, index[r.label]) for r in self.rows if split is None or r.split == split]

    def derive(self, rows: Iterable[Row], action: str) -> "Manifest":
        """A new manifest with these rows, this one as its parent and ``action`` recorded."""
        rows = tuple(rows)
        return Manifest(self.root, rows, self.source, self.hash, (*self.actions, action),
                        aux_name=self.aux_name, aux=self.aux)  # the second label goes with its file

    def to_listing(self) -> Listing:
        """The manifest's files as a source listing (to scan them or compute their statistics)."""
        return Listing(Path(self.root), "manifest", [Entry(r.path, r.label, r.split) for r in self.rows],
                       self.classes, aux_name=self.aux_name, aux=dict(self.aux))

    def to_dict(self) -> dict:
        extra = {"aux_name": self.aux_name, "aux_classes": self.aux_classes,
                 "aux": [a for _, a in self.aux]} if self.aux_name else {}  # aux[i] is rows[i]'s
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION if self.aux_name else 1, "hash": self.hash,
            "root": self.root, "source": self.source, "parent": self.parent,
            "actions": list(self.actions), "created": self.created,
            "num_images": self.num_images, "num_classes": len(self.classes), "classes": self.classes,
            "class_counts": self.class_counts,
            "columns": list(Row._fields), "rows": [list(r) for r in self.rows], **extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        if d.get("format") != FORMAT:
            raise DataError("This file is not a TailLab manifest.")
        if d.get("format_version", 0) > FORMAT_VERSION:
            raise DataError(f"This manifest was written by a newer TailLab (format {d['format_version']}).")
        rows = tuple(Row(*r) for r in d["rows"])
        aux_name = d.get("aux_name") or ""
        aux = tuple(zip((r.path for r in rows), d.get("aux") or ())) if aux_name else ()
        m = cls(d["root"], rows, d.get("source", ""), d.get("parent"),
                tuple(d.get("actions", ())), d.get("created", ""), aux_name, aux)
        if d.get("hash") and d["hash"] != m.hash:
            raise DataError(f"The manifest's rows do not match its hash {d['hash'][:16]}: the file was edited.")
        return m


def manifest_from_scan(scan: "ScanResult", *, include_unreadable: bool = False,
                       listing: Listing | None = None) -> Manifest:
    """The first version of a scanned source: every readable image with its class and the
    source's split ("" where it has none), and the second label of ``listing`` (the listing
    scanned) when it has one."""
    rows = [Row(f.rel, f.label, f.split, f.sha) for f in scan.images if f.ok or (include_unreadable and f.sha)]
    if not rows:
        raise DataError(f"{scan.root} has no readable images to put in a dataset version.")
    aux_name = listing.aux_name if listing is not None else ""
    return Manifest(str(scan.root), tuple(rows), source=f"{scan.kind}:{scan.root}",
                    actions=(f"scanned {len(scan.images)} files, kept {len(rows)} readable images",),
                    aux_name=aux_name, aux=tuple(listing.aux.items()) if aux_name else ())


# --- storage -------------------------------------------------------------------------------------

def manifests_dir() -> Path:
    d = workspace.home() / "manifests"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_manifest(m: Manifest, directory: str | os.PathLike | None = None) -> Path:
    """Write ``<hash[:16]>.json`` (atomically; an existing file with that hash is left alone)."""
    d = Path(directory) if directory is not None else manifests_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{m.short_hash}.json"
    if path.exists():
        return path
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(m.to_dict(), f, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_manifest(ref: str | os.PathLike, directory: str | os.PathLike | None = None) -> Manifest:
    """A manifest by file path, full hash or hash prefix (at least 8 hex digits)."""
    p = Path(ref)
    if not p.is_file():
        d = Path(directory) if directory is not None else manifests_dir()
        key = str(ref).lower()
        found = sorted(d.glob(f"{key[:16]}*.json")) if len(key) >= 8 else []
        if len(found) != 1:
            raise DataError(f"No saved manifest {'matches' if not found else 'uniquely matches'} {ref!r}.")
        p = found[0]
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"Cannot read the manifest {p}: {e}") from e
    return Manifest.from_dict(d)


@dataclass(frozen=True)
class ManifestInfo:
    hash: str
    path: Path
    source: str
    created: str
    num_images: int
    num_classes: int
    class_counts: dict
    parent: str | None = None  # hash of the version it was derived from
    actions: tuple[str, ...] = ()  # what was done to get here, oldest first


def list_manifests(directory: str | os.PathLike | None = None) -> list[ManifestInfo]:
    """Saved manifests, newest first (unreadable files are skipped)."""
    d = Path(directory) if directory is not None else manifests_dir()
    out = []
    for p in d.glob("*.json"):
        try:
            j = json.loads(p.read_text(encoding="utf-8"))
            out.append(ManifestInfo(j["hash"], p, j.get("source", ""), j.get("created", ""),
                                    j["num_images"], j["num_classes"], j["class_counts"],
                                    j.get("parent"), tuple(j.get("actions", ()))))
        except (OSError, ValueError, KeyError):
            continue
    return sorted(out, key=lambda i: i.created, reverse=True)


# --- comparing and checking ----------------------------------------------------------------------

class CountDiff(NamedTuple):
    label: str
    split: str  # "train" / "val" / "test" / "unsplit", or "all" for the class total
    a: int
    b: int

    @property
    def delta(self) -> int:
        return self.b - self.a


def diff_counts(a: Manifest, b: Manifest) -> list[CountDiff]:
    """Images per class and split in a and in b, side by side (classes sorted, 'all' first)."""
    ca, cb = a.class_counts, b.class_counts
    splits = [s for s in (*SPLITS, "unsplit") if s in ca or s in cb]
    out = []
    for label in sorted(set(a.classes) | set(b.classes)):
        na = sum(ca.get(s, {}).get(label, 0) for s in splits)
        nb = sum(cb.get(s, {}).get(label, 0) for s in splits)
        out.append(CountDiff(label, "all", na, nb))
        out += [CountDiff(label, s, ca.get(s, {}).get(label, 0), cb.get(s, {}).get(label, 0)) for s in splits]
    return out


def verify_files(m: Manifest, *, rehash: bool = False, limit: int = 20) -> list[str]:
    """Problems with the files on disk (missing; with ``rehash``, changed content), at most ``limit``."""
    problems = []
    root = Path(m.root)
    for r in m.rows:
        p = root / r.path
        if not p.is_file():
            problems.append(f"{r.path}: missing")
        elif rehash and hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest() != r.sha:
            problems.append(f"{r.path}: content changed since the version was made")
        if len(problems) >= limit:
            break
    return problems
